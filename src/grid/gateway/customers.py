"""Handlers for ``/v1/customers``: each request goes to the owning shard only (listing excepted)."""
from __future__ import annotations

from aiohttp import web

from grid.cluster import make_op
from grid.context import check_owners, check_references
from grid.errors import Forbidden, NotFound
from grid.gateway.audit import audit_of
from grid.gateway.keys import BODY, GRID, PARAMS, PRINCIPAL, READS, TARIFFS
from grid.gateway.paging import decode_cursor, encode_cursor
from grid.gateway.responses import respond

CUSTOMER_PATCHABLE = {"contacts", "notes", "supplemental"}  # what a customer may change about itself
FILTERS = ("kind", "segment", "rate_plan_id", "program", "load_priority", "has_solar", "name", "churn_risk_gte")


def _customer_id(request: web.Request) -> str:
    cid = request[PARAMS]["id"]
    request[PRINCIPAL].check_customer(cid)
    return cid


def _context(request: web.Request, rec: dict) -> web.Response:
    """A context in the negotiated format, its version as the ETag (for If-Match)."""
    if request[PRINCIPAL].role == "customer":  # contacts: notes written by staff stay internal (issue 10)
        rec = {**rec, "notes": [n for n in rec.get("notes", []) if n.get("visibility") == "customer"]}
    return respond(request, rec, "customer", headers={"ETag": f'"{rec["version"]}"'})


def _write_id(request: web.Request, cid: str) -> str | None:
    key = request[PARAMS].get("Idempotency-Key")
    # scope client keys by API key and customer, so two clients' keys never collide; a key reused for another
    # write (a patch, then readings) is refused by the shard (bound to the request: see _request_digest)
    return f"{request[PRINCIPAL].key_id}:{cid}:{key}" if key else None


def _request_digest(request: web.Request, body) -> str:
    """What an Idempotency-Key is bound to: method, route and body (canonical JSON), as payment APIs do."""
    import hashlib
    import json

    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


async def get_customer(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    return _context(request, await request.app[READS].read(cid))


async def get_accounts(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    return respond(request, {"items": await request.app[GRID].aaccounts(cid)}, "accounts")


async def get_bills(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    p = request[PARAMS]
    if p.get("period"):  # one month: the computed bill beside the legacy bill, compared
        from grid.gateway.keys import CONFIG

        items = await request.app[GRID].acustomer_period(cid, p["period"], request.app[CONFIG].tariff_dir)
        if p.get("account_id"):
            items = [i for i in items if i["account_id"] == p["account_id"]]
            if not items:
                raise NotFound(f"no account {p['account_id']!r} on customer {cid}", field="account_id")
        items = [{**i, "computed": labelled(request, i["computed"], i["rate_plan_id"]),
                  "legacy": labelled(request, i["legacy"], i["rate_plan_id"])} for i in items]
        return respond(request, {"items": items}, "bills")
    # the legacy bills, each account's plan (readable line names need its tariff) and the amount due, in one
    # read of the owning shard (grid.balances: the same amount the payment-due notice states)
    data = await request.app[GRID].abill_statement(cid, p.get("account_id"), p.get("as_of"))
    bills = [labelled(request, b, data["plans"].get(b["account_id"])) for b in data["items"]]
    due = data["amount_due"]
    return respond(request, {"items": bills, "amount_due_cents": due["amount_due_cents"], "amount_due": due}, "bills")


def labelled(request: web.Request, bill: dict | None, plan: str | None) -> dict | None:
    """``bill`` with a readable ``label`` beside each line code, named from ``plan``'s tariff (grid.linenames)."""
    from grid.linenames import label_bill

    try:
        urdb = request.app[TARIFFS].get_json(plan) if plan else None
    except NotFound:  # the plan was deleted since: codes keep their generic names
        urdb = None
    return label_bill(bill, urdb)


async def get_usage(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    p = request[PARAMS]
    data = await request.app[GRID].acustomer_usage(cid, p["month"], p.get("service_point_id"),
                                                   p.get("resolution", "interval"))
    return respond(request, data, "usage")


async def _write(request: web.Request, kind: str, cid: str, body: dict) -> dict:
    write_id = _write_id(request, cid)
    op = make_op(kind, cid, body, write_id, request[PARAMS].get("If-Match"))
    op["audit"] = audit_of(request, kind, body)  # recorded by the shard with the write (grid.audit)
    if write_id is not None:  # a client's Idempotency-Key: the shard refuses it for another request
        op["request"] = _request_digest(request, body)
    try:
        out = await request.app[GRID].awrite(op)
    except BaseException:
        # the write may have reached the shard's log before the failure (a timeout, a shard restart): never
        # serve the cached context it may have replaced
        request.app[READS].cache.invalidate([cid])
        raise
    request.app[READS].cache.written(cid, out["version"])
    return out


async def patch_customer(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    body = request[BODY]
    principal = request[PRINCIPAL]
    if principal.role == "customer":
        denied = sorted(set(body) - CUSTOMER_PATCHABLE)
        if denied:
            raise Forbidden(f"a customer key may not change {denied[0]!r}", field=denied[0])
        if "notes" in body:  # contacts: what customers write, they may read back
            adds = [{**n, "visibility": "customer"} for n in body["notes"].get("add", [])]
            body = {**body, "notes": {**body["notes"], "add": adds}}
    out = await _write(request, "patch", cid, body)
    return _context(request, out["record"])


async def put_customer(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    request[PRINCIPAL].require("operator", "agent")
    body = request[BODY]
    # references are checked against the grid's state (catalogue, every shard's service points) before writing
    sps = check_references(cid, body, request.app[TARIFFS])
    check_owners(cid, sps, await request.app[GRID].asp_owners([sp for _, sp in sps]))
    out = await _write(request, "replace", cid, body)
    return _context(request, out["record"])


async def post_usage(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    request[PRINCIPAL].require("operator", "agent")
    out = await _write(request, "usage", cid, request[BODY])
    return respond(request, {"written": out["written"], "version": out["version"]}, "usage")


async def list_customers(request: web.Request) -> web.Response:
    p = request[PARAMS]
    principal = request[PRINCIPAL]
    filters = {k: p[k] for k in FILTERS if k in p}
    limit = p.get("limit", 50)
    after = decode_cursor(p.get("cursor"))
    grid = request.app[GRID]
    if principal.role == "customer":
        from grid import context as ctx
        mine = sorted(c for c in principal.customers if after is None or c > after)
        items = []
        for cid in mine:
            rec = await request.app[READS].read(cid)
            if ctx.matches(rec, filters):
                items.append(ctx.summary(rec))
    else:
        items = await grid.alist(filters, after, limit + 1)
    more = len(items) > limit
    items = items[:limit]
    nxt = encode_cursor(items[-1]["customer_id"]) if more and items else None
    return respond(request, {"items": items, "next": nxt}, "customers")
