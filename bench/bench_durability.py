"""Cost of durability through the grid, and recovery time against shard size.

1. Acknowledged-write throughput and p99 latency through a shard actor with WAL fsync ``batch`` vs ``off``
   (64 concurrent writers; the ratio is the price of durability; goal: batch >= 0.5 of off).
2. Recovery: a shard rebuilt from its newest snapshot plus WAL replay, for growing shard sizes.
Run: ``.venv/bin/python -m pytest bench/bench_durability.py -s``.
"""
from __future__ import annotations

import os
import time

import numpy as np
from factories import context

from grid.cluster import Grid
from grid.partitions import PARTITIONS
from grid.shard_actor import ShardServer

WRITES = int(os.environ.get("BENCH_WRITES", "4000"))
WRITERS = 64


def _write_load(grid, ids) -> dict:
    """WRITES patches from WRITERS concurrent asyncio writers through the async client (as the gateway does)."""
    import asyncio

    from grid.cluster import make_op

    lat = []
    per = WRITES // WRITERS

    async def writer(w):
        for i in range(per):
            t0 = time.perf_counter()
            await grid.awrite(make_op("patch", ids[(w + i) % len(ids)], {"attributes": {f"w{w}": i}}))
            lat.append(time.perf_counter() - t0)

    async def run():
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        return time.perf_counter() - t0

    wall = asyncio.run(run())
    a = np.array(lat)
    return {"writes_s": len(lat) / wall, "p50_ms": 1e3 * np.percentile(a, 50), "p99_ms": 1e3 * np.percentile(a, 99)}


def test_write_cost_of_durability(ray_session, tmp_path, benchmark):
    out = {}
    for policy in ("off", "batch"):
        g = Grid.start(data_dir=str(tmp_path / policy), shards=1, namespace=f"cg-bench-dur-{policy}", fsync=policy)
        ids = []
        for i in range(200):
            cid, body = context(i)
            g.replace(cid, body)
            ids.append(cid)
        out[policy] = _write_load(g, ids)
        g.shutdown()
    for policy, r in out.items():
        print(f"\nfsync={policy:5s} {r['writes_s']:8.0f} acknowledged writes/s  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms")
    print(f"batch / off throughput: {out['batch']['writes_s'] / out['off']['writes_s']:.2f}")
    benchmark.extra_info.update(out)
    benchmark.pedantic(lambda: None, rounds=1)


def test_recovery_time_against_shard_size(tmp_path, benchmark):
    import asyncio

    rows = []
    for customers in (1_000, 10_000, 40_000):
        d = tmp_path / f"s{customers}"
        srv = ShardServer(0, list(range(PARTITIONS)), str(d), "America/Los_Angeles")
        for i in range(customers):
            cid, body = context(i)
            srv.shard.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"r{i}"})
        asyncio.run(srv.snapshot())
        for i in range(2_000):  # a WAL tail after the snapshot
            asyncio.run(srv.write({"kind": "patch", "customer_id": f"C{i % customers:07d}",
                                   "body": {"attributes": {"x": i}}, "write_id": f"p{i}"}))
        srv.wal.close()
        t0 = time.perf_counter()
        again = ShardServer(0, list(range(PARTITIONS)), str(d), "America/Los_Angeles")
        seconds = time.perf_counter() - t0
        assert len(again.shard.records) == customers and again.recovery["replayed"] == 2_000
        again.wal.close()
        rows.append((customers, seconds))
        print(f"\nrecovery of {customers:6d} customers (snapshot + 2000-write WAL tail): {seconds:.3f} s")
    benchmark.extra_info["recovery"] = rows
    benchmark.pedantic(lambda: None, rounds=1)
