"""``create_app(grid, config) -> web.Application``: routes, middlewares, start-up and shut-down."""
from __future__ import annotations

import asyncio

from aiohttp import web

from grid.gateway import customers
from grid.gateway.admin import setup_admin
from grid.gateway.audit import setup_audit
from grid.gateway.billing import setup_billing
from grid.gateway.greenbutton import setup_greenbutton
from grid.gateway.identity import setup_identity
from grid.gateway.imports import setup_imports
from grid.gateway.decisions import setup_decisions
from grid.gateway.console import setup_console
from grid.gateway.outages import setup_outages
from grid.gateway.portal import setup_portal
from grid.gateway.rules import setup_rules
from grid.gateway.tariffs import setup_tariffs
from grid.gateway.jobs import Jobs
from grid.gateway.auth import KeyStore
from grid.gateway.config import GatewayConfig
from grid.gateway.formats import choose, served_media_types
from grid.gateway.headers import setup_security_headers
from grid.gateway.limits import HEAVY, Limiter, LimitsConfig
from grid.gateway.keys import BODY, CONFIG, CONTRACT, FORMAT, GRID, JOBS, KEYS, LIMITS, METRICS, PARAMS, PRINCIPAL, READS
from grid.gateway.metrics import Metrics
from grid.gateway.problems import problems
from grid.gateway.reads import Reads
from grid.gateway.validation import OPENAPI_PATH, Contract


@web.middleware
async def contract(request: web.Request, handler):
    """Every method of a contract path: authenticate, validate parameters, negotiate the answer's format,
    validate the body, all before the handler runs (so nothing is written for a request that is then refused).

    HEAD is answered as GET (same checks; aiohttp drops the body). A method the contract does not declare on
    the path is 405 with ``Allow``. Paths outside the contract (the portal's files, ``/metrics``) pass through.
    """
    c = request.app[CONTRACT]
    resource = request.match_info.route.resource
    allowed = c.methods(resource.canonical) if resource is not None else []
    if not allowed:
        return await handler(request)
    op = c.operation(request.method, resource.canonical)
    if op is None:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    limiter = request.app[LIMITS]
    if not op.public:
        principal = request[PRINCIPAL] = request.app[KEYS].authenticate(request.headers.get("Authorization"))
        limiter.admit(principal.key_id, principal.role)
    params = request[PARAMS] = c.check_parameters(op, request.query, request.headers, request.match_info)
    offered = served_media_types() if op.negotiable else op.media_types
    request[FORMAT] = choose(params.get("format"), request.headers.get("Accept"), offered)
    raw = await request.read() if op.body is not None else b""
    request[BODY] = c.check_body(op, raw, request.headers.get("Content-Type", ""))
    if op.operation_id in HEAVY and not op.public:
        with limiter.heavy(request[PRINCIPAL].key_id):
            return await handler(request)
    return await handler(request)


async def get_health(request: web.Request) -> web.Response:
    """Liveness for anyone (``ok`` / ``degraded``); each shard's details (node, pid, data path, WAL) only with
    ``?detail=true`` and an operator key: they map the deployment for an attacker."""
    shards = await request.app[GRID].astats()
    status = "ok" if all(s.get("status") not in ("unavailable", "stopped") for s in shards) else "degraded"
    request.app[METRICS].shards(shards)
    if not request[PARAMS].get("detail"):
        return web.json_response({"status": status})
    request.app[KEYS].authenticate(request.headers.get("Authorization")).require("operator")
    return web.json_response({"status": status, "shards": shards})


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/yaml")


async def get_metrics(request: web.Request) -> web.Response:
    await request.app[METRICS].refresh(request.app[GRID], request.app[JOBS])  # the grid's state, read now
    body, ctype = request.app[METRICS].render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


async def _watch_shards(app: web.Application):
    """Keep the near cache coherent with writes made anywhere (see grid.gateway.cache)."""
    task = asyncio.create_task(app[READS].watch())
    yield
    task.cancel()
    # bounded: a Ray call being cancelled (a shard already gone at shutdown) must not hold the exit
    await asyncio.wait([task], timeout=2)
    await app[JOBS].cancel_all(timeout=2)


def create_app(grid, config: GatewayConfig | None = None, keys: KeyStore | None = None) -> web.Application:
    config = config or getattr(grid, "config", None) or GatewayConfig()  # one Settings for grid and gateway
    app = web.Application(middlewares=[problems, contract], client_max_size=config.max_body_bytes)
    metrics = Metrics()
    app[GRID] = grid
    app[CONFIG] = config
    app[KEYS] = keys if keys is not None else (KeyStore.load(config.keys_file) if config.keys_file else KeyStore())
    app[CONTRACT] = Contract()
    app[METRICS] = metrics
    limits = getattr(config, "limits", None) or LimitsConfig()
    app[LIMITS] = Limiter(limits)
    app[JOBS] = Jobs(keep_s=limits.jobs_keep_s)
    app[READS] = Reads(grid, ttl_s=config.near_cache_ttl_s, capacity=config.near_cache_capacity, metrics=metrics,
                       invalidate_interval_s=config.invalidate_interval_s)
    app.cleanup_ctx.append(_watch_shards)
    setup_security_headers(app)
    r = app.router
    r.add_get("/v1/health", get_health, name="get_health")
    r.add_get("/v1/openapi.yaml", get_openapi, name="get_openapi")
    r.add_get("/metrics", get_metrics, name="metrics")
    r.add_get("/v1/customers", customers.list_customers, name="list_customers")
    r.add_get("/v1/customers/{id}", customers.get_customer, name="get_customer")
    r.add_patch("/v1/customers/{id}", customers.patch_customer, name="patch_customer")
    r.add_put("/v1/customers/{id}", customers.put_customer, name="put_customer")
    r.add_get("/v1/customers/{id}/accounts", customers.get_accounts, name="get_accounts")
    r.add_get("/v1/customers/{id}/bills", customers.get_bills, name="get_bills")
    r.add_get("/v1/customers/{id}/usage", customers.get_usage, name="get_usage")
    r.add_post("/v1/customers/{id}/usage", customers.post_usage, name="post_usage")
    setup_tariffs(app)
    setup_admin(app)
    setup_audit(app)
    setup_billing(app)
    setup_rules(app)
    setup_portal(app)
    setup_greenbutton(app)
    setup_identity(app)
    setup_decisions(app)
    setup_imports(app)
    setup_outages(app)
    setup_console(app)
    return app
