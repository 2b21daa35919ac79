"""Routes of events that alert: outages and their restoration, information notices, delivery status,
provider receipts and replies, acknowledgement links; and the dispatcher's life in the gateway.

Handlers make one grid-client call each; the dispatcher (``grid.contacts.dispatcher``) runs as a
``cleanup_ctx`` task when a transport is configured (see its docstring for why it lives here).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import gc
import hashlib
import hmac
import html
import uuid

from aiohttp import web
from prometheus_client import Counter

from grid.contacts.config import ContactsConfig
from grid.contacts.dispatcher import Dispatcher, check_ack_token
from grid.contacts.transports import EmailTransport, ProviderTransport, twilio_signature
from grid.errors import Forbidden, InvalidInput, NotFound
from grid.gateway.audit import audit_of
from grid.gateway.keys import BODY, CONFIG, GRID, METRICS, PARAMS, PRINCIPAL
from grid.gateway.responses import respond

DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
CONTACTS: web.AppKey[ContactsConfig] = web.AppKey("contacts")
NOTICE_TYPES = ("bill_ready", "high_bill", "payment_due")


class ContactMetrics:
    def __init__(self, registry):
        self.sends = Counter("contextgrid_message_sends_total", "Hand-overs to a transport by outcome",
                             ["channel", "outcome"], registry=registry)
        self.receipts = Counter("contextgrid_message_receipts_total", "Provider receipts", ["status"],
                                registry=registry)
        self.events = Counter("contextgrid_alert_events_total", "Outages and notices declared", ["type"],
                              registry=registry)
        self.enqueued = Counter("contextgrid_messages_enqueued_total", "Notifications accepted into outboxes",
                                ["type"], registry=registry)


def _time(value: str | None, field: str) -> str | None:
    """An RFC 3339 instant with an offset, 1900..2200, normalized to UTC ``...Z``."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field} must be an RFC 3339 date-time", field=field) from None
    if t.tzinfo is None:
        raise InvalidInput(f"{field} needs a UTC offset", field=field)
    if not 1900 <= t.year <= 2200:
        raise InvalidInput(f"{field} must be between 1900 and 2200", field=field)
    return t.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _now(request: web.Request) -> str:
    t = request.app[CONTACTS].clock()
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _audit(request: web.Request, action: str, changes: dict) -> dict:
    """One audit entry of an outage (who, when, what), kept with the event by every shard's outbox
    through the enqueue op, so it is as durable as the alerts it caused. ``at`` is wall-clock time, not the
    delivery clock (tests run that at 3 a.m.)."""
    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {**audit_of(request, action, changes), "action": action, "at": at}


def _event_id(request: web.Request, prefix: str) -> str:
    key = request[PARAMS].get("Idempotency-Key")
    if key:  # the same request retried names the same outage: its enqueue ops are applied once
        return f"{prefix}-" + hashlib.sha256(f"{request[PRINCIPAL].key_id}:{key}".encode()).hexdigest()[:12].upper()
    return f"{prefix}-" + uuid.uuid4().hex[:12].upper()


