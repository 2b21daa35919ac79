"""Identity over HTTP: ask who records are, a customer's identity and golden record, the review queue, merges."""
from __future__ import annotations

from aiohttp import web

from grid.gateway.audit import audit_of
from grid.gateway.keys import BODY, CLASSIFIED, CONFIG, GRID, PARAMS, PRINCIPAL
from grid.gateway.responses import respond
from grid.identity.evidence import to_builtins


async def post_identity_resolve(request: web.Request) -> web.Response:
    """Resolve records without writing anything: per record, in order, outcome, customer id and evidence."""
    request[PRINCIPAL].require("operator", "agent")
    results = await request.app[GRID].aresolve(request[BODY]["records"], write=False)
    return respond(request, {"results": to_builtins(results)}, "resolutions")


async def get_customer_identity(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    return respond(request, await request.app[GRID].aidentity(request[PARAMS]["id"]), "identity")


async def list_identity_reviews(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    p = request[PARAMS]
    limit = int(p.get("limit", 50))
    items = await request.app[GRID].aidentity_reviews(p.get("state"), p.get("after"), limit)
    out = {"items": items}
    if len(items) == limit:
        out["next"] = items[-1]["review_id"]
    return respond(request, out, "reviews")


async def post_identity_review(request: web.Request) -> web.Response:
    """A reviewer's decision (``same`` / ``different``), remembered for good."""
    request[PRINCIPAL].require("operator", "agent")
    decision = request[BODY]["decision"]
    # the proposed customer's audit trail records who decided (the console's review queue shows it)
    audit = audit_of(request, "identity_decide", {"decision": decision})
    review = await request.app[GRID].adecide_review(request[PARAMS]["id"], decision, request[PRINCIPAL].key_id,
                                                    audit)
    return respond(request, review, "review")


def _reclassify(app: web.Application, out: dict) -> dict:
    """A merge or unmerge changes which accounts are one customer's, so portfolios change: once the base has
    been classified, classify again now (a background job, named in the answer) so portfolio members and
    totals move with the relationship, not at the next full run. TODO: an incremental portfolio update
    (only the portfolios of the two customers) would remove the full run."""
    if app[CLASSIFIED]:
        from grid.gateway.rules import start_classification

        out = {**out, "classification": start_classification(app).view()}
    return out


async def post_identity_merge(request: web.Request) -> web.Response:
    """Merge one customer into another (operator); the merged id answers ``merged_into`` from then on."""
    request[PRINCIPAL].require("operator")
    body = request[BODY]
    out = await request.app[GRID].amerge(body["survivor"], body["merged"])
    return respond(request, _reclassify(request.app, out), "merge")


async def post_identity_unmerge(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    out = await request.app[GRID].aunmerge(request[BODY]["merged"])
    return respond(request, _reclassify(request.app, out), "merge")


async def post_identity_reload(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    rules = request.app[GRID].identity_rules.reload()  # RuleError (422) leaves the old rules in force
    return respond(request, {"rules_version": rules.version}, "rules")


def setup_identity(app: web.Application) -> None:
    from grid.identity.rules import ActiveIdentityRules

    grid = app[GRID]
    if getattr(grid, "_identity_rules", None) is None and hasattr(type(grid), "identity_rules"):
        grid.identity_rules = ActiveIdentityRules(app[CONFIG].rules_dir)
    r = app.router
    r.add_post("/v1/identity/resolve", post_identity_resolve, name="post_identity_resolve")
    r.add_get("/v1/customers/{id}/identity", get_customer_identity, name="get_customer_identity")
    r.add_get("/v1/identity/reviews", list_identity_reviews, name="list_identity_reviews")
    r.add_post("/v1/identity/reviews/{id}", post_identity_review, name="post_identity_review")
    r.add_post("/v1/identity/merges", post_identity_merge, name="post_identity_merge")
    r.add_post("/v1/identity/unmerges", post_identity_unmerge, name="post_identity_unmerge")
    r.add_post("/v1/admin/identity/reload", post_identity_reload, name="post_identity_reload")
