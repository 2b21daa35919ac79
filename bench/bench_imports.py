"""Import throughput beside bare CSV parsers, and freshness of a watched file.

1. Throughput: an interval-read CSV (service point, UTC timestamp, Wh) of ``BENCH_IMPORT_ROWS`` rows (default
   500k; the issue's figure is 10M: ``BENCH_IMPORT_ROWS=10000000``) imported into two shards, durable (WAL
   fsync ``batch``), beside a bare parse of the same file by duckdb's ``read_csv`` and by ``pyarrow.csv``
   in the same run. Goal: import >= 0.5 of the faster bare parse. After timing, every reading is checked.
2. Freshness: a row appended to a watched file, until ``GET /v1/customers/{id}/usage`` shows it (the gateway's
   folder watcher; default settle against tail mode); p50/p99 over ``BENCH_FRESH_SAMPLES`` appends. Goal:
   p99 < 1 s. A one-row HTTP push: time to its 200, the row read right after it.
3. Lag under a sustained load of ``BENCH_LOAD_ROWS_PER_S`` readings a second (default 10k) for
   ``BENCH_LOAD_SECONDS`` (default 10), appended to a watched file (tail mode) or pushed: p50/p99 lag and
   whether it keeps up.

Run: ``PYTHONPATH=src .venv/bin/python -m pytest bench/bench_imports.py -s``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from grid.cluster import Grid
from grid.imports.importer import Importer

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "500000"))
METERS = int(os.environ.get("BENCH_IMPORT_METERS", "1000"))
REPEAT = int(os.environ.get("BENCH_IMPORT_REPEAT", "1"))
FRESH = int(os.environ.get("BENCH_FRESH_SAMPLES", "30"))
LOAD_RATE = int(os.environ.get("BENCH_LOAD_ROWS_PER_S", "10000"))
LOAD_SECONDS = float(os.environ.get("BENCH_LOAD_SECONDS", "10"))
SOURCES = Path(__file__).resolve().parents[1] / "sources"
T0 = 1767254400  # 2026-01-01T08:00:00Z: local midnight of the grid's default zone (America/Los_Angeles)


def _customers(n: int) -> list[dict]:
    return [{"CUST_ID": f"C{i:07d}", "CUST_NAME": f"Customer {i}", "CLASS": "RES", "ACCT_NO": f"A{i:08d}",
             "RATE": "r1", "SP_ID": f"S{i:08d}", "INTERVAL": "60"} for i in range(n)]


def _write_reads(path: Path, rows: int, meters: int) -> np.ndarray:
    """rows readings, meter-major within each hour; returns the Wh column (to check after the import).

    Wh are seeded pseudo-random (0..4999, as a meter's hourly energy): a periodic column would compress in the
    WAL far better than real readings do, and flatter the import.
    """
    import polars as pl

    k = np.arange(rows, dtype=np.int64)
    sp, hour = k % meters, k // meters
    wh = np.random.default_rng(7919).integers(0, 5000, rows, dtype=np.int64)
    ts = np.datetime_as_string((T0 + hour * 3600).astype("datetime64[s]"), unit="s")
    pl.DataFrame({"sp": sp, "ts": ts, "wh": wh}).with_columns(
        pl.format("S{}", pl.col("sp").cast(pl.String).str.zfill(8)).alias("sp"),
        (pl.col("ts") + "Z").alias("ts")).write_csv(path)
    return wh


def _setup(root: Path, namespace: str) -> tuple[Grid, Importer]:
    (root / "sources").mkdir(parents=True, exist_ok=True)
    for name in ("interval-wh.yaml", "billing-customers.yaml"):
        shutil.copy(SOURCES / name, root / "sources" / name)
    g = Grid.start(data_dir=str(root), shards=2, namespace=namespace, fsync="batch")
    imp = Importer(g, root)
    rcpt = asyncio.run(imp.push("billing-customers", _customers(METERS)))
    assert rcpt.applied == METERS, rcpt.view()
    return g, imp


def _cpu(pids=()) -> float:
    """CPU seconds (user + system) used so far by this process and the processes ``pids`` (the shards)."""
    import psutil  # Ray's own dependency

    return sum(sum(psutil.Process(p).cpu_times()[:2]) for p in (os.getpid(), *pids))


def test_import_throughput_beside_bare_parsers(ray_session, tmp_path, benchmark):
    """``BENCH_IMPORT_REPEAT`` rounds (default 1), each: duckdb, pyarrow.csv, then the import into a fresh grid.
    Wall ratios swing with the machine's load (2 cores shared with other sessions); the CPU-seconds each peer
    spends (the import's: this process and both shards) are printed beside them and swing less."""
    import duckdb
    import pyarrow.csv as pacsv

    path = tmp_path / "reads.csv"
    wh = _write_reads(path, ROWS, METERS)
    size_mb = path.stat().st_size / 1e6
    print(f"\n{ROWS:,} interval reads, {size_mb:.0f} MB, {METERS} meters, 2 shards, fsync=batch")
    ratios, cpu_ratios = [], []
    for r in range(REPEAT):
        times, cpus = {}, {}
        c, t = _cpu(), time.perf_counter()
        n_duck = duckdb.sql(f"select * from read_csv('{path}')").fetch_arrow_table().num_rows
        times["duckdb read_csv"], cpus["duckdb read_csv"] = time.perf_counter() - t, _cpu() - c
        c, t = _cpu(), time.perf_counter()
        n_arrow = pacsv.read_csv(path).num_rows
        times["pyarrow.csv"], cpus["pyarrow.csv"] = time.perf_counter() - t, _cpu() - c
        assert n_duck == n_arrow == ROWS
        g, imp = _setup(tmp_path / f"grid{r}", f"cg-bench-imports-{r}")
        pids = [s["pid"] for s in g.stats()]
        load = os.getloadavg()[0]
        c, t = _cpu(pids), time.perf_counter()
        rcpt = asyncio.run(imp.import_file("interval-wh", path))
        times["contextgrid import (durable)"] = time.perf_counter() - t
        cpus["contextgrid import (durable)"] = _cpu(pids) - c
        assert rcpt.applied == ROWS and rcpt.quarantined == 0, rcpt.view()
        # every reading landed where it belongs: the first two meters' first month, compared exactly
        hours = ROWS // METERS
        for s in (0, 1):
            got = g.customer_usage(f"C{s:07d}", "2026-01", f"S{s:08d}")["items"]
            by_start = {i["start"]: i["import_wh"] for i in got}
            for h in range(min(hours, 24 * 20)):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + h * 3600))
                assert by_start[stamp] == int(wh[h * METERS + s]), (s, h)
        g.shutdown()
        print(f" round {r + 1} (load average {load:.1f}):")
        for name, sec in times.items():
            print(f"  {name:30s} {sec:7.2f} s  {ROWS / sec / 1e6:6.2f} M rows/s  {cpus[name]:6.2f} cpu-s")
        best = min(times["duckdb read_csv"], times["pyarrow.csv"])
        ratios.append(best / times["contextgrid import (durable)"])
        cpu_ratios.append(min(cpus["duckdb read_csv"], cpus["pyarrow.csv"]) / cpus["contextgrid import (durable)"])
        print(f"  import / faster bare parse: {ratios[-1]:.2f} wall, {cpu_ratios[-1]:.2f} cpu (goal >= 0.5)")
    print(f" best of {REPEAT}: {max(ratios):.2f} wall, {max(cpu_ratios):.2f} cpu")
    benchmark.extra_info.update(ratio=max(ratios), cpu_ratio=max(cpu_ratios))
    benchmark.pedantic(lambda: None, rounds=1)


