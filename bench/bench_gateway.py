"""Gateway context-read throughput and latency beside a bare aiohttp handler returning the same body.

Run: ``make bench`` or ``.venv/bin/python -m pytest bench/bench_gateway.py -s``. Bounded: each load stops after
BENCH_REQUESTS requests or BENCH_SECONDS seconds, whichever comes first.
"""
from __future__ import annotations

import asyncio
import os
import time

from aiohttp import web

from factories import populate
from http_load import run_client, serve
from grid.cluster import Grid
from grid.gateway.app import create_app
from grid.gateway.auth import KeyStore, digest
from grid.gateway.config import GatewayConfig

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
CUSTOMERS = 500
KEY = "bench-key-0123456789"


CLIENT = r"""
import asyncio, json, random, sys, time
import numpy as np
from aiohttp import ClientSession, TCPConnector
base, key, ids, n_max, seconds, conc = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
async def main():
    lat, sent = [], 0
    deadline = time.perf_counter() + seconds
    async with ClientSession(connector=TCPConnector(limit=conc), headers={"Authorization": "Bearer " + key}) as s:
        async def worker():
            nonlocal sent
            while sent < n_max and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                async with s.get(base + "/v1/customers/" + random.choice(ids)) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    a = np.array(lat)
    print(json.dumps({"rps": len(lat) / wall, "p50_ms": 1e3 * float(np.percentile(a, 50)),
                      "p99_ms": 1e3 * float(np.percentile(a, 99)), "n": len(lat)}))
asyncio.run(main())
"""


async def _load(base: str, ids: list[str]) -> dict:
    import json

    return await run_client(CLIENT, [base, KEY, json.dumps(ids), str(REQUESTS), str(SECONDS), str(CONCURRENCY)],
                            SECONDS + 60)


def test_gateway_read_vs_bare_handler(ray_session, tmp_path, benchmark):
    grid = Grid.start(data_dir=str(tmp_path), shards=2, namespace="cg-bench-gw")
    ids = populate(grid, CUSTOMERS)
    keys = KeyStore([{"id": "bench", "role": "operator", "sha256": digest(KEY)}])  # operators are not rate-limited
    sample = grid.get(ids[0])
    import json
    body = json.dumps(sample, separators=(",", ":")).encode()

    async def bare(request):
        return web.Response(body=body, content_type="application/json")

    results = {}

    async def run():
        bare_app = web.Application()
        bare_app.router.add_get("/v1/customers/{id}", bare)
        for name, app in [("bare aiohttp", bare_app),
                          ("gateway (near cache)", create_app(grid, GatewayConfig(), keys)),
                          ("gateway (no cache, coalesced)", create_app(grid, GatewayConfig(near_cache_ttl_s=0), keys))]:
            runner, base = await serve(app)
            try:
                results[name] = await _load(base, ids)
            finally:
                await runner.cleanup()

    benchmark.pedantic(lambda: asyncio.run(run()), rounds=1, iterations=1)
    ref = results["bare aiohttp"]["rps"]
    print(f"\ncontext read, {len(body)} B body, {CONCURRENCY} concurrent clients on loopback")
    for name, r in results.items():
        print(f"  {name:32s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
              f"  ratio {r['rps'] / ref:4.2f}  (n={r['n']})")
    benchmark.extra_info.update({k: v for k, v in results.items()})
    grid.shutdown()
