"""A gateway on a real loopback TCP port, served from its own thread and event loop.

Tools that speak plain synchronous HTTP (the schemathesis CLI, ``urllib``) cannot share pytest-asyncio's loop
with the server they call; this runs ``create_app(...)`` on a private loop in a daemon thread instead.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Callable

from aiohttp import web


class LiveGateway:
    """``with LiveGateway(make_app) as gw: gw.url``; the app is built on the server's own loop."""

    def __init__(self, make_app: Callable[[], web.Application]):
        self._make_app = make_app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-gateway", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url = ""

    def __enter__(self) -> "LiveGateway":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(60)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self.app = self._make_app()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def run(self, coro, timeout: float = 60):
        """Run ``coro`` on the server's loop (to reach app state from a test)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)
