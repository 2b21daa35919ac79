"""The internal console at ``/console`` (operator and agent keys): static pages like the portal, plus the one
route only it needs, customer search. Everything else the console shows or changes goes through the public
API (contexts, bills, usage, messages, outages), so what the call centre sees is what any client sees.
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from grid.gateway.keys import GRID, PARAMS, PRINCIPAL
from grid.gateway.responses import respond

STATIC_DIR = Path(__file__).resolve().parent / "static" / "console"
SHARED_DIR = Path(__file__).resolve().parent / "static" / "shared"  # the API client the portal uses too


async def get_search(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    p = request[PARAMS]
    items = await request.app[GRID].asearch(p["q"], p.get("limit", 20))
    return respond(request, {"query": p["q"], "items": items}, "search")


async def get_console(request: web.Request) -> web.FileResponse:
    """The console's page (public: it holds no data; every call it makes needs an operator or agent key)."""
    resp = web.FileResponse(STATIC_DIR / "index.html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def setup_console(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/search", get_search, name="get_search")
    r.add_get("/console", get_console, name="console")
    r.add_static("/console/static", STATIC_DIR, name="console_static", append_version=False)
    r.add_static("/static/shared", SHARED_DIR, name="shared_static", append_version=False)
