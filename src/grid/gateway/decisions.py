"""Events, next best action, responses and the decision audit over HTTP (logic in ``grid.decisions``)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from grid.decisions.catalogue import ActiveActions
from grid.decisions.mqtt import AlarmCounts, MqttSettings, subscribe
from grid.decisions.service import event_ops
from grid.gateway.audit import audit_of
from grid.gateway.keys import BODY, CONFIG, GRID, PARAMS, PRINCIPAL, READS
from grid.gateway.responses import respond
from grid.gateway.portal import TARIFFS

ACTIONS: web.AppKey[ActiveActions] = web.AppKey("actions")
MQTT: web.AppKey[AlarmCounts] = web.AppKey("mqtt_alarms")
MQTT_READY: web.AppKey[asyncio.Event] = web.AppKey("mqtt_ready")


def _customer_id(request: web.Request) -> str:
    cid = request[PARAMS]["id"]
    request[PRINCIPAL].check_customer(cid)
    return cid


def _write_id(request: web.Request, scope: str) -> str | None:
    key = request[PARAMS].get("Idempotency-Key")
    return f"{request[PRINCIPAL].key_id}:{scope}:{key}" if key else None


def decide_args(request: web.Request, channel: str | None, write_id: str | None = None) -> dict:
    """What a shard needs to decide: the catalogue version in force, the channel and the tariff catalogue."""
    return {"actions": request.app[ACTIONS].ref, "channel": channel, "write_id": write_id,
            "plans": request.app[TARIFFS]}


async def post_events(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    p = request[PARAMS]
    ops = event_ops(request[BODY], _write_id(request, "events"))
    for op in ops:  # each customer's events, audited with the write (grid.audit)
        op["audit"] = audit_of(request, "events", {"events": [e.get("type") for e in op["body"]["events"]]})
    decide = decide_args(request, p.get("channel")) if p.get("decide") else None
    results = await request.app[GRID].apost_events(ops, decide)
    out: dict = {"items": [i for r in results for i in r["items"]]}
    for item in out["items"]:
        request.app[READS].cache.written(item["customer_id"], item["version"])
    if decide:
        out["decisions"] = [d for r in results for d in r["decisions"]]
    return respond(request, out, "events")


async def get_customer_events(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    return respond(request, await request.app[GRID].acustomer_events(cid, request[PARAMS].get("limit", 100)),
                   "events")


async def get_next_best_action(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    args = decide_args(request, request[PARAMS].get("channel"), _write_id(request, f"nba:{cid}"))
    return respond(request, await request.app[GRID].anext_best_action(cid, args), "decision")


async def post_response(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    out = await request.app[GRID].arespond(cid, request[BODY], _write_id(request, f"response:{cid}"),
                                           audit=audit_of(request, "response", request[BODY]))
    request.app[READS].cache.written(cid, out["version"])
    return respond(request, out, "response")


async def get_customer_decisions(request: web.Request) -> web.Response:
    cid = _customer_id(request)
    items = await request.app[GRID].acustomer_decisions(cid, request[PARAMS].get("limit", 50))
    return respond(request, {"items": items}, "decisions")


async def post_actions_reload(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    new = request.app[ACTIONS].reload()  # RuleError (422 naming file, rule, field) keeps the old catalogue
    return respond(request, {"version": new.version, "actions": [a.id for a in new.actions]}, "actions")


async def get_propensities(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    counts = await request.app[GRID].apropensities()
    pol = request.app[ACTIONS].current.policy
    items = []
    for key, (acc, rej) in sorted(counts.items()):
        action, _, segment = key.partition("|")
        a, b = pol.prior_accepted + acc, pol.prior_rejected + rej
        items.append({"action_id": action, "segment": segment, "accepted": acc, "rejected": rej,
                      "alpha": a, "beta": b, "mean": a / (a + b)})
    return respond(request, {"prior": {"accepted": pol.prior_accepted, "rejected": pol.prior_rejected},
                             "items": items}, "propensities")


async def post_churn_score(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    grid = request.app[GRID]
    items = await grid.ascore_churn(str(grid.data_dir))  # the newest model under the data dir
    return respond(request, {"items": items}, "churn")


def _mqtt_settings(app: web.Application, mqtt: MqttSettings | None) -> MqttSettings | None:
    """Explicit settings, else the gateway config's optional ``mqtt_broker``/``mqtt_topic``, else the
    environment (``CONTEXTGRID_MQTT_BROKER=host[:port]``, ``CONTEXTGRID_MQTT_TOPIC``); None: no subscriber."""
    if mqtt is not None:
        return mqtt
    config = app[CONFIG]
    url = getattr(config, "mqtt_broker", None) or os.environ.get("CONTEXTGRID_MQTT_BROKER")
    if not url:
        return None
    return MqttSettings.parse(url, getattr(config, "mqtt_topic", None) or os.environ.get("CONTEXTGRID_MQTT_TOPIC"))


def setup_decisions(app: web.Application, mqtt: MqttSettings | None = None) -> None:
    """Register the decisions routes and, when a broker is configured, the meter-alarm subscriber.

    The catalogue (``<rules_dir>/actions.yaml``) is loaded and validated now, so a bad file fails start-up.
    """
    app[ACTIONS] = ActiveActions(Path(app[CONFIG].rules_dir) / "actions.yaml")
    app[MQTT] = AlarmCounts()
    app[MQTT_READY] = asyncio.Event()
    settings = _mqtt_settings(app, mqtt)
    if settings is not None:
        async def meter_alarms(app: web.Application):
            task = asyncio.create_task(subscribe(app[GRID], settings, app[MQTT], app[MQTT_READY]))
            yield
            task.cancel()
            await asyncio.wait([task], timeout=2)

        app.cleanup_ctx.append(meter_alarms)
    r = app.router
    r.add_post("/v1/events", post_events, name="post_events")
    r.add_get("/v1/customers/{id}/events", get_customer_events, name="get_customer_events")
    r.add_get("/v1/customers/{id}/next-best-action", get_next_best_action, name="get_next_best_action")
    r.add_post("/v1/customers/{id}/responses", post_response, name="post_response")
    r.add_get("/v1/customers/{id}/decisions", get_customer_decisions, name="get_customer_decisions")
    r.add_post("/v1/admin/actions/reload", post_actions_reload, name="post_actions_reload")
    r.add_post("/v1/admin/churn/score", post_churn_score, name="post_churn_score")
    r.add_get("/v1/admin/propensities", get_propensities, name="get_propensities")
