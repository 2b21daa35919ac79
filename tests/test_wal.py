"""Write-ahead log: round trip, group commit, torn and corrupt frames, segments, recovery after SIGKILL."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grid.wal as walmod
from grid.errors import DataCorrupt, InvalidInput, ShardUnavailable
from grid.wal import WriteAheadLog

HEADER = 16  # u32 length + u64 seq + u32 crc


@pytest.fixture
def file_fsyncs(monkeypatch):
    """Paths of the regular files fsynced, one entry per call (directory fsyncs are not counted)."""
    calls: list[str] = []
    real = os.fsync

    def counting(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def frame_ends(path: Path) -> list[int]:
    """Byte offset just past each frame of a clean segment (walks the length fields)."""
    data, pos, ends = path.read_bytes(), 0, []
    while pos < len(data):
        pos += HEADER + int.from_bytes(data[pos:pos + 4], "little")
        ends.append(pos)
    assert pos == len(data)
    return ends


def write_records(directory: Path, records: list[dict], **options) -> list[int]:
    """Append ``records`` and close; fsync "off" by default (close fsyncs), since the file layout is
    the point here, and a per-write fsync makes property tests slow on a shared disk."""
    options.setdefault("fsync", "off")
    with WriteAheadLog(directory, **options) as wal:
        return [wal.append(r) for r in records]


def replay_all(directory: Path, after_seq: int = 0) -> list[tuple[int, dict]]:
    with WriteAheadLog(directory) as wal:
        return list(wal.replay(after_seq))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.text(max_size=20),
                    st.binary(max_size=20), st.floats(allow_nan=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=6)
records = st.dictionaries(st.text(max_size=10), values, max_size=5)


@settings(max_examples=30)
@given(recs=st.lists(records, min_size=1, max_size=12), after=st.integers(0, 15))
def test_round_trip_in_order_and_after_reopen(recs, after):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with WriteAheadLog(d, fsync="off", segment_bytes=200) as wal:
            seqs = [wal.append(r) for r in recs]
            assert seqs == list(range(1, len(recs) + 1))
            assert list(wal.replay()) == list(zip(seqs, recs))
        expected = [(s, r) for s, r in zip(seqs, recs) if s > after]
        assert replay_all(d, after) == expected
        for seg in segments(d):  # every segment is named by its first seq
            assert int(seg.stem) == int.from_bytes(seg.read_bytes()[4:12], "little")


def test_reopen_continues_numbering(tmp_path):
    assert write_records(tmp_path, [{"n": i} for i in range(3)]) == [1, 2, 3]
    with WriteAheadLog(tmp_path) as wal:
        assert wal.last_seq == 3
        assert wal.append({"n": 3}) == 4
    assert [s for s, _ in replay_all(tmp_path)] == [1, 2, 3, 4]


def test_threads_share_fsyncs_in_batch_mode(tmp_path, file_fsyncs):
    n_threads, per_thread = 16, 20
    acked: dict[int, dict] = {}
    lock = threading.Lock()
    with WriteAheadLog(tmp_path, fsync="batch", max_wait_ms=50) as wal:
        def writer(t):
            for i in range(per_thread):
                rec = {"t": t, "i": i}
                seq = wal.append(rec)
                with lock:
                    acked[seq] = rec

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        fsyncs_while_open = len(file_fsyncs)
    total = n_threads * per_thread
    assert sorted(acked) == list(range(1, total + 1))
    assert 0 < fsyncs_while_open < total
    assert dict(replay_all(tmp_path)) == acked


async def test_asyncio_tasks_share_fsyncs_in_batch_mode(tmp_path, file_fsyncs):
    with WriteAheadLog(tmp_path, fsync="batch", max_wait_ms=50) as wal:
        async def writer(k):
            return [(await wal.append_async({"k": k, "i": i}), {"k": k, "i": i}) for i in range(5)]

        results = await asyncio.gather(*(writer(k) for k in range(100)))
        fsyncs_while_open = len(file_fsyncs)
    acked = dict(pair for result in results for pair in result)
    assert sorted(acked) == list(range(1, 501))
    assert 0 < fsyncs_while_open < 500
    assert dict(replay_all(tmp_path)) == acked


async def test_max_batch_bounds_frames_per_fsync(tmp_path, file_fsyncs):
    with WriteAheadLog(tmp_path, fsync="batch", max_wait_ms=50, max_batch=4) as wal:
        await asyncio.gather(*(wal.append_async({"i": i}) for i in range(64)))
        assert len(file_fsyncs) >= 64 // 4


async def test_always_mode_fsyncs_every_write(tmp_path, file_fsyncs):
    with WriteAheadLog(tmp_path, fsync="always") as wal:
        await asyncio.gather(*(wal.append_async({"i": i}) for i in range(40)))
        threads = [threading.Thread(target=wal.append, args=({"t": t},)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(file_fsyncs) == 48
    assert len(replay_all(tmp_path)) == 48


def test_off_mode_writes_without_fsync_until_close(tmp_path, file_fsyncs):
    wal = WriteAheadLog(tmp_path, fsync="off")
    seqs = [wal.append({"i": i}) for i in range(10)]
    assert file_fsyncs == []
    # Acknowledged means handed to the OS: another reader sees it before any fsync.
    assert sum(1 for _ in wal.replay()) == 10
    wal.close()
    assert len(file_fsyncs) == 1
    assert [s for s, _ in replay_all(tmp_path)] == seqs


def test_off_mode_close_syncs_every_segment_it_wrote(tmp_path, file_fsyncs):
    write_records(tmp_path, [{"i": i, "pad": "o" * 40} for i in range(20)], fsync="off", segment_bytes=200)
    assert len(segments(tmp_path)) > 1
    assert sorted(file_fsyncs) == [str(p) for p in segments(tmp_path)]


def test_submit_returns_future_with_seq(tmp_path):
    with WriteAheadLog(tmp_path) as wal:
        pairs = [wal.submit({"i": i}) for i in range(5)]
        assert [seq for seq, _ in pairs] == [1, 2, 3, 4, 5]
        assert [f.result(timeout=10) for _, f in pairs] == [1, 2, 3, 4, 5]
        assert wal.sync() == 5 and wal.durable_seq == 5


async def test_submit_awaitable_resolves_once_durable_in_submit_order(tmp_path, file_fsyncs):
    with WriteAheadLog(tmp_path, fsync="batch", max_wait_ms=50) as wal:
        # The shard's write path: submit, apply in memory, then await durability.
        pairs = [wal.submit_awaitable({"i": i}) for i in range(30)]
        assert [seq for seq, _ in pairs] == list(range(1, 31))
        assert await asyncio.gather(*(w for _, w in pairs)) == list(range(1, 31))
        assert wal.durable_seq == 30 and 0 < len(file_fsyncs) < 30


@settings(max_examples=40)
@given(n=st.integers(1, 8), data=st.data())
def test_torn_tail_keeps_every_complete_frame(n, data):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        recs = [{"i": i, "pad": "x" * (i * 7)} for i in range(n)]
        write_records(d, recs)
        (seg,) = segments(d)
        ends = frame_ends(seg)
        cut = data.draw(st.integers(0, ends[-1] - 1), label="cut")
        os.truncate(seg, cut)
        kept = sum(1 for e in ends if e <= cut)
        with WriteAheadLog(d) as wal:
            assert wal.last_seq == kept
            assert list(wal.replay()) == list(zip(range(1, kept + 1), recs[:kept]))
            assert seg.stat().st_size == ([0] + ends)[kept]  # cut back to the last good frame
            assert wal.append({"after": True}) == kept + 1
        assert replay_all(d)[-1] == (kept + 1, {"after": True})


@settings(max_examples=40)
@given(n=st.integers(2, 8), data=st.data())
def test_flipped_byte_cuts_from_that_frame_on(n, data):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        recs = [{"i": i, "pad": "y" * 20} for i in range(n)]
        write_records(d, recs)
        (seg,) = segments(d)
        starts = [0] + frame_ends(seg)
        victim = data.draw(st.integers(0, n - 1), label="frame")
        offset = data.draw(st.integers(starts[victim], starts[victim + 1] - 1), label="offset")
        raw = bytearray(seg.read_bytes())
        raw[offset] ^= data.draw(st.integers(1, 255), label="xor")
        seg.write_bytes(bytes(raw))
        assert replay_all(d) == list(zip(range(1, victim + 1), recs[:victim]))
        assert seg.stat().st_size == starts[victim]


def test_corrupt_closed_segment_stops_replay_naming_the_file_and_deletes_nothing(tmp_path, caplog):
    recs = [{"i": i, "pad": "z" * 40} for i in range(30)]
    write_records(tmp_path, recs, segment_bytes=250)
    segs = segments(tmp_path)
    assert len(segs) >= 4
    middle = segs[1]
    first = int(middle.stem)
    ends = frame_ends(middle)
    raw = bytearray(middle.read_bytes())
    raw[ends[0] + HEADER + 3] ^= 0xFF  # payload of the middle segment's second frame
    middle.write_bytes(bytes(raw))
    sizes = {p.name: p.stat().st_size for p in segs}
    with caplog.at_level(logging.WARNING, logger="grid.wal"), WriteAheadLog(tmp_path) as wal:
        assert wal.last_seq == 30  # opening checks only the newest segment
        got = []
        with pytest.raises(DataCorrupt) as err:
            for item in wal.replay():
                got.append(item)
        assert err.value.file == str(middle) and middle.name in err.value.detail
        assert got == list(zip(range(1, first + 1), recs[:first]))  # the good frames before the damage
        assert {p.name: p.stat().st_size for p in segments(tmp_path)} == sizes  # nothing cut, nothing removed
        assert wal.last_seq == 30
    assert "damaged" in caplog.text


def test_missing_middle_segment_stops_replay(tmp_path):
    write_records(tmp_path, [{"i": i, "pad": "z" * 40} for i in range(30)], segment_bytes=250)
    segs = segments(tmp_path)
    segs[2].unlink()
    with WriteAheadLog(tmp_path) as wal, pytest.raises(DataCorrupt) as err:
        list(wal.replay())
    assert err.value.file == str(segs[3]) and "out" in err.value.detail
    assert segments(tmp_path) == [segs[0], segs[1]] + segs[3:]


def test_emptied_newest_segment_keeps_numbering(tmp_path):
    write_records(tmp_path, [{"i": i, "pad": "q" * 40} for i in range(12)], segment_bytes=200)
    newest = segments(tmp_path)[-1]
    first = int(newest.stem)
    raw = bytearray(newest.read_bytes())
    raw[HEADER] ^= 1  # first frame of the newest segment
    newest.write_bytes(bytes(raw))
    with WriteAheadLog(tmp_path, segment_bytes=200) as wal:
        assert newest.exists() and newest.stat().st_size == 0
        assert wal.last_seq == first - 1
        assert wal.append({"again": 1}) == first
    assert replay_all(tmp_path)[-1] == (first, {"again": 1})


def test_truncate_through_deletes_whole_covered_segments(tmp_path):
    recs = [{"i": i, "pad": "w" * 40} for i in range(40)]
    with WriteAheadLog(tmp_path, segment_bytes=300) as wal:
        for r in recs:
            wal.append(r)
        firsts = [int(p.stem) for p in segments(tmp_path)]
        through = firsts[2] + 1  # inside the third segment
        wal.truncate_through(through)
        assert [int(p.stem) for p in segments(tmp_path)] == firsts[2:]
        assert wal.first_seq == firsts[2]
        assert [s for s, _ in wal.replay(through)] == list(range(through + 1, 41))
        # The active segment survives a truncation that covers it, and goes at the next one.
        wal.truncate_through(40)
        assert [int(p.stem) for p in segments(tmp_path)] == firsts[-1:]
        assert wal.append({"i": 40}) == 41
        wal.truncate_through(40)
        assert [int(p.stem) for p in segments(tmp_path)] == [41]
    with WriteAheadLog(tmp_path) as wal:
        assert wal.last_seq == 41 and wal.first_seq == 41


def test_skip_to_never_reuses_a_snapshot_seq(tmp_path):
    write_records(tmp_path, [{"i": i} for i in range(3)])
    with WriteAheadLog(tmp_path) as wal:
        wal.skip_to(10)
        assert wal.append({"i": "after snapshot"}) == 11
        wal.skip_to(5)  # never goes back
        assert wal.append({"i": "next"}) == 12
    assert [s for s, _ in replay_all(tmp_path, after_seq=10)] == [11, 12]
    with pytest.raises(DataCorrupt):  # without the snapshot through 10, seqs 4..10 are in no file
        replay_all(tmp_path)


def test_second_writer_on_same_directory_is_refused(tmp_path):
    with WriteAheadLog(tmp_path):
        with pytest.raises(ShardUnavailable):
            WriteAheadLog(tmp_path)
    WriteAheadLog(tmp_path).close()


def test_bad_record_uses_no_seq(tmp_path):
    with WriteAheadLog(tmp_path) as wal:
        with pytest.raises(InvalidInput) as info:
            wal.append({"x": object()})
        assert info.value.field == "record"
        with pytest.raises(InvalidInput):
            wal.submit(["not", "a", "dict"])  # type: ignore[arg-type]
        assert wal.append({"ok": 1}) == 1


@pytest.mark.parametrize("option", [{"fsync": "sometimes"}, {"max_batch": 0}, {"max_wait_ms": -1},
                                    {"segment_bytes": 0}])
def test_invalid_options_are_rejected(tmp_path, option):
    with pytest.raises(InvalidInput) as info:
        WriteAheadLog(tmp_path, **option)
    assert info.value.field == next(iter(option))


def test_failed_fsync_poisons_the_log(tmp_path, monkeypatch):
    with WriteAheadLog(tmp_path) as wal:
        wal.append({"i": 0})

        def broken(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken)
        with pytest.raises(ShardUnavailable) as info:
            wal.append({"i": 1})
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(ShardUnavailable):
            wal.submit({"i": 2})
        with pytest.raises(ShardUnavailable):
            wal.sync()
        monkeypatch.undo()


async def test_failed_write_fails_async_waiters(tmp_path, monkeypatch):
    with WriteAheadLog(tmp_path) as wal:
        def broken(fd, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(walmod.os, "write", broken)
        with pytest.raises(ShardUnavailable):
            await wal.append_async({"i": 0})
        monkeypatch.undo()


def test_cancelled_future_does_not_stop_the_flusher(tmp_path, monkeypatch):
    gate, real = threading.Event(), os.fsync

    def gated(fd):  # holds the flusher in its first fsync while the test queues and cancels
        gate.wait(10)
        return real(fd)

    monkeypatch.setattr(os, "fsync", gated)
    with WriteAheadLog(tmp_path) as wal:
        first = wal.submit({"i": 0})[1]
        futures = [wal.submit({"i": i})[1] for i in range(1, 20)]
        assert futures[3].cancel()
        gate.set()
        assert first.result(timeout=10) == 1
        assert wal.append({"i": 20}) == 21
        assert [f.result(timeout=10) for f in futures if not f.cancelled()] == [i for i in range(2, 21) if i != 5]
    assert len(replay_all(tmp_path)) == 21  # the cancelled caller's record is logged all the same


def test_closed_log_refuses_writes(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(ShardUnavailable):
        wal.append({"i": 0})


CHILD = textwrap.dedent("""
    import asyncio, sys
    from grid.wal import WriteAheadLog

    async def main(directory):
        wal = WriteAheadLog(directory, fsync="batch", segment_bytes=4096)
        async def writer(k):
            i = 0
            while True:
                seq = await wal.append_async({"k": k, "i": i, "pad": "p" * 100})
                sys.stdout.write(f"{seq} {k} {i}\\n")
                sys.stdout.flush()
                i += 1
        await asyncio.gather(*(writer(k) for k in range(16)))

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.slow
def test_every_acknowledged_write_survives_sigkill(tmp_path):
    wal_dir = tmp_path / "wal"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(wal_dir)], stdout=subprocess.PIPE, text=True)
    acked: dict[int, tuple[int, int]] = {}
    try:
        for line in child.stdout:
            seq, k, i = map(int, line.split())
            acked[seq] = (k, i)
            if len(acked) >= 1500:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert len(acked) >= 1500, f"child acknowledged only {len(acked)} writes (exit {child.returncode})"
    with WriteAheadLog(wal_dir) as wal:
        replayed = {seq: (rec["k"], rec["i"]) for seq, rec in wal.replay()}
        assert len(segments(wal_dir)) > 1
    assert sorted(replayed) == list(range(1, len(replayed) + 1))  # no hole, no duplicate
    missing = {seq for seq in acked if replayed.get(seq) != acked[seq]}
    assert not missing, f"{len(missing)} acknowledged writes lost"


def test_new_segments_are_made_durable_in_their_directory(tmp_path, monkeypatch):
    dirs: list[int] = []
    real = os.fsync

    def recording(fd):
        # other threads of the session (Ray, earlier logs' flushers) may fsync too: only look, never fail them
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                dirs.append(fd)
        except OSError:
            pass
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    write_records(tmp_path, [{"i": i, "pad": "d" * 40} for i in range(20)], fsync="batch", segment_bytes=200)
    assert len(dirs) == len(segments(tmp_path)) > 1
