"""Alerts survive scaling and a provider that takes messages without answering: real Ray shards, the real
gateway and dispatcher, the fake Twilio-shaped provider (which, like Twilio, does not de-duplicate).

Regressions: scaling down lost the removed shard's pending messages and scaling up left a moved customer's
messages on the old shard; a send whose answer was lost was sent again (two texts to one phone).
"""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import auth, follow, free_port

from grid.contacts.config import ContactsConfig, ProviderConfig
from grid.contacts.fake_provider import FakeProvider
from grid.contacts.outbox import idempotency_key

pytestmark = pytest.mark.slow
OP = auth("operator")
N = 24


def _site(i: int, feeder: str) -> tuple[str, dict]:
    cid = f"Z{i:07d}"
    return cid, {
        "name": f"Home {i}", "kind": "residential", "segment": "mass", "attributes": {"feeder": feeder},
        "accounts": [{"account_id": f"ZA{i:07d}", "rate_plan_id": "res-tou", "status": "active",
                      "service_points": [{"service_point_id": f"ZS{i:07d}", "premise_address": f"{i} Oak St",
                                          "meter_id": f"ZM{i:07d}", "interval_minutes": 60, "has_solar": False,
                                          "load_priority": "normal"}]}],
        "contacts": [{"contact_id": f"ZK{i}", "name": f"Res {i}", "roles": ["outage"], "channels": [
            {"type": "sms", "address": f"+1415777{i:04d}", "preference": 1, "quiet_hours": None}]}]}


@pytest.fixture(scope="module")
async def world(ray_session, tmp_path_factory, keystore):
    from grid.cluster import Grid
    from grid.gateway.app import create_app
    from grid.gateway.config import GatewayConfig

    sms = FakeProvider("ACscale", "scale-token", hold_s=5, seed=5)
    await sms.start()
    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("alerts-scale")), shards=2, namespace="cg-test-alert-scale")
    for i in range(2 * N):
        g.replace(*_site(i, "F1" if i < N else "F2"))
    port = free_port()
    contacts = ContactsConfig(
        sms=ProviderConfig(base_url=sms.base_url, account_sid="ACscale", auth_token="scale-token",
                           from_number="+14155550000", timeout_s=1.0),
        public_url=f"http://127.0.0.1:{port}", ack_secret="s", backoff_base_s=0.05, backoff_cap_s=0.5, poll_s=0.05,
        max_attempts=4, batch=3, batches_in_flight=1)  # small batches: some messages in flight, most queued
    app = create_app(g, GatewayConfig(contacts=contacts), keystore)
    async with TestClient(TestServer(app, port=port)) as client:
        yield {"client": client, "grid": g, "sms": sms}
    await sms.stop()
    g.shutdown()


async def _declare(client, feeder: str) -> str:
    r = await client.post("/v1/outages", headers=OP, json={"area": {"attribute": "feeder", "value": feeder},
                                                           "cause": "wind"})
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["notifications"] == N
    return body["outage_id"]


async def _status(client, oid: str) -> dict:
    r = await client.get(f"/v1/outages/{oid}?limit=5000", headers=OP)
    assert r.status == 200, await r.text()
    return await r.json()


async def _settled(client, oid: str, seconds: float = 60.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        s = await _status(client, oid)
        if s["counts"].get("sent", 0) + s["counts"].get("delivered", 0) == N:
            return s
        assert time.monotonic() < deadline, f"outage {oid} not settled: {s['counts']}"
        await asyncio.sleep(0.1)


async def _scale(client, count: int) -> dict:
    r = await client.post("/v1/admin/shards", json={"count": count}, headers=OP)
    assert r.status == 202, await r.text()
    job = await follow(client, r, OP, seconds=120)
    assert job["state"] == "done", job
    return job["result"]


def _copies(sms: FakeProvider, oid: str, lo: int, hi: int) -> dict[str, int]:
    """Texts each recipient's phone got for this outage (the provider's own record, not ours)."""
    keys = {idempotency_key(oid, f"ZK{i}", "sms"): f"+1415777{i:04d}" for i in range(lo, hi)}
    got = collections.Counter()
    for m in sms.created:
        if m["key"] in keys and m["key"] in sms.handsets:
            got[keys[m["key"]]] += 1
    return {phone: got[phone] for phone in keys.values()}


async def test_alerts_pending_and_in_flight_survive_scaling_down_and_up(world):
    c, g, sms = world["client"], world["grid"], world["sms"]
    sms.hold()  # the provider is down: every message stays pending (queued) or in flight (its request parked)
    oid = await _declare(c, "F1")
    deadline = time.monotonic() + 20
    while (await _status(c, oid))["counts"].get("sending", 0) < 2:
        assert time.monotonic() < deadline, "no message went in flight"
        await asyncio.sleep(0.05)
    was = {f"Z{i:07d}": g.shard_index(f"Z{i:07d}") for i in range(N)}
    down = await _scale(c, 1)  # shard 1 goes: its pending and in-flight messages must not go with it
    mid = await _status(c, oid)
    assert mid["total"] == N and sum(mid["counts"].values()) == N, mid["counts"]
    up = await _scale(c, 2)
    assert down["moved_partitions"] > 0 and up["moved_partitions"] > 0
    moved = [cid for cid, s in was.items() if g.shard_index(cid) != s]
    assert moved and set(was.values()) == {0, 1}
    # kill -9 of the shard that took messages over: the moved messages are durable there (its snapshot + WAL)
    pid = g.stats()[1]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if g.stats()[1]["pid"] != pid:
                break
        except Exception:  # noqa: BLE001 - restarting
            pass
        assert time.monotonic() < deadline, "the killed shard did not come back"
        await asyncio.sleep(0.2)
    sms.release()
    s = await _settled(c, oid)
    assert s["total"] == N and s["counts"].get("failed", 0) == 0
    assert _copies(sms, oid, 0, N) == {f"+1415777{i:04d}": 1 for i in range(N)}  # each exactly once
    assert sms.held > 0
    for cid in moved[:3]:  # a moved customer's messages read back once, from wherever they are now
        r = await c.get(f"/v1/customers/{cid}/messages", headers=OP)
        items = [m for m in (await r.json())["items"] if m["event_id"] == oid]
        assert len(items) == 1 and items[0]["state"] in ("sent", "delivered")
    # the outage restored after the scale reaches every customer alerted, each once
    r = await c.post(f"/v1/outages/{oid}/restore", headers=OP, json={})
    assert r.status == 200 and (await r.json())["notifications"] == N


async def test_a_provider_that_takes_messages_and_times_out_sends_none_twice(world):
    c, sms = world["client"], world["sms"]
    sms.accept_timeout_rate, sms.fail_rate = 0.3, 0.1  # 30 %: taken, then the answer is lost
    before = sms.accepted_then_timed_out
    try:
        oid = await _declare(c, "F2")
        s = await _settled(c, oid, seconds=90)
    finally:
        sms.accept_timeout_rate = sms.fail_rate = 0.0
    assert sms.accepted_then_timed_out > before and sms.lookups > 0
    assert _copies(sms, oid, N, 2 * N) == {f"+1415777{i:04d}": 1 for i in range(N, 2 * N)}
    ambiguous = [m for m in s["recipients"] if m["attempts"] > 1]
    assert ambiguous  # some were tried again, and the lookup found them sent instead of sending again
