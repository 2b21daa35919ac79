"""The tariff catalogue over HTTP: list, read, upload, delete (``/v1/tariffs``).

The catalogue is the grid's (``<data dir>/tariffs``, grid.tariffs), opened once here and shared by every route
that prices anything (bill runs, the rate check, what-ifs).
"""
from __future__ import annotations

import dataclasses

from aiohttp import web

from grid.errors import Conflict
from grid.gateway.keys import BODY, CONFIG, GRID, PARAMS, PRINCIPAL, TARIFFS
from grid.gateway.responses import respond
from grid.tariffs import TariffCatalogue, names_timezone, seed


async def list_tariffs(request: web.Request) -> web.Response:
    cat = request.app[TARIFFS]
    items = []
    for tid in cat.ids():
        t = cat.get(tid)
        items.append({"id": tid, "name": t.name, "label": t.label, "timezone": t.timezone})
    return respond(request, {"items": items}, "tariffs")


async def get_tariff(request: web.Request) -> web.Response:
    return respond(request, request.app[TARIFFS].get_json(request[PARAMS]["id"]), "tariff")


async def put_tariff(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    tid = request[PARAMS]["id"]
    own_zone = names_timezone(request[BODY])
    compiled = request.app[TARIFFS].put(tid, request[BODY])  # compiles (validates) before it writes
    out = {"id": tid, "name": compiled.name, "codes": list(compiled.codes), "timezone": compiled.timezone,
           "timezone_source": "tariff" if own_zone else "grid"}
    if not own_zone:
        out["notes"] = [f"the tariff names no contextgrid.timezone: it is billed in the grid's zone "
                        f"{compiled.timezone} (stored in its contextgrid block)"]
    return respond(request, out, "tariff")


async def delete_tariff(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    tid = request[PARAMS]["id"]
    cat = request.app[TARIFFS]
    cat.get_json(tid)  # 404 first for an unknown id
    users = await request.app[GRID].alist({"rate_plan_id": tid}, None, 1)
    if users:
        raise Conflict(f"tariff {tid!r} is the rate plan of an account of customer {users[0]['customer_id']} "
                       "(and maybe others); move those accounts first", field="id")
    cat.delete(tid)
    return web.Response(status=204)


def setup_tariffs(app: web.Application) -> None:
    """Open (seeding on first start) the grid's catalogue; register the routes. Call before routes that price."""
    config = app[CONFIG]
    grid = app[GRID]
    grid_settings = getattr(grid, "config", None)
    timezone = getattr(grid_settings, "timezone", config.timezone)
    if config.tariff_dir is None:  # the grid's data dir holds the catalogue
        directory = config.tariffs_path(getattr(grid, "data_dir", None))
        app[CONFIG] = config = dataclasses.replace(config, tariff_dir=str(directory))
    app[TARIFFS] = TariffCatalogue(seed(config.tariff_dir), timezone=timezone)
    r = app.router
    r.add_get("/v1/tariffs", list_tariffs, name="list_tariffs")
    r.add_get("/v1/tariffs/{id}", get_tariff, name="get_tariff")
    r.add_put("/v1/tariffs/{id}", put_tariff, name="put_tariff")
    r.add_delete("/v1/tariffs/{id}", delete_tariff, name="delete_tariff")
