"""Snapshot store: round trip, verification and fallback, pruning, atomic install, WAL truncation bound."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grid.snapshots as snapmod
from grid.errors import InvalidInput, ShardUnavailable
from grid.snapshots import Snapshot, SnapshotStore
from grid.wal import WriteAheadLog


def state(seq: int, rows: int = 50) -> tuple[dict[str, pa.Table], dict[str, bytes]]:
    """A small shard state whose content depends on ``seq``, so snapshots are told apart."""
    customers = pa.table({
        "customer_id": [f"C{seq:03d}{i:04d}" for i in range(rows)],
        "usage_wh": pa.array([seq * 1000 + i for i in range(rows)], pa.int64()),
        "attributes": [{"seq": str(seq)} if i % 3 else None for i in range(rows)],
    })
    bills = pa.table({"bill_id": pa.array([], pa.string()), "total_cents": pa.array([], pa.int64())})
    return {"customers": customers, "bills": bills}, {"idempotency": f"keys through {seq}".encode(), "empty": b""}


def assert_state(snap: Snapshot, seq: int) -> None:
    tables, blobs = state(seq)
    assert snap.seq == seq
    assert snap.path.name == f"snap-{seq:020d}"
    assert set(snap.tables) == set(tables)
    for name, table in tables.items():
        assert snap.tables[name].equals(table), name
    assert snap.blobs == blobs


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0x5A
    path.write_bytes(bytes(raw))


def test_round_trip(tmp_path):
    store = SnapshotStore(tmp_path)
    assert store.latest() is None and store.oldest_kept_seq() == 0
    written = store.write(7, *state(7))
    assert_state(written, 7)
    assert_state(store.latest(), 7)
    manifest = json.loads((written.path / "manifest.json").read_text())
    assert manifest["seq"] == 7 and "created_at" in manifest
    assert set(manifest["files"]) == {"customers.arrow", "bills.arrow", "idempotency.bin", "empty.bin"}
    for name, entry in manifest["files"].items():
        assert (written.path / name).stat().st_size == entry["bytes"]
    # A new store on the same directory (a restarted shard) sees the same snapshot.
    assert_state(SnapshotStore(tmp_path).latest(), 7)


@settings(max_examples=15)
@given(values=st.lists(st.integers(-2**63, 2**63 - 1) | st.none(), max_size=200),
       blob=st.binary(max_size=300))
def test_round_trip_is_exact_for_any_int64_column_and_blob(values, blob):
    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table({"v": pa.array(values, pa.int64())})
        SnapshotStore(tmp).write(1, {"t": table}, {"b": blob})
        snap = SnapshotStore(tmp).latest()
        assert snap.tables["t"].equals(table) and snap.blobs == {"b": blob}


@pytest.mark.parametrize("damage", ["flip_arrow", "flip_blob", "truncate_arrow", "delete_manifest",
                                    "delete_file", "garble_manifest", "manifest_seq"])
def test_corrupt_newest_falls_back_to_previous(tmp_path, caplog, damage):
    store = SnapshotStore(tmp_path)
    store.write(10, *state(10))
    newest = store.write(20, *state(20)).path
    if damage == "flip_arrow":
        flip_byte(newest / "customers.arrow", (newest / "customers.arrow").stat().st_size // 2)
    elif damage == "flip_blob":
        flip_byte(newest / "idempotency.bin", 3)
    elif damage == "truncate_arrow":
        os.truncate(newest / "customers.arrow", 100)
    elif damage == "delete_manifest":
        (newest / "manifest.json").unlink()
    elif damage == "delete_file":
        (newest / "bills.arrow").unlink()
    elif damage == "garble_manifest":
        (newest / "manifest.json").write_text("{not json")
    else:
        manifest = json.loads((newest / "manifest.json").read_text())
        manifest["seq"] = 21
        (newest / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="grid.snapshots"):
        assert_state(store.latest(), 10)
    assert newest.name in caplog.text and "corrupt" in caplog.text


def test_no_verifiable_snapshot_returns_none_and_logs_error(tmp_path, caplog):
    store = SnapshotStore(tmp_path)
    path = store.write(3, *state(3)).path
    (path / "manifest.json").unlink()
    with caplog.at_level(logging.ERROR, logger="grid.snapshots"):
        assert store.latest() is None
    assert "none of 1 snapshots" in caplog.text


def test_prune_keeps_the_newest(tmp_path):
    store = SnapshotStore(tmp_path, keep=2)
    for seq in (5, 9, 14, 30):
        store.write(seq, *state(seq))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"snap-{14:020d}", f"snap-{30:020d}"]
    assert store.oldest_kept_seq() == 14
    assert_state(store.latest(), 30)


def test_same_seq_twice_replaces_the_first(tmp_path):
    store = SnapshotStore(tmp_path)
    store.write(4, *state(4))
    path = store.write(4, *state(4)).path
    flip_byte(path / "manifest.json", 0)  # the replaced copy must not be what latest() falls back to
    assert store.latest() is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_older_seq_than_newest_is_rejected(tmp_path):
    store = SnapshotStore(tmp_path)
    store.write(8, *state(8))
    with pytest.raises(InvalidInput) as info:
        store.write(7, *state(7))
    assert info.value.field == "seq"


def test_interrupted_write_leaves_nothing_that_looks_like_a_snapshot(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    store.write(1, *state(1))
    calls = []
    real = snapmod._fsync_dir

    def failing(path):
        calls.append(path)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(snapmod, "_fsync_dir", failing)
    with pytest.raises(ShardUnavailable) as info:
        store.write(2, *state(2))
    assert isinstance(info.value.__cause__, OSError) and calls
    monkeypatch.setattr(snapmod, "_fsync_dir", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"snap-{1:020d}"]
    assert_state(store.latest(), 1)


def test_leftover_temporary_directories_are_removed_on_open(tmp_path):
    SnapshotStore(tmp_path).write(1, *state(1))
    (tmp_path / f".tmp-snap-{2:020d}-deadbeef").mkdir()
    (tmp_path / f".tmp-snap-{2:020d}-deadbeef" / "customers.arrow").write_bytes(b"half")
    (tmp_path / f".old-snap-{0:020d}-cafebabe").mkdir()
    store = SnapshotStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"snap-{1:020d}"]
    assert store.latest().seq == 1


@pytest.mark.parametrize("tables, blobs, field", [
    ({"../escape": pa.table({"a": [1]})}, {}, "tables"),
    ({"t": {"a": [1]}}, {}, "tables"),
    ({}, {"b": "text, not bytes"}, "blobs"),
    ({}, {"": b"x"}, "blobs"),
    ([], {}, "tables"),
])
def test_bad_names_and_values_are_rejected(tmp_path, tables, blobs, field):
    with pytest.raises(InvalidInput) as info:
        SnapshotStore(tmp_path).write(1, tables, blobs)
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seq", [-1, True, 1.5])
def test_bad_seq_is_rejected(tmp_path, seq):
    with pytest.raises(InvalidInput):
        SnapshotStore(tmp_path).write(seq, {}, {})


def test_invalid_keep_is_rejected(tmp_path):
    with pytest.raises(InvalidInput):
        SnapshotStore(tmp_path, keep=0)


def test_recovery_falls_back_to_older_snapshot_plus_longer_wal(tmp_path):
    """The contract between the two stores: truncating the WAL through ``oldest_kept_seq`` keeps
    enough log to rebuild from any kept snapshot, including after the newest turns out corrupt."""
    store = SnapshotStore(tmp_path / "snapshots", keep=2)
    counters: dict[str, int] = {}

    def as_tables(seq):
        return {"counters": pa.table({"key": list(counters), "value": pa.array(list(counters.values()),
                                                                                pa.int64())})}, {}

    with WriteAheadLog(tmp_path / "wal", segment_bytes=256) as wal:
        for i in range(90):
            rec = {"key": f"k{i % 7}", "add": i}
            seq = wal.append(rec)
            counters[rec["key"]] = counters.get(rec["key"], 0) + rec["add"]
            if seq % 30 == 0:
                store.write(seq, *as_tables(seq))
                wal.truncate_through(store.oldest_kept_seq())
        expected = dict(counters)
    flip_byte(store.latest().path / "counters.arrow", 200)  # corrupt the newest (seq 90)

    snap = store.latest()
    assert snap.seq == 60
    rebuilt = dict(zip(snap.tables["counters"]["key"].to_pylist(), snap.tables["counters"]["value"].to_pylist()))
    with WriteAheadLog(tmp_path / "wal") as wal:
        assert wal.first_seq <= snap.seq + 1
        for _, rec in wal.replay(after_seq=snap.seq):
            rebuilt[rec["key"]] = rebuilt.get(rec["key"], 0) + rec["add"]
    assert rebuilt == expected


def test_every_file_and_both_directories_are_fsynced(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    path = SnapshotStore(tmp_path).write(2, *state(2)).path
    monkeypatch.undo()
    names = [Path(p).name for p in synced]
    files = ["customers.arrow", "bills.arrow", "idempotency.bin", "empty.bin", "manifest.json"]
    assert sorted(names[:5]) == sorted(files)
    assert names[5].startswith(".tmp-snap-")  # the new directory's entries, before the rename
    assert Path(synced[6]) == tmp_path        # the rename itself
    assert (path / "manifest.json").exists()
