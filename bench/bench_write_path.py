"""The write path through the gateway (PATCH, fsync ``batch``) beside its floor: a bare aiohttp handler that
appends the body to a file and fsyncs it, driven by the same client, in one run.

Both servers run in this process; the client is a separate process (so client and server do not share one GIL)
with BENCH_WRITE_CLIENTS concurrent connections (default 8), each sending PATCH requests one after another.
Bounded: each load stops after BENCH_WRITE_REQUESTS requests or BENCH_WRITE_SECONDS seconds.
Goal (issue 9): gateway p99 < 5 ms and throughput >= 0.5 of the floor.
Run: ``.venv/bin/python -m pytest bench/bench_write_path.py -s``.
"""
from __future__ import annotations

import asyncio
import os

from aiohttp import web

from factories import populate
from http_load import load, serve
from grid.cluster import Grid
from grid.gateway.app import create_app
from grid.gateway.auth import KeyStore, digest
from grid.gateway.config import GatewayConfig

REQUESTS = int(os.environ.get("BENCH_WRITE_REQUESTS", "20000"))
SECONDS = float(os.environ.get("BENCH_WRITE_SECONDS", "10"))
CLIENTS = int(os.environ.get("BENCH_WRITE_CLIENTS", "8"))
CUSTOMERS = 200
KEY = "bench-key-0123456789"


async def _load(base: str, ids: list[str]) -> dict:
    return await load(base, KEY, ids, method="PATCH", requests=REQUESTS, seconds=SECONDS, concurrency=CLIENTS)


def _floor_app(path: str) -> web.Application:
    """Append the request body to a file and fsync it before answering: what any durable write costs."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(data: bytes) -> None:
        os.write(fd, data + b"\n")
        os.fsync(fd)

    async def patch(request: web.Request) -> web.Response:
        data = await request.read()
        await asyncio.get_running_loop().run_in_executor(None, append, data)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_patch("/v1/customers/{id}", patch)
    return app


def test_patch_through_the_gateway_vs_append_and_fsync(ray_session, tmp_path, benchmark):
    grid = Grid.start(data_dir=str(tmp_path / "grid"), shards=2, namespace="cg-bench-write", fsync="batch")
    ids = populate(grid, CUSTOMERS)
    keys = KeyStore([{"id": "bench", "role": "operator", "sha256": digest(KEY)}])
    results = {}

    async def run():
        for name, app in [("floor: aiohttp append+fsync", _floor_app(str(tmp_path / "floor.log"))),
                          ("gateway PATCH (WAL batch)", create_app(grid, GatewayConfig(), keys))]:
            runner, base = await serve(app)
            try:
                results[name] = await _load(base, ids)
            finally:
                await runner.cleanup()

    benchmark.pedantic(lambda: asyncio.run(run()), rounds=1, iterations=1)
    floor = results["floor: aiohttp append+fsync"]["rps"]
    print(f"\nPATCH, {CLIENTS} concurrent clients on loopback, WAL fsync batch")
    for name, r in results.items():
        print(f"  {name:30s} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms"
              f"  share of floor {r['rps'] / floor:4.2f}  (n={r['n']})")
    benchmark.extra_info.update(results)
    grid.shutdown()
