"""At most once through a provider that, like Twilio, does not de-duplicate: the Twilio transport against the
fake provider over real HTTP, and the real dispatcher on a plain shard (no Ray) under a provider that takes
30 % of messages and then lets the answer time out.

Regression: a send whose answer was lost was retried blindly; the fake provider dropped the copy by its
idempotency key, which Twilio does not do, so a real recipient would have got two texts.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from factories import context

from grid.contacts.config import ContactsConfig, ProviderConfig
from grid.contacts.dispatcher import Dispatcher
from grid.contacts.events import outage_op
from grid.contacts.fake_provider import FakeProvider
from grid.contacts.templates import Rendered
from grid.contacts.transports import ProviderTransport, reference
from grid.partitions import PARTITIONS
from grid.shard import Shard

MSG = Rendered(subject=None, body="Power outage at 1 Main St")


@pytest.fixture
async def provider():
    p = FakeProvider("ACtw", "tw-token", hold_s=1.0, send_receipts=False)
    await p.start()
    yield p
    await p.stop()


def _transport(p: FakeProvider, channel: str = "sms") -> ProviderTransport:
    return ProviderTransport(channel, ProviderConfig(base_url=p.base_url, account_sid="ACtw", auth_token="tw-token",
                                                     from_number="+14155550000", timeout_s=0.3))


async def test_the_fake_provider_does_not_deduplicate_like_twilio(provider):
    t = _transport(provider)
    try:
        for _ in range(2):
            assert (await t.send("+14155551234", MSG, "k" * 24, "http://127.0.0.1:1/cb")).status == "sent"
    finally:
        await t.close()
    assert provider.handsets["k" * 24] == 2 and len(provider.created) == 2


async def test_an_answer_lost_after_the_provider_took_it_is_found_not_sent_again(provider):
    t = _transport(provider)
    key = "a1b2c3d4e5f6a7b8c9d0e1f2"
    try:
        provider.accept_timeout_rate = 1.0
        first = await t.send("+14155551234", MSG, key, "http://127.0.0.1:1/cb")
        assert first.status == "retry" and first.ambiguous and provider.handsets[key] == 1
        assert reference(key) in provider.created[0]["body"]
        provider.accept_timeout_rate = 0.0
        again = await t.send("+14155551234", MSG, key, "http://127.0.0.1:1/cb",
                             previous={"n": 1, "status": "failed", "ambiguous": True})
        assert again.status == "sent" and again.provider_id == provider.created[0]["sid"]
        assert provider.handsets[key] == 1 and len(provider.created) == 1 and provider.lookups == 1
        # a timeout with nothing taken: the lookup finds nothing, so it is sent (once)
        provider.timeout_rate = 1.0
        other = "ffff" + key[4:]
        assert (await t.send("+14155559999", MSG, other, "http://127.0.0.1:1/cb")).ambiguous
        provider.timeout_rate = 0.0
        assert (await t.send("+14155559999", MSG, other, "http://127.0.0.1:1/cb",
                             previous={"n": 1, "status": "sending"})).status == "sent"
        assert provider.handsets[other] == 1
        # tries used up: only look; not there means fail over, never a blind send
        third = "eeee" + key[4:]
        out = await t.send("+14155558888", MSG, third, "http://127.0.0.1:1/cb",
                           previous={"n": 4, "status": "failed", "ambiguous": True}, verify_only=True)
        assert out.status == "permanent" and provider.handsets[third] == 0
    finally:
        await t.close()


async def test_the_lookup_pages_through_a_busy_number(provider):
    t = _transport(provider)
    try:
        for i in range(130):  # newest first, 100 a page: the one sought is on the second page
            await t.send("+14155551234", MSG, f"{i:04d}" + "0" * 20, "http://127.0.0.1:1/cb")
        found = await t.lookup("+14155551234", "0002" + "0" * 20, None)
        assert found is not None and found.status == "sent" and found.provider_id == provider.created[2]["sid"]
        assert await t.lookup("+14155551234", "9999" + "0" * 20, None) is None
        assert await t.lookup("+14155550001", "0002" + "0" * 20, None) is None  # another number's messages
    finally:
        await t.close()


async def test_the_list_endpoint_filters_as_twilio_does(provider):
    import aiohttp

    t = _transport(provider)
    try:
        await t.send("+14155551234", MSG, "1" * 24, "http://127.0.0.1:1/cb")
        await t.send("+14155554321", MSG, "2" * 24, "http://127.0.0.1:1/cb")
    finally:
        await t.close()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    async with aiohttp.ClientSession(auth=aiohttp.BasicAuth("ACtw", "tw-token")) as s:
        url = f"{provider.base_url}/2010-04-01/Accounts/ACtw/Messages.json"
        for query, want in [({"To": "+14155551234"}, 1), ({"DateSent>": today}, 2), ({"DateSent<": "2000-01-01"}, 0),
                            ({"DateSent": today, "To": "+14155554321"}, 1)]:
            async with s.get(url, params=query) as r:
                assert r.status == 200
                assert len((await r.json())["messages"]) == want, query
        async with aiohttp.ClientSession(auth=aiohttp.BasicAuth("ACtw", "wrong")) as bad:
            async with bad.get(url) as r:
                assert r.status == 401


class OneShardGrid:
    """The few grid-client calls the dispatcher makes, on one plain shard in this process."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.shards = [shard]

    async def aoutbox_due(self, shard_index, now, limit):
        import copy

        return copy.deepcopy(self.shard.outbox.due(now, limit))  # as Ray would hand it: a copy

    async def aoutbox_write(self, shard_index, op):
        return self.shard.write(op)

    async def aoutbox_locate(self, nid):
        return 0 if nid in self.shard.outbox.items else None

    async def aescalate(self, now, fallback):
        return 0


