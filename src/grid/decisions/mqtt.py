"""Meter alarms from an MQTT broker (the streaming source a utility's head-end already runs) become events.

A message on ``meters/<service_point_id>/alarm`` (the topic filter is configurable) carries JSON such as
``{"alarm": "tamper", "time": "2026-12-01T10:00:00Z", "customer_id"?: ..., ...}``. The service point is found
in the topic (or the payload's ``service_point_id``), its owner looked up across the grid, and a
``meter_alarm`` event written to the owner's context through the usual event path (WAL). The write id is a
digest of topic and payload, so a message the broker redelivers (QoS 1 is at-least-once) counts once.

A message that cannot be mapped (bad JSON, an unknown service point) is logged and counted, never retried:
a broker has no one to answer a 4xx to. The subscriber reconnects with a capped back-off when the broker
goes away.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from grid.decisions.events import iso
from grid.decisions.service import event_ops
from grid.errors import ContextGridError

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "meters/+/alarm"
MAX_PAYLOAD_KEYS = 20


@dataclass
class MqttSettings:
    host: str
    port: int = 1883
    topic: str = DEFAULT_TOPIC
    client_id: str | None = None

    @classmethod
    def parse(cls, url: str, topic: str | None = None) -> "MqttSettings":
        """``host[:port]`` (an ``mqtt://`` prefix is accepted)."""
        url = url.removeprefix("mqtt://")
        host, _, port = url.partition(":")
        return cls(host, int(port) if port else 1883, topic or DEFAULT_TOPIC)


@dataclass
class AlarmCounts:
    received: int = 0
    written: int = 0
    rejected: int = 0
    last_error: str | None = field(default=None)


def parse_message(topic: str, payload: bytes) -> dict:
    """The alarm of one message: ``{service_point_id, customer_id?, time, payload}``; ValueError if unusable."""
    try:
        body = json.loads(payload.decode("utf-8")) if payload else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"payload is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("payload must be a JSON object")
    parts = topic.split("/")
    sp = body.get("service_point_id") or (parts[1] if len(parts) >= 3 else None)
    if not isinstance(sp, str) or not sp:
        raise ValueError(f"no service point in topic {topic!r} or payload")
    when = body.get("time") or iso(int(time.time()))
    extra = {k: v for k, v in body.items() if k not in ("time", "customer_id")}
    if len(extra) > MAX_PAYLOAD_KEYS:
        raise ValueError(f"payload has more than {MAX_PAYLOAD_KEYS} keys")
    extra["service_point_id"] = sp
    extra["topic"] = topic
    return {"service_point_id": sp, "customer_id": body.get("customer_id"), "time": when, "payload": extra}


async def handle(grid, topic: str, payload: bytes, counts: AlarmCounts) -> dict | None:
    """Map one message to a ``meter_alarm`` event and write it; None (counted, logged) when it cannot be."""
    counts.received += 1
    try:
        alarm = parse_message(topic, payload)
        cid = alarm["customer_id"]
        if cid is None:
            cid = (await grid.asp_owners([alarm["service_point_id"]])).get(alarm["service_point_id"])
            if cid is None:
                raise ValueError(f"no customer owns service point {alarm['service_point_id']!r}")
        event = {"customer_id": cid, "type": "meter_alarm", "time": alarm["time"], "payload": alarm["payload"]}
        wid = "mqtt:" + hashlib.sha256(topic.encode() + b"\0" + payload).hexdigest()[:32]
        result = (await grid.apost_events(event_ops(event, wid)))[0]
    except (ValueError, ContextGridError) as exc:
        counts.rejected += 1
        counts.last_error = str(exc)
        log.warning("mqtt: dropped message on %s: %s", topic, exc)
        return None
    counts.written += 1
    return result


async def subscribe(grid, settings: MqttSettings, counts: AlarmCounts, ready: asyncio.Event | None = None) -> None:
    """Subscribe and write alarms until cancelled; reconnects with back-off (1 s doubling to 30 s)."""
    import aiomqtt

    delay = 1.0
    while True:
        try:
            async with aiomqtt.Client(settings.host, settings.port, identifier=settings.client_id) as client:
                await client.subscribe(settings.topic, qos=1)
                delay = 1.0
                if ready is not None:
                    ready.set()
                async for message in client.messages:
                    raw = message.payload
                    raw = bytes(raw) if isinstance(raw, (bytes, bytearray)) else str(raw or "").encode()
                    await handle(grid, str(message.topic), raw, counts)
        except aiomqtt.MqttError as exc:
            counts.last_error = f"broker: {exc}"
            log.warning("mqtt: %s; reconnecting in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)
