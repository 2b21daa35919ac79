"""The fast usage path of imports: packed columns, typed CSV blocks with their text fallback, rows routed by
their distinct service points, and a pushed reading readable right after its acknowledgement."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from grid.imports.columns import pack_ints, unpack_ints

SOURCES = Path(__file__).resolve().parents[1] / "sources"
INT64 = st.integers(-(2 ** 63), 2 ** 63 - 1)


@given(st.lists(INT64, max_size=50) | st.lists(st.integers(-3, 3), min_size=2000, max_size=3000))
def test_packed_column_round_trips_exactly(values):
    a = np.array(values, dtype=np.int64)
    out = unpack_ints(pack_ints(a))
    assert out.dtype == np.int64 and out.tolist() == values


def test_packed_column_of_ascending_offsets_and_readings_is_small():
    offsets = np.arange(1, 250_001, 2, dtype=np.int64)  # one shard's rows of a batch: every other one
    wh = np.random.default_rng(1).integers(0, 5000, offsets.size)
    p_off, p_wh = pack_ints(offsets), pack_ints(wh)
    assert p_off["delta"] and len(p_off["data"]) < 1000
    assert p_wh["dtype"] == "i2" and len(p_wh["data"]) < 2.2 * wh.size  # against 8 bytes as int64
    assert unpack_ints(p_off).tolist() == offsets.tolist() and unpack_ints(p_wh).tolist() == wh.tolist()


def test_cast_columns_map_as_their_text_does(tmp_path):
    """Columns the mapping casts with pyarrow (whole Wh, ISO times with an offset) map to exactly what the text
    path gives; a block with a value the cast refuses maps that column as text, naming the bad row."""
    import copy

    from grid.imports.readers import open_file
    from grid.imports.sources import SourceRegistry

    src = SourceRegistry(SOURCES).get("interval-wh")
    assert set(src.mapping.column_types()) == {"ts", "wh"}  # the point id stays text
    good = "".join(f"S{k:08d},2026-01-01T{8 + k % 10:02d}:00:00{'Z' if k % 3 else '+01:00'},{k:03d}\n"
                   for k in range(200))
    path = tmp_path / "reads.csv"
    path.write_text("sp,ts,wh\n" + good + "S00000001,2026-01-02T08:00:00Z,1.5\nS00000001,,\n" + good +
                    "S00000001,2026-01-03T08:00:00Z,x\nS00000001,2026-01-03 08:00:00,7\n")
    text_only = copy.copy(src.mapping)
    text_only._types = {}
    for b in open_file(path, "csv", {"block_bytes": 4096}, stream="s").batches():
        fast, slow = src.mapping.apply(b.rows), text_only.apply(b.rows)
        assert fast.frame.equals(slow.frame) and fast.bad == slow.bad
    both = src.mapping.apply(next(open_file(path, "csv", {}, stream="s").batches()).rows)
    assert [(b["field"], b["reason"]) for b in both.bad] == [("usage.start", "missing"),
                                                              ("usage.import_wh", "not a number"),
                                                              ("usage.start", "not a date-time")]
    assert 2 in both.frame.get_column("usage.import_wh").to_list()  # 1.5 Wh is 2 Wh (half-up), as text


@pytest.fixture(scope="module")
def speed_grid(ray_session, tmp_path_factory):
    from grid.cluster import Grid
    from grid.imports.importer import Importer

    root = tmp_path_factory.mktemp("imports-speed")
    (root / "sources").mkdir()
    for name in ("interval-wh.yaml", "billing-customers.yaml"):
        shutil.copy(SOURCES / name, root / "sources" / name)
    g = Grid.start(data_dir=str(root), shards=2, namespace="cg-test-imports-speed")
    imp = Importer(g, root)
    customers = [{"CUST_ID": f"C{i:07d}", "CUST_NAME": f"Customer {i}", "CLASS": "RES", "ACCT_NO": f"A{i:08d}",
                  "RATE": "r1", "SP_ID": f"S{i:08d}", "INTERVAL": "60"} for i in range(20)]
    assert asyncio.run(imp.push("billing-customers", customers)).applied == 20
    yield g, imp
    g.shutdown()


def test_meter_file_lands_on_both_shards_and_bad_rows_keep_their_text(speed_grid, tmp_path):
    from grid.partitions import partition_of

    g, imp = speed_grid
    rows = [f"S{k % 20:08d},2026-01-{1 + k // 20 % 28:02d}T08:00:00Z,{k}" for k in range(4000)]
    rows[10] = "S99999999,2026-01-01T08:00:00Z,5"  # no such service point: unresolved
    rows[11] = "S00000011,2026-01-01T08:30:00Z,5"  # not an interval start: refused by its shard
    rows[12] = ",2026-01-01T08:00:00Z,5"  # names no point
    path = tmp_path / "meters.csv"
    path.write_text("sp,ts,wh\n" + "\n".join(rows) + "\n")
    imp.registry.get("interval-wh").options["block_bytes"] = 16384  # several typed blocks
    rcpt = asyncio.run(imp.import_file("interval-wh", path))
    assert (rcpt.applied, rcpt.quarantined) == (3997, 3), rcpt.view()
    entries = {e["offset"]: e for e in imp.quarantine.entries("interval-wh") if e["stream"].startswith("meters")}
    assert entries[11]["row"] == {"sp": "S99999999", "ts": "2026-01-01T08:00:00Z", "wh": "5"}
    assert (entries[12]["reason"], entries[12]["row"]["ts"]) == ("refused", "2026-01-01T08:30:00Z")
    assert entries[13]["reason"] == "unresolved"
    shards = {int(g.table.owner[partition_of(f"C{i:07d}")]) for i in range(20)}
    assert shards == {0, 1}
    for k in (0, 19, 3999):  # the last reading of the last block, one of each shard's customers
        sp = k % 20
        items = g.customer_usage(f"C{sp:07d}", "2026-01", f"S{sp:08d}")["items"]
        day = 1 + k // 20 % 28
        got = {i["start"]: i["import_wh"] for i in items}
        # a later row of the same interval (the file wraps every 28 days) is a correction: the last one wins
        last = max(j for j in range(4000) if j % 20 == sp and j // 20 % 28 == day - 1 and j not in (10, 11, 12))
        assert got[f"2026-01-{day:02d}T08:00:00Z"] == last
    assert asyncio.run(imp.import_file("interval-wh", path)).applied == 0  # at its position: nothing again


async def test_a_pushed_row_is_readable_on_its_receipt(speed_grid, keystore):
    """Read-your-write: right after the push's 200 the context and the usage show it, though the gateway's near
    cache held the context before and its change-log poll is off (only the push itself can refresh it)."""
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from conftest import auth
    from grid.gateway.app import create_app

    g, _ = speed_grid
    config = dataclasses.replace(g.config, invalidate_interval_s=3600)
    row = {"CUST_ID": "C0000003", "CUST_NAME": "Customer 3", "CLASS": "RES", "ACCT_NO": "A00000003", "RATE": "r1",
           "SP_ID": "S00000003", "INTERVAL": "60"}
    async with TestClient(TestServer(create_app(g, config, keys=keystore))) as api:
        for k in range(3):
            before = await (await api.get("/v1/customers/C0000003", headers=auth("operator"))).json()  # cached
            r = await api.post("/v1/imports/billing-customers", json=[{**row, "CUST_NAME": f"Renamed {k}"}],
                               headers=auth("operator"))
            assert r.status == 200, await r.text()
            assert "versions" not in await r.json()
            after = await (await api.get("/v1/customers/C0000003", headers=auth("operator"))).json()
            assert (after["name"], after["version"]) == (f"Renamed {k}", before["version"] + 1)
            reading = {"sp": "S00000003", "ts": f"2026-02-0{k + 1}T08:00:00Z", "wh": str(700 + k)}
            r = await api.post("/v1/imports/interval-wh", json=[reading], headers=auth("operator"))
            assert r.status == 200 and (await r.json())["applied"] == 1, await r.text()
            r = await api.get("/v1/customers/C0000003/usage", headers=auth("operator"),
                              params={"month": "2026-02", "service_point_id": "S00000003"})
            got = {i["start"]: i["import_wh"] for i in (await r.json())["items"]}
            assert got[reading["ts"]] == 700 + k


async def test_tail_source_reads_lines_as_they_land_never_a_half_written_row(speed_grid, keystore):
    """A tail source (options.tail) imports each complete line while its file is still being appended to; a
    half-written last line waits for its line break, or (written without one) for the file to settle."""
    import yaml
    from aiohttp.test_utils import TestClient, TestServer

    from conftest import auth
    from grid.gateway.app import create_app

    g, _ = speed_grid
    root = Path(g.data_dir)
    feeds = {}
    for name, settle in (("meter-tail", 600_000), ("meter-tail-settles", 300)):
        spec = yaml.safe_load((SOURCES / "interval-wh.yaml").read_text())
        spec.update(name=name, location=f"inbox/{name}", options={"tail": True, "settle_ms": settle})
        (root / "sources" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        feeds[name] = root / "inbox" / name / "live.csv"
        feeds[name].parent.mkdir(parents=True, exist_ok=True)
        feeds[name].write_text("sp,ts,wh\n")

    async with TestClient(TestServer(create_app(g, keys=keystore))) as api:
        async def usage(day):
            r = await api.get("/v1/customers/C0000004/usage", headers=auth("operator"),
                              params={"month": "2026-03", "service_point_id": "S00000004"})
            got = {i["start"]: i["import_wh"] for i in (await r.json())["items"] if i["import_wh"]}
            return got.get(f"2026-03-{day:02d}T08:00:00Z")  # intervals not read yet show 0 Wh

        async def until(day, seconds=20.0):
            for _ in range(int(seconds / 0.02)):
                if (got := await usage(day)) is not None:
                    return got
                await asyncio.sleep(0.02)
            raise AssertionError(f"day {day} not imported")

        await asyncio.sleep(0.5)  # the watchers take the empty feeds
        with open(feeds["meter-tail"], "a") as f:  # a whole row, then half of the next
            f.write("S00000004,2026-03-01T08:00:00Z,11\nS00000004,2026-03-02T08:00:00Z,1")
        assert await until(1) == 11  # the file has not settled (settle_ms is 10 minutes): read as it grew
        await asyncio.sleep(0.3)
        assert await usage(2) is None  # the half-written row waits
        with open(feeds["meter-tail"], "a") as f:
            f.write("22\n")
        assert await until(2) == 122
        with open(feeds["meter-tail-settles"], "a") as f:  # a last line that never gets its line break
            f.write("S00000004,2026-03-03T08:00:00Z,33")
        assert await until(3) == 33
    entries = [e for n in feeds for e in _imp_entries(speed_grid, n)]
    assert entries == []  # nothing was read half-written


def _imp_entries(speed_grid, source):
    return speed_grid[1].quarantine.entries(source)


@pytest.mark.parametrize("fmt, head, line", [("csv", "sp,ts,wh\n", "S1,2026-01-01T08:00:00Z,{}"),
                                             ("jsonl", "", '{{"sp": "S1", "wh": {}}}')])
def test_complete_lines_leave_a_half_written_last_line_for_the_next_read(tmp_path, fmt, head, line):
    from grid.imports.readers import open_file

    path = tmp_path / f"feed.{fmt}"
    path.write_text(head + line.format(1) + "\n" + line.format(2)[:-3])

    def rows(after=None):
        batches = list(open_file(path, fmt, {}, stream="s", complete_lines=True).batches(after))
        got = [r for b in batches for r in (b.rows.to_pylist() if hasattr(b.rows, "to_pylist") else b.rows)]
        return got, (batches[-1].position if batches else after)

    got, pos = rows()
    assert [str(r["wh"]) for r in got] == ["1"] and pos["offset"] == 1
    with open(path, "a") as f:
        f.write(line.format(2)[-3:] + "\n")
    got, pos = rows(pos)
    assert [str(r["wh"]) for r in got] == ["2"] and pos["offset"] == 2


@pytest.mark.slow
def test_shard_killed_mid_meter_file_loses_no_reading(speed_grid, tmp_path):
    """kill -9 of a shard while a packed usage file streams in: the batch waits for the restarted shard (its
    WAL holds every acknowledged batch with its position) and every reading lands with its value."""
    import os
    import signal

    g, imp = speed_grid
    hours = 300
    rows = [(k % 20, k // 20, (k * 7919) % 5000) for k in range(20 * hours)]
    path = tmp_path / "kill.csv"
    path.write_text("sp,ts,wh\n" + "".join(
        f"S{sp:08d},{_hour(h)},{wh}\n" for sp, h, wh in rows))
    src = imp.registry.get("interval-wh")
    src.options["block_bytes"] = 8192  # ~230 rows a batch
    pid = next(s["pid"] for s in g.stats() if s["shard"] == 1)
    batches = []

    def kill_mid_file(n, _bytes):
        batches.append(n)
        if len(batches) == 3:
            os.kill(pid, signal.SIGKILL)

    rcpt = asyncio.run(imp.import_file(src, path, progress=kill_mid_file))
    assert rcpt.quarantined == 0 and len(batches) > 10, rcpt.view()
    assert next(s["pid"] for s in g.stats() if s["shard"] == 1) != pid  # it really died and came back
    assert asyncio.run(imp.import_file(src, path)).applied == 0
    for sp in range(20):
        got = {i["start"]: i["import_wh"] for i in g.customer_usage(f"C{sp:07d}", "2026-01", f"S{sp:08d}")["items"]}
        assert [got[_hour(h)] for h in range(hours)] == [wh for s, h, wh in rows if s == sp], sp


def _hour(h: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1767254400 + 3600 * h))
