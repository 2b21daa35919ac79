"""``GET /v1/audit?customer=`` (operator): the customer's writes, newest first, from its shard's audit log.

:func:`audit_of` is what a handler puts in a write op's ``audit`` field: the key and role that wrote, the
route, the request id (the one problem bodies and logs quote) and what changed. The shard keeps it with the
write, through its WAL (see grid.audit).
"""
from __future__ import annotations

from aiohttp import web

from grid.audit import audit_block
from grid.gateway.keys import GRID, PARAMS, PRINCIPAL
from grid.gateway.problems import request_id
from grid.gateway.responses import respond


def audit_of(request: web.Request, kind: str, body: dict) -> dict:
    """The audit block of a write made by ``request``: a patch is its own record of what changed; a
    replacement names the parts it replaced; readings are counted per service point."""
    if kind == "usage":
        sps: dict[str, int] = {}
        for r in body.get("readings", []):
            sps[r["service_point_id"]] = sps.get(r["service_point_id"], 0) + 1
        changes = {"readings": sps}
    elif kind == "replace":
        changes = {"replaced": sorted(body)}
    else:
        changes = body
    p = request[PRINCIPAL]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
    return audit_block(p.key_id, p.role, request.method, route, request_id(request), changes)


async def get_audit(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    p = request[PARAMS]
    items = await request.app[GRID].acustomer_audit(p["customer"], p.get("limit", 100))
    return respond(request, {"customer_id": p["customer"], "items": items}, "audit")


def setup_audit(app: web.Application) -> None:
    app.router.add_get("/v1/audit", get_audit, name="get_audit")
