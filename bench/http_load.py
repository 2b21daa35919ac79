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