async def test_a_provider_taking_30_percent_then_timing_out_reaches_everyone_once(provider):
    shard = Shard(0, list(range(PARTITIONS)))
    n = 60
    for i in range(n):
        cid, body = context(i)
        body["attributes"]["feeder"] = "F1"
        for sp in body["accounts"][0]["service_points"]:
            sp["load_priority"] = "normal"
        body["contacts"] = [{"contact_id": f"K{i}", "name": "K", "roles": ["outage"], "channels": [
            {"type": "sms", "address": f"+1415666{i:04d}", "preference": 1, "quiet_hours": None},
            {"type": "voice", "address": f"+1415666{i:04d}", "preference": 2, "quiet_hours": None}]}]
        shard.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"p{i}"})
    event = {"id": "OUT-00000000TW01", "group": "OUT-00000000TW01", "type": "outage", "start": "2026-12-01T10:00:00Z",
             "estimated_restoration": None, "cause": "ice", "selector": {"area": {"attribute": "feeder", "value": "F1"}}}
    shard.write(outage_op(shard, event, 900)[0])
    provider.accept_timeout_rate, provider.fail_rate, provider.hold_s = 0.3, 0.1, 0.6
    cfg = ContactsConfig(sms=ProviderConfig(base_url=provider.base_url, account_sid="ACtw", auth_token="tw-token",
                                            from_number="+14155550000", timeout_s=0.3),
                         backoff_base_s=0.02, backoff_cap_s=0.1, poll_s=0.02, max_attempts=3, batch=20)
    d = Dispatcher(OneShardGrid(shard), cfg, {"sms": _transport(provider)}, seed=2)
    task = asyncio.create_task(d.run())
    try:
        deadline = time.monotonic() + 60
        while True:
            counts = shard.outbox.group_status(event["id"])["counts"]
            if counts.get("sent", 0) == n:
                break
            assert time.monotonic() < deadline, counts
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.transports["sms"].close()
    assert provider.accepted_then_timed_out >= 10 and provider.lookups >= 10  # the ambiguity really happened
    assert sorted(provider.handsets.values()) == [1] * n  # every recipient once, by the provider's own count
    assert len(provider.created) == n
    sent_via = [shard.outbox.items[x]["delivered_via"]["channel"] for x in shard.outbox.by_group[event["id"]]]
    assert set(sent_via) == {"sms"}  # an ambiguous try is looked up, not failed over to a second channel
    # the ambiguity went through the outbox (the WAL's ops) before each second try
    assert any(a.get("ambiguous") for x in shard.outbox.by_group[event["id"]]
               for a in shard.outbox.items[x]["attempts"].values())
