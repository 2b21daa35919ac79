"""Freshness: a row committed in PostgreSQL, visible in ``GET /v1/customers/{id}`` (goal p99 < 1 s).

A generated base is loaded into a two-shard grid; its billing dump is loaded into a throwaway PostgreSQL; the
gateway follows the customers table. Each round commits one ``UPDATE customers SET name = ...`` and polls the
context (every 5 ms) until the new name shows; the time from the commit returning to the first read showing it
is the freshness. Peers, in the same run on the same rows: logical decoding (the slot, ``interval_ms`` 50)
and polling by the change column (``updated_at``, the fallback, same interval).

A third round repeats the logical peer under a sustained load: another task commits BENCH_SOR_LOAD_RPS row
updates per second (in transactions of 10 ms' worth) on the other customers while the probes run; it reports
the rows the load committed and the freshness the probes saw.

Run: ``.venv/bin/python -m pytest bench/bench_imports_sources.py -s``. Sizes: BENCH_SOR_CUSTOMERS (300),
BENCH_SOR_COMMITS (200 per peer), BENCH_SOR_INTERVAL_MS (50), BENCH_SOR_LOAD_RPS (2000).
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

CUSTOMERS = int(os.environ.get("BENCH_SOR_CUSTOMERS", "300"))
COMMITS = int(os.environ.get("BENCH_SOR_COMMITS", "200"))
INTERVAL_MS = int(os.environ.get("BENCH_SOR_INTERVAL_MS", "50"))
LOAD_RPS = int(os.environ.get("BENCH_SOR_LOAD_RPS", "2000"))
KEY = "bench-key-0123456789"
SOURCES = Path(__file__).resolve().parents[1] / "sources"


def _write_source(root: Path, dsn: str, mode: str) -> None:
    spec = yaml.safe_load((SOURCES / "billing-db-customers.yaml").read_text())
    spec["location"] = dsn
    spec["options"] = {"table": "customers", "mode": mode, "interval_ms": INTERVAL_MS, "key": "customer_number",
                       "change_column": "updated_at"}
    (root / "sources" / "billing-db-customers.yaml").write_text(yaml.safe_dump(spec))


async def _load(dsn: str, ids: list[str], stop: asyncio.Event) -> int:
    """Commit LOAD_RPS row updates per second on ``ids`` until ``stop``; the rows committed."""
    import psycopg

    per_txn = max(1, LOAD_RPS // 100)
    sent, t0 = 0, time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        while not stop.is_set():
            batch = [ids[(sent + k) % len(ids)] for k in range(per_txn)]
            await c.execute("UPDATE customers SET name = name || '.', updated_at = clock_timestamp() "
                            "WHERE customer_number = ANY(%s)", (batch,))
            sent += per_txn
            ahead = sent / LOAD_RPS - (time.perf_counter() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return sent


async def _freshness(client, dsn: str, ids: list[str], tag: str) -> list[float]:
    import psycopg

    out = []
    rnd = random.Random(7)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        for i in range(COMMITS):
            cid = rnd.choice(ids)
            name = f"{tag} {i}"
            await c.execute("UPDATE customers SET name = %s, updated_at = clock_timestamp() "
                            "WHERE customer_number = %s", (name, cid))
            t0 = time.perf_counter()
            while True:
                async with client.get(f"/v1/customers/{cid}") as r:
                    if (await r.json())["name"] == name:
                        break
                if time.perf_counter() - t0 > 30:
                    raise AssertionError(f"{tag}: commit {i} not visible after 30 s")
                await asyncio.sleep(0.005)
            out.append(time.perf_counter() - t0)
    return out


def test_postgres_commit_to_context_freshness(ray_session, tmp_path, benchmark):
    import psycopg
    from aiohttp import ClientSession
    from aiohttp.test_utils import TestServer

    from grid.cluster import Grid
    from grid.gateway.app import create_app
    from grid.gateway.auth import KeyStore, digest
    from grid.imports.pg_instance import LocalPostgres, find_bin
    from grid.synth import generate_base
    from grid.synth.sources import generate_sources
    from grid.synth.sources.billing import load_dump

    if find_bin() is None:
        pytest.skip("PostgreSQL is not installed")
    base = tmp_path / "base"
    generate_base(base, CUSTOMERS, seed=1, first_month="2026-11", months=1, chunk_customers=CUSTOMERS)
    generate_sources(base, meter_days=1)
    pg_root = tempfile.mkdtemp(prefix="cg-bench-pg-")
    pg = LocalPostgres(pg_root).start()
    results: dict[str, float] = {}
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            load_dump(c, base / "feeds")
            ids = [r[0] for r in c.execute("SELECT customer_number FROM customers WHERE customer_number <= %s",
                                           (f"C{CUSTOMERS:07d}",))]
        root = tmp_path / "grid"
        (root / "sources").mkdir(parents=True)
        g = Grid.start(data_dir=str(root), shards=2, namespace="cg-bench-sor")
        g.load(base)
        keys = KeyStore([{"id": "ops", "role": "operator", "sha256": digest(KEY)}])

        async def run():
            for mode in ("logical", "poll", "logical_loaded"):
                _write_source(root, pg.dsn, mode.split("_")[0])
                server = TestServer(create_app(g, keys=keys))
                await server.start_server()
                try:
                    async with ClientSession(str(server.make_url("")),
                                             headers={"Authorization": f"Bearer {KEY}"}) as client:
                        for _ in range(600):  # the snapshot (or the first poll) first
                            async with client.get("/v1/imports") as r:
                                src = next(s for s in (await r.json())["items"] if s["source"] == "billing-db-customers")
                            if src["batches"] and src["state"] == "idle":
                                break
                            await asyncio.sleep(0.1)
                        probes, others = (ids[: len(ids) // 4], ids[len(ids) // 4:]) if mode.endswith("loaded") \
                            else (ids, [])
                        stop = asyncio.Event()
                        load = asyncio.create_task(_load(pg.dsn, others, stop)) if others else None
                        t0 = time.perf_counter()
                        lat = np.array(await _freshness(client, pg.dsn, probes, mode))
                        if load is not None:
                            stop.set()
                            results["load_rows_per_s"] = round(await load / (time.perf_counter() - t0))
                        results.update({f"{mode}_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
                                        f"{mode}_p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
                                        f"{mode}_max_ms": round(float(lat.max()) * 1000, 1)})
                finally:
                    await server.close()

        benchmark.pedantic(lambda: asyncio.run(run()), rounds=1, iterations=1)
        g.shutdown()
    finally:
        pg.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
    benchmark.extra_info.update(results)
    print(f"\nfreshness over {COMMITS} commits per peer ({CUSTOMERS} customers, poll interval {INTERVAL_MS} ms): "
          + ", ".join(f"{k} {v}" for k, v in results.items()))
    print(f"logical / poll p99: {results['logical_p99_ms'] / max(results['poll_p99_ms'], 1e-9):.2f}; "
          f"loaded / idle logical p99: {results['logical_loaded_p99_ms'] / max(results['logical_p99_ms'], 1e-9):.2f}")
