"""Running the gateway: bind, announce, serve until interrupted."""
from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from grid.gateway.app import create_app


async def run_server(grid, config, keys, announce: list[str] | None = None) -> None:
    app = create_app(grid, config, keys)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    url = f"http://{config.host}:{config.port}"
    print(f"contextgrid serving at {url}  (API {url}/v1, portal {url}/portal, metrics {url}/metrics)", flush=True)
    for line in announce or []:
        print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover
            pass
    await stop.wait()
    await runner.cleanup()