async def _gateway(root: Path, g: Grid, options: dict):
    """A test client on the gateway (its folder watcher running) with ``interval-wh`` given ``options``, and
    the importer behind it; the live feed file exists (empty) and has been taken once."""
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app
    from grid.gateway.auth import KeyStore, digest
    from grid.gateway.imports import IMPORTER

    spec = yaml.safe_load((root / "sources" / "interval-wh.yaml").read_text())
    spec["options"] = options
    (root / "sources" / "interval-wh.yaml").write_text(yaml.safe_dump(spec))
    inbox = root / "inbox" / "interval-wh"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "live.csv").write_text("sp,ts,wh\n")
    keys = KeyStore([{"id": "ops", "role": "operator", "sha256": digest("bench-op-key-0123456789")}])
    app = create_app(g, keys=keys)
    client = TestClient(TestServer(app))
    await client.start_server()
    await asyncio.sleep(0.6)  # the watcher takes the (empty) file first
    return client, app[IMPORTER], inbox / "live.csv"


HEADERS = {"Authorization": "Bearer bench-op-key-0123456789"}


def _reading(k: int, hour0: int = 1) -> tuple[str, str, int]:
    """Row k of a feed: (service point, start, Wh); meter-major within each hour from ``hour0``."""
    return (f"S{k % METERS:08d}", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 3600 * (hour0 + k // METERS))),
            1000 + k % 4000)


async def _visible(client, k: int, t: float, hour0: int = 1) -> float:
    sp, stamp, wh = _reading(k, hour0)
    while True:
        r = await client.get(f"/v1/customers/C{k % METERS:07d}/usage", headers=HEADERS,
                             params={"month": "2026-01", "service_point_id": sp})
        if any(i["start"] == stamp and i["import_wh"] == wh for i in (await r.json())["items"]):
            return time.perf_counter() - t
        if time.perf_counter() - t > 20:
            raise AssertionError(f"row {k} not visible after 20 s")
        await asyncio.sleep(0.005)


def _pct(lat) -> str:
    lat = np.asarray(lat)
    return f"p50 {np.percentile(lat, 50) * 1e3:.0f} ms  p99 {np.percentile(lat, 99) * 1e3:.0f} ms"


@pytest.mark.parametrize("mode", ["settle", "tail"])
def test_freshness_of_a_watched_file(ray_session, tmp_path, benchmark, mode):
    """One row appended at a time to a watched file, until GET .../usage shows it: the default settle (300 ms
    without change before a file is read) against tail mode (complete lines read at each event)."""
    root = tmp_path / "grid"
    g, _ = _setup(root, f"cg-bench-fresh-{mode}")
    options = {"tail": True} if mode == "tail" else {}

    async def run():
        client, _, feed = await _gateway(root, g, options)
        lat = []
        try:
            for k in range(FRESH):
                sp, stamp, wh = _reading(k)
                t = time.perf_counter()
                with open(feed, "a") as f:
                    f.write(f"{sp},{stamp},{wh}\n")
                lat.append(await _visible(client, k, t))
        finally:
            await client.close()
        return lat

    lat = asyncio.run(run())
    print(f"\nwatched-file append ({mode}) -> visible in GET /v1/customers/{{id}}/usage, {FRESH} appends: "
          f"{_pct(lat)} (goal p99 < 1 s)")
    benchmark.extra_info.update(p50_s=float(np.percentile(lat, 50)), p99_s=float(np.percentile(lat, 99)))
    benchmark.pedantic(lambda: None, rounds=1)
    g.shutdown()


def test_push_is_visible_on_its_acknowledgement(ray_session, tmp_path, benchmark):
    """One-row pushes: the time to the 200, and the row read right after it (it must be there)."""
    root = tmp_path / "grid"
    g, _ = _setup(root, "cg-bench-push")

    async def run():
        client, _, _ = await _gateway(root, g, {})
        lat = []
        try:
            for k in range(FRESH):
                sp, stamp, wh = _reading(k)
                t = time.perf_counter()
                r = await client.post("/v1/imports/interval-wh", json=[{"sp": sp, "ts": stamp, "wh": str(wh)}],
                                      headers=HEADERS)
                assert r.status == 200 and (await r.json())["applied"] == 1
                lat.append(time.perf_counter() - t)
                assert await _visible(client, k, time.perf_counter()) < 0.05  # the first read shows it
        finally:
            await client.close()
        return lat

    lat = asyncio.run(run())
    print(f"\nHTTP push of one reading -> 200 (visible on the ack: read right after), {FRESH} pushes: {_pct(lat)}")
    benchmark.extra_info.update(p50_s=float(np.percentile(lat, 50)), p99_s=float(np.percentile(lat, 99)))
    benchmark.pedantic(lambda: None, rounds=1)
    g.shutdown()


@pytest.mark.parametrize("feed", ["tail-file", "settle-file", "push"])
def test_lag_under_sustained_load(ray_session, tmp_path, benchmark, feed):
    """``BENCH_LOAD_ROWS_PER_S`` readings a second (default 10k) for ``BENCH_LOAD_SECONDS``, in chunks every
    50 ms, appended to a watched file (tail mode, or the default settle: a file appended to every 50 ms never
    settles, so its rows wait for the end) or pushed over HTTP. A chunk's lag: from its (scheduled)
    write until the importer counts it applied (durable on its shards, readable: see the push test). Keeps
    up when the rows land at the offered rate and the lag does not grow over the run."""
    root = tmp_path / "grid"
    g, _ = _setup(root, f"cg-bench-load-{feed}")
    step = 0.05
    chunk = max(1, int(LOAD_RATE * step))
    chunks = max(1, int(LOAD_SECONDS / step))

    async def run():
        client, imp, path = await _gateway(root, g, {} if feed == "settle-file" else {"tail": True})
        prog = imp._progress("interval-wh")
        base = prog.rows_applied
        sent, landed = [], []

        async def monitor():
            while len(landed) < chunks:
                got = (prog.rows_applied - base) // chunk
                now = time.perf_counter()
                while len(landed) < min(got, len(sent)):
                    landed.append(now)
                await asyncio.sleep(0.005)

        mon = asyncio.create_task(monitor())
        t0 = time.perf_counter()
        try:
            for c in range(chunks):
                due = t0 + c * step
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                rows = [_reading(k, 200) for k in range(c * chunk, (c + 1) * chunk)]
                sent.append(due)
                if feed == "push":
                    r = await client.post("/v1/imports/interval-wh", headers=HEADERS,
                                          json=[{"sp": sp, "ts": ts, "wh": str(wh)} for sp, ts, wh in rows])
                    assert r.status == 200, await r.text()
                else:
                    with open(path, "a") as f:
                        f.write("".join(f"{sp},{ts},{wh}\n" for sp, ts, wh in rows))
            await asyncio.wait_for(mon, 120)
            await _visible(client, chunks * chunk - 1, time.perf_counter(), 200)  # the last row reads back
        finally:
            mon.cancel()
            await client.close()
        return np.array(sent), np.array(landed)

    sent, landed = asyncio.run(run())
    lag = landed - sent
    rate = chunks * chunk / (landed[-1] - sent[0])
    tenth = max(1, chunks // 10)
    early, late = float(np.median(lag[:tenth])), float(np.median(lag[-tenth:]))
    keeps_up = rate >= 0.9 * LOAD_RATE and late < early + 0.5
    print(f"\n{feed}: {chunks * chunk:,} readings offered at {LOAD_RATE:,}/s in {chunk}-row chunks: lag {_pct(lag)}, "
          f"max {lag.max() * 1e3:.0f} ms; landed at {rate:,.0f}/s; first/last tenth median lag "
          f"{early * 1e3:.0f}/{late * 1e3:.0f} ms: {'keeps up' if keeps_up else 'does NOT keep up'}")
    benchmark.extra_info.update(p50_s=float(np.percentile(lag, 50)), p99_s=float(np.percentile(lag, 99)),
                                rate=rate, keeps_up=keeps_up)
    benchmark.pedantic(lambda: None, rounds=1)
    g.shutdown()
