"""The customer portal: what-if routes (real-time bill, rate-plan scenarios, forecast, green metrics) and the
static single-page portal at ``/portal``.

Every what-if runs in the owning shard on its live data (``grid.acurrent_bill`` etc. run ``grid.whatif``),
with the same bill kernel as the bill run. Requests are validated by the contract middleware against
``api/openapi.yaml`` before they get here; the what-if functions check again (they are also called without
the gateway) and name the offending field.

Configuration, read once by :func:`setup_portal` (optional attributes of the gateway config, else the
environment, else the defaults):

* ``tariff_dir`` / ``CONTEXTGRID_TARIFF_DIR``: the tariff catalogue (default ``rules/tariffs``);
* ``green_factors_file`` / ``CONTEXTGRID_GREEN_FACTORS``: YAML or JSON with ``grid_co2_g_per_kwh`` and
  ``green_programs`` (see ``grid.whatif.green``).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from aiohttp import web

from grid import whatif
from grid.errors import InvalidInput
from grid.gateway.keys import BODY, CONFIG, GRID, PARAMS, PRINCIPAL
from grid.gateway.responses import respond
from grid.whatif.green import parse_factors
from grid.whatif.plans import DEFAULT_TARIFF_DIR, PlanCatalogue

STATIC_DIR = Path(__file__).resolve().parent / "static" / "portal"

TARIFFS: web.AppKey[PlanCatalogue] = web.AppKey("portal_tariffs")
GREEN_FACTORS: web.AppKey[dict] = web.AppKey("portal_green_factors")


def _customer_id(request: web.Request) -> str:
    cid = request[PARAMS]["id"]
    request[PRINCIPAL].check_customer(cid)
    return cid


async def get_current_bill(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    data = await request.app[GRID].acurrent_bill(cid, request[PARAMS].get("as_of"), request.app[TARIFFS])
    from grid.gateway.customers import labelled  # readable line names, as the bill routes answer them

    data = {**data, "items": [{**i, **{k: labelled(request, i[k], i.get("rate_plan_id")) for k in ("to_date", "projected")
                                       if isinstance(i.get(k), dict)}} for i in data["items"]]}
    return respond(request, data, "current_bill")


async def get_plans(request: web.Request) -> web.Response:
    """The catalogue's plans, each with whether this customer may take it (grid.whatif.eligibility)."""
    cid = _customer_id(request)
    return respond(request, await request.app[GRID].aplan_choices(cid, request.app[TARIFFS]), "plans")


async def post_scenarios(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    data = await request.app[GRID].ascenarios(cid, request[BODY], request.app[TARIFFS], request[PARAMS].get("as_of"))
    return respond(request, data, "scenarios")


async def get_forecast(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    p = request[PARAMS]
    data = await request.app[GRID].aforecast(cid, p.get("months", 12), request.app[TARIFFS], p.get("as_of"))
    return respond(request, data, "forecast")


async def get_green(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    p = request[PARAMS]
    data = await request.app[GRID].agreen(cid, request.app[GREEN_FACTORS], p.get("as_of"), p.get("months", 12))
    return respond(request, data, "green")


async def get_portal(request: web.Request) -> web.FileResponse:
    """The portal's page; its assets are under ``/portal/static/``."""
    resp = web.FileResponse(STATIC_DIR / "index.html")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def _setting(app: web.Application, attr: str, env: str) -> str | None:
    config = app.get(CONFIG)
    value = getattr(config, attr, None) if config is not None else None
    return value or os.environ.get(env) or None


def load_green_factors(path: str | None) -> dict:
    """Green factors from a YAML/JSON file (or the defaults), checked."""
    if not path:
        return parse_factors(None)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read green factors file {path}: {exc}", field="green_factors_file") from exc
    return parse_factors(data or None)


def setup_portal(app: web.Application) -> None:
    """Add the what-if routes and the static portal to ``app``."""
    app[TARIFFS] = PlanCatalogue(str(_setting(app, "tariff_dir", "CONTEXTGRID_TARIFF_DIR") or DEFAULT_TARIFF_DIR))
    app[GREEN_FACTORS] = load_green_factors(_setting(app, "green_factors_file", "CONTEXTGRID_GREEN_FACTORS"))
    r = app.router
    r.add_get("/v1/customers/{id}/bill/current", get_current_bill, name="get_current_bill")
    r.add_post("/v1/customers/{id}/scenarios", post_scenarios, name="post_scenarios")
    r.add_get("/v1/customers/{id}/plans", get_plans, name="get_plans")
    r.add_get("/v1/customers/{id}/forecast", get_forecast, name="get_forecast")
    r.add_get("/v1/customers/{id}/green", get_green, name="get_green")
    r.add_get("/portal", get_portal, name="portal")
    r.add_get("/portal/", get_portal, name="portal_slash")
    r.add_static("/portal/static", STATIC_DIR, name="portal_static", append_version=False)