async def post_outages(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    body = request[BODY]
    selector = {k: body[k] for k in ("service_point_ids", "premise_ids", "area") if body.get(k)}
    if not selector:
        raise InvalidInput("name the affected service_point_ids, premise_ids or an area", field="service_point_ids")
    start = _time(body.get("start"), "start") or _now(request)
    eta = _time(body.get("estimated_restoration"), "estimated_restoration")
    if eta is not None and eta < start:
        raise InvalidInput("estimated_restoration is before start", field="estimated_restoration")
    oid = _event_id(request, "OUT")
    event = {"id": oid, "group": oid, "type": "outage", "selector": selector, "start": start,
             "estimated_restoration": eta, "cause": body.get("cause", ""), "declared_at": _now(request),
             "declared_by": request[PRINCIPAL].key_id, "state": "active", "restored_at": None}
    event["audit"] = [_audit(request, "declare", {"selector": selector, "start": start,
                                                   "estimated_restoration": eta, "cause": event["cause"]})]
    summary = await request.app[GRID].adeclare_outage(event, request.app[CONTACTS].ack_within_s)
    request.app[DISPATCHER].notify()
    m = request.app[DISPATCHER].metrics
    m.events.labels("outage").inc()
    m.enqueued.labels("outage").inc(summary.get("notifications", 0))
    return respond(request, {"outage_id": oid, "start": start, "estimated_restoration": eta, **summary}, "outage",
                   status=201, headers={"Location": f"/v1/outages/{oid}"})


async def get_outage(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    p = request[PARAMS]
    out = await request.app[GRID].aoutage(p["id"], p.get("state"), p.get("limit", 500))
    if out is None:
        raise NotFound(f"no outage {p['id']!r}", field="id")
    return respond(request, {"outage_id": p["id"], **out}, "outage")


async def get_outage_audit(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator")
    p = request[PARAMS]
    items = await request.app[GRID].aoutage_audit(p["id"], p.get("limit", 100))
    return respond(request, {"outage_id": p["id"], "items": items}, "audit")


async def post_outage_restore(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    body = request[BODY] or {}
    restored_at = _time(body.get("restored_at"), "restored_at") or _now(request)
    out = await request.app[GRID].arestore_outage(request[PARAMS]["id"], restored_at,
                                                  _audit(request, "restore", {"restored_at": restored_at}))
    request.app[DISPATCHER].notify()
    request.app[DISPATCHER].metrics.enqueued.labels("outage_restored").inc(out["notifications"])
    return respond(request, {"outage_id": request[PARAMS]["id"], "restored_at": restored_at, **out}, "restoration")


async def post_notices(request: web.Request) -> web.Response:
    request[PRINCIPAL].require("operator", "agent")
    body = request[BODY]
    kind = body["type"]
    if kind == "bill_ready" and not body.get("period"):
        raise InvalidInput("a bill_ready notice needs the period (YYYY-MM)", field="period")
    scope = body.get("period") or body.get("as_of") or _now(request)[:10]
    notice = {"id": f"{kind}:{scope}", "type": kind, "period": body.get("period"), "as_of": body.get("as_of"),
              "customer_ids": body.get("customer_ids"), "ratio": body.get("ratio", 0.3),
              "declared_at": _now(request)}
    n = await request.app[GRID].anotify(notice)
    request.app[DISPATCHER].notify()
    request.app[DISPATCHER].metrics.events.labels(kind).inc()
    request.app[DISPATCHER].metrics.enqueued.labels(kind).inc(n)
    return respond(request, {"notice_id": notice["id"], "type": kind, "notifications": n}, "notice", status=202)


async def get_customer_messages(request: web.Request) -> web.Response:
    cid = request[PARAMS]["id"]
    request[PRINCIPAL].check_customer(cid)
    items = await request.app[GRID].acustomer_messages(cid)
    return respond(request, {"customer_id": cid, "items": items}, "messages")


def _provider_config(request: web.Request, channel: str):
    cfg = getattr(request.app[CONTACTS], channel, None) if channel in ("sms", "voice") else None
    if cfg is None:
        raise NotFound(f"no provider for channel {channel!r}", field="channel")
    return cfg


async def _signed_form(request: web.Request, channel: str) -> dict:
    """The callback's form fields, once its ``X-Twilio-Signature`` checks out against our public URL."""
    cfg = _provider_config(request, channel)
    form = {k: str(v) for k, v in (await request.post()).items()}
    url = request.app[CONTACTS].public_url.rstrip("/") + request.rel_url.path_qs
    want = twilio_signature(cfg.auth_token, url, form)
    got = request.headers.get("X-Twilio-Signature", "")
    if not hmac.compare_digest(want, got):
        raise Forbidden("bad or missing provider signature", field="X-Twilio-Signature")
    return form


async def post_provider_status(request: web.Request) -> web.Response:
    p = request[PARAMS]
    form = await _signed_form(request, p["channel"])
    status = form.get("MessageStatus") or form.get("CallStatus") or ""
    request.app[DISPATCHER].metrics.receipts.labels(status or "none").inc()
    await request.app[DISPATCHER].receipt(p["message_id"], p["key"], status)
    return web.Response(status=204)


async def post_provider_inbound(request: web.Request) -> web.Response:
    form = await _signed_form(request, request[PARAMS]["channel"])
    n = await request.app[DISPATCHER].reply(form.get("From", ""), form.get("Body", ""))
    text = "Thank you, your acknowledgement was recorded." if n else ""
    twiml = f"<Response>{f'<Message>{html.escape(text)}</Message>' if text else ''}</Response>"
    return web.Response(body=twiml.encode(), content_type="application/xml")


async def get_ack(request: web.Request) -> web.Response:
    nid = check_ack_token(request.app[CONTACTS].ack_secret, request[PARAMS]["token"])
    if nid is None:
        raise NotFound("no such acknowledgement link", field="token")
    await request.app[DISPATCHER].acknowledge(nid, "link")
    page = ("<!doctype html><html lang=en><meta charset=utf-8><title>Acknowledged</title>"
            "<p>Thank you. Your acknowledgement was recorded; the utility knows you received the alert.</p></html>")
    return web.Response(body=page.encode(), content_type="text/html", charset="utf-8")


def transports_of(config: ContactsConfig) -> dict:
    out = {}
    if config.smtp is not None:
        out["email"] = EmailTransport(config.smtp)
    if config.sms is not None:
        out["sms"] = ProviderTransport("sms", config.sms)
    if config.voice is not None:
        out["voice"] = ProviderTransport("voice", config.voice)
    return out


async def _dispatch(app: web.Application):
    d = app[DISPATCHER]
    if app[CONTACTS].enabled:
        # what the gateway built to start (modules, the OpenAPI contract, the grid client: ~170k objects) lives
        # as long as the process; out of the cyclic collector's reach, it is not rescanned every few hundred
        # messages sent (a sixth of the gateway's CPU in the outage benchmark)
        gc.freeze()
    task = asyncio.create_task(d.run()) if app[CONTACTS].enabled else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.wait([task], timeout=2)
    for t in d.transports.values():
        await t.close()


def setup_outages(app: web.Application) -> None:
    config = getattr(app[CONFIG], "contacts", None) or ContactsConfig()
    app[CONTACTS] = config
    app[DISPATCHER] = Dispatcher(app[GRID], config, transports_of(config), clock=config.clock,
                                 metrics=ContactMetrics(app[METRICS].registry))
    app.cleanup_ctx.append(_dispatch)
    r = app.router
    r.add_post("/v1/outages", post_outages, name="post_outages")
    r.add_get("/v1/outages/{id}", get_outage, name="get_outage")
    r.add_get("/v1/outages/{id}/audit", get_outage_audit, name="get_outage_audit")
    r.add_post("/v1/outages/{id}/restore", post_outage_restore, name="post_outage_restore")
    r.add_post("/v1/notices", post_notices, name="post_notices")
    r.add_get("/v1/customers/{id}/messages", get_customer_messages, name="get_customer_messages")
    r.add_post("/v1/providers/{channel}/status", post_provider_status, name="post_provider_status")
    r.add_post("/v1/providers/{channel}/inbound", post_provider_inbound, name="post_provider_inbound")
    r.add_get("/v1/ack/{token}", get_ack, name="get_ack")
