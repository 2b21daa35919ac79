"""Portfolios, key accounts, profitability and rule reloads over HTTP."""
from __future__ import annotations

from aiohttp import web

from grid.errors import NotFound, NotReady
from grid.gateway.keys import CLASSIFIED, CONFIG, GRID, JOBS, PARAMS, PRINCIPAL, RULES
from grid.gateway.paging import decode_cursor, encode_cursor
from grid.gateway.responses import respond
from grid.rules import ActiveRules


def start_classification(app: web.Application):
    """Classify the whole base under the rules in force, as a job; its result serves the portfolio routes."""
    rules = app[RULES].current

    async def work(job):
        result = await app[GRID].aclassify(rules, progress=job.progress)
        app[CLASSIFIED].clear()
        app[CLASSIFIED].update(result)
        return {"rules_version": rules.version, "portfolios": len(result["portfolios"]),
                "key_account_portfolios": sum(p["key_account"] for p in result["portfolios"].values())}

    return app[JOBS].start("classify", work)


def _classified(request) -> dict:
    c = request.app[CLASSIFIED]
    if not c and request.app[GRID].classifying:
        raise NotReady("the base is being classified; retry shortly", retry_after=5)
    if not c:
        raise NotFound("no classification yet; POST /v1/admin/classify runs one", field="portfolios")
    return c


async def post_rules_reload(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    new = request.app[RULES].reload()  # RuleError (422, naming file, rule, field) leaves the old rules in force
    job = start_classification(request.app)
    return respond(request, {"rules_version": new.version, "files": new.files, "job": job.view()}, "rules",
                   headers={"Location": f"/v1/admin/jobs/{job.job_id}"})


async def post_classify(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    job = start_classification(request.app)
    return respond(request, job.view(), "job", status=202, headers={"Location": f"/v1/admin/jobs/{job.job_id}"})


def _portfolio_view(c: dict, pid: str) -> dict:
    p = c["portfolios"].get(pid)
    if p is None:
        raise NotFound(f"no portfolio {pid!r}", field="id")
    # identity: root entity, member customers and why each account is in (grid.identity.portfolios)
    return {**p, "accounts": c["members"].get(pid, []), **c.get("explain", {}).get(pid, {})}


async def get_portfolio(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    return respond(request, _portfolio_view(_classified(request), request[PARAMS]["id"]), "portfolio")


async def list_portfolios(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    c = _classified(request)
    p = request[PARAMS]
    limit = p.get("limit", 50)
    after = decode_cursor(p.get("cursor"))
    want = p.get("key_account")
    ids = sorted(pid for pid, v in c["portfolios"].items()
                 if (want is None or v["key_account"] == want) and (after is None or pid > after))
    page = ids[:limit]
    items = [{"portfolio_id": pid, "key_account": c["portfolios"][pid]["key_account"],
              "reasons": c["portfolios"][pid]["reasons"], "accounts": len(c["members"].get(pid, [])),
              "spend_12m_cents": c["portfolios"][pid]["totals"].get("spend_12m_cents")} for pid in page]
    nxt = encode_cursor(page[-1]) if len(ids) > limit else None
    return respond(request, {"items": items, "next": nxt}, "portfolios")


async def get_portfolio_profitability(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    c = _classified(request)
    pid = request[PARAMS]["id"]
    for row in c["profitability"]:
        if row["portfolio_id"] == pid:
            return respond(request, row, "profitability")
    raise NotFound(f"no portfolio {pid!r}", field="id")


async def list_profitability(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    c = _classified(request)
    limit = request[PARAMS].get("limit", 50)
    return respond(request, {"items": c["profitability"][:limit], "total": len(c["profitability"])},
                   "profitability")


def setup_rules(app: web.Application) -> None:
    if RULES not in app:
        app[RULES] = ActiveRules(app[CONFIG].rules_dir)
    app[CLASSIFIED] = {}
    if app[CONFIG].classify_on_start:
        async def classify_at_start(app):
            start_classification(app)

        app.on_startup.append(classify_at_start)
    r = app.router
    r.add_post("/v1/admin/rules/reload", post_rules_reload, name="post_rules_reload")
    r.add_post("/v1/admin/classify", post_classify, name="post_classify")
    r.add_get("/v1/portfolios", list_portfolios, name="list_portfolios")
    r.add_get("/v1/portfolios/{id}", get_portfolio, name="get_portfolio")
    r.add_get("/v1/portfolios/{id}/profitability", get_portfolio_profitability, name="get_portfolio_profitability")
    r.add_get("/v1/profitability", list_profitability, name="list_profitability")
