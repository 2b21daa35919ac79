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
from http_load import load, serve
from grid.cluster import Grid
from grid.gateway.app import create_app
from grid.gateway.auth import KeyStore, digest
from grid.gateway.config import GatewayConfig

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
CUSTOMERS = 500
KEY = "bench-key-0123456789"


async def _load(base: str, ids: list[str]) -> dict:
    return await load(base, KEY, ids, method="GET", requests=REQUESTS, seconds=SECONDS, concurrency=CONCURRENCY)


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
