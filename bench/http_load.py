"""Serving an app on loopback and driving it from a client process: shared by the HTTP benchmarks."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Start ``app`` on a free loopback port; (runner to clean up, base URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def run_client(script: str, args: list[str], timeout_s: float) -> dict:
    """Run the load ``script`` in its own process (client and server must not share one GIL); its JSON line."""
    cmd = [sys.executable, "-c", script, *args]
    out = await asyncio.get_running_loop().run_in_executor(
        None, lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


# One client for every HTTP benchmark: ``conc`` workers, each sending requests one after another to
# ``base + path_prefix + <random id>`` until ``n_max`` requests or ``seconds`` pass. A PATCH sends
# ``{"attributes": {"w<worker>": <counter>}}`` so every write changes the context.
CLIENT = r"""
import asyncio, json, random, sys, time
import numpy as np
from aiohttp import ClientSession, TCPConnector
base, key, ids, n_max, seconds, conc, method = (sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]),
                                                float(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
async def main():
    lat, sent = [], 0
    deadline = time.perf_counter() + seconds
    async with ClientSession(connector=TCPConnector(limit=conc), headers={"Authorization": "Bearer " + key}) as s:
        async def worker(w):
            nonlocal sent
            i = 0
            while sent < n_max and time.perf_counter() < deadline:
                sent += 1
                i += 1
                kw = {"json": {"attributes": {"w%d" % w: i}}} if method == "PATCH" else {}
                t0 = time.perf_counter()
                async with s.request(method, base + "/v1/customers/" + random.choice(ids), **kw) as r:
                    await r.read()
                    assert r.status == 200, r.status
                lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(conc)))
        wall = time.perf_counter() - t0
    a = np.array(lat)
    print(json.dumps({"rps": len(lat) / wall, "p50_ms": 1e3 * float(np.percentile(a, 50)),
                      "p99_ms": 1e3 * float(np.percentile(a, 99)), "n": len(lat)}))
asyncio.run(main())
"""


async def load(base: str, key: str, ids: list[str], *, method: str, requests: int, seconds: float,
               concurrency: int) -> dict:
    """Drive ``method /v1/customers/{id}`` on ``base`` from a client process; rps, p50/p99 (ms), n."""
    return await run_client(CLIENT, [base, key, json.dumps(ids), str(requests), str(seconds), str(concurrency),
                                     method], seconds + 60)
