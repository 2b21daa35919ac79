"""The outbox as a plain state machine on a plain shard (no Ray): ops, replay, snapshots, routing rules."""
from __future__ import annotations

import copy
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from factories import context

from grid.contacts.dispatcher import in_quiet_hours
from grid.contacts.events import outage_op
from grid.errors import NotFound
from grid.partitions import PARTITIONS
from grid.shard import Shard, from_snapshot, to_snapshot

EVENT = {"id": "OUT-00000000000A", "group": "OUT-00000000000A", "type": "outage", "start": "2026-12-01T11:00:00Z",
         "estimated_restoration": None, "cause": "storm", "selector": {"area": {"attribute": "feeder", "value": "F1"}}}


@pytest.fixture
def shard():
    s = Shard(0, list(range(PARTITIONS)))
    for i in range(12):
        cid, body = context(i)
        body["attributes"]["feeder"] = "F1" if i < 8 else "F2"
        body["contacts"] = [
            {"contact_id": f"K{i}a", "name": "A", "roles": ["outage"], "channels": [
                {"type": "sms", "address": f"+1415555{i:04d}", "preference": 2, "quiet_hours": None},
                {"type": "email", "address": f"a{i}@example.com", "preference": 1, "quiet_hours": None}]},
            {"contact_id": f"K{i}e", "name": "E", "roles": ["emergency", "outage"], "channels": [
                {"type": "voice", "address": f"+1415556{i:04d}", "preference": 1, "quiet_hours": None}]}]
        s.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"put-{i}"})
    return s


def _op(kind, items, wid):
    return {"kind": kind, "customer_id": None, "write_id": wid, "body": {"items": items}}


def test_route_is_channels_by_preference_then_next_contact_emergency_first_when_critical(shard):
    op, summary = outage_op(shard, copy.deepcopy(EVENT), 900)
    assert summary["customers"] == 8 and summary["critical"] == 1  # factories: every 10th load is critical
    by_cid = {n["customer_id"]: n for n in op["body"]["notifications"]}
    normal = [(c["contact_id"], c["channel"]) for c in by_cid["C0000001"]["route"]]
    assert normal == [("K1a", "email"), ("K1a", "sms"), ("K1e", "voice")]
    critical = [(c["contact_id"], c["channel"]) for c in by_cid["C0000000"]["route"]]
    assert critical == [("K0e", "voice"), ("K0a", "email"), ("K0a", "sms")]
    assert op["body"]["notifications"][0]["customer_id"] == "C0000000"  # critical first in the queue
    assert by_cid["C0000000"]["ack_within_s"] == 900 and by_cid["C0000001"]["ack_within_s"] is None


def test_enqueue_is_idempotent_and_replay_rebuilds_the_same_outbox(shard):
    op, _ = outage_op(shard, copy.deepcopy(EVENT), 900)
    shard.write(op)
    log = [copy.deepcopy(op)]  # as the WAL holds it: stamped by prepare
    n = shard.outbox.due(1e12, 100)[0]
    key = n["route"][0]["key"]
    for kind, items in [("outbox_attempt", [{"nid": n["nid"], "pos": 0, "lease_until": 50.0, "at": "t1"}]),
                        ("outbox_failed", [{"nid": n["nid"], "key": key, "next": "failover", "pos": 0,
                                            "error": "HTTP 500", "at": "t2"}]),
                        ("outbox_attempt", [{"nid": n["nid"], "pos": 1, "lease_until": 60.0, "at": "t3"}]),
                        ("outbox_delivered", [{"nid": n["nid"], "key": n["route"][1]["key"], "status": "delivered",
                                               "provider_id": "SM1", "sent_epoch": 61.0, "at": "t4"}]),
                        ("outbox_delivered", [{"nid": n["nid"], "key": n["route"][1]["key"], "status": "sent",
                                               "provider_id": "SM1", "sent_epoch": 61.0, "at": "t5"}])]:
        o = _op(kind, items, f"{kind}-{len(log)}")
        shard.write(o)
        log.append(copy.deepcopy(o))
    got = shard.outbox.items[n["nid"]]
    assert got["state"] == "delivered"  # the late "sent" did not move it backwards
    assert got["delivered_via"]["channel"] == n["route"][1]["channel"]
    shard.write(copy.deepcopy(log[0]))  # the same enqueue again: nothing new
    assert len(shard.outbox.items) == 8
    replayed = Shard(0, list(range(PARTITIONS)))
    replayed.records = shard.records
    for o in log:
        replayed.apply(copy.deepcopy(o))
    assert replayed.outbox.to_blob() == shard.outbox.to_blob()
    tables, blobs = to_snapshot(shard)
    restored = from_snapshot(tables, blobs)
    assert restored.outbox.to_blob() == shard.outbox.to_blob()
    assert [x["nid"] for x in restored.outbox.due(1e12, 100)] == [x["nid"] for x in shard.outbox.due(1e12, 100)]


def test_leases_hide_messages_being_sent_until_they_expire(shard):
    op, _ = outage_op(shard, copy.deepcopy(EVENT), 900)
    shard.write(op)
    nids = [n["nid"] for n in shard.outbox.due(1000.0, 100)]
    shard.write(_op("outbox_attempt", [{"nid": x, "pos": 0, "lease_until": 2000.0, "at": "t"} for x in nids[:5]],
                    "a1"))
    assert {n["nid"] for n in shard.outbox.due(1500.0, 100)} == set(nids[5:])
    assert {n["nid"] for n in shard.outbox.due(2500.0, 100)} == set(nids)  # a crashed sender's: again


def test_unknown_message_is_refused_before_the_log(shard):
    with pytest.raises(NotFound):
        shard.prepare(_op("outbox_delivered", [{"nid": "Mdeadbeefdeadbee", "key": "k", "at": "t"}], "x"))


def test_quiet_hours_wrap_midnight_and_end_at_local_time():
    tz = ZoneInfo("America/Los_Angeles")
    quiet = {"start": "22:00", "end": "07:00"}
    at3 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=tz).timestamp()
    assert in_quiet_hours(quiet, at3, tz) == dt.datetime(2026, 12, 1, 7, 0, tzinfo=tz).timestamp()
    at23 = dt.datetime(2026, 12, 1, 23, 0, tzinfo=tz).timestamp()
    assert in_quiet_hours(quiet, at23, tz) == dt.datetime(2026, 12, 2, 7, 0, tzinfo=tz).timestamp()
    assert in_quiet_hours(quiet, dt.datetime(2026, 12, 1, 12, 0, tzinfo=tz).timestamp(), tz) is None
    assert in_quiet_hours({"start": "09:00", "end": "17:00"}, at3, tz) is None
    assert in_quiet_hours(None, at3, tz) is None


def test_retention_compacts_finished_messages_through_the_log_and_replays_the_same(shard):
    old, _ = outage_op(shard, copy.deepcopy(EVENT), 900)
    old["at"] = "2026-09-01T10:00:00+00:00"
    shard.write(old)
    log = [copy.deepcopy(old)]
    fresh_event = {**copy.deepcopy(EVENT), "id": "OUT-00000000000B", "group": "OUT-00000000000B"}
    fresh, _ = outage_op(shard, fresh_event, 900)
    shard.write(fresh)
    log.append(copy.deepcopy(fresh))
    old_nids = shard.outbox.by_group[EVENT["id"]]
    done = _op("outbox_delivered", [{"nid": nid, "key": shard.outbox.items[nid]["route"][0]["key"],
                                     "status": "delivered", "at": "2026-09-01T10:05:00+00:00"} for nid in old_nids], "d")
    shard.write(done)
    log.append(copy.deepcopy(done))
    before_status = shard.outbox.group_status(EVENT["id"])
    assert before_status["counts"] == {"delivered": len(old_nids)}

    compact = {"kind": "outbox_compact", "customer_id": None, "write_id": "c1",
               "body": {"before": "2026-10-01T00:00:00+00:00"}}
    out = shard.write(compact)
    log.append(copy.deepcopy(compact))
    # the finished, month-old outage is gone; the fresh one (still queued) is kept whole
    assert not set(old_nids) & set(shard.outbox.items)
    assert len(shard.outbox.items) == len(shard.outbox.by_group["OUT-00000000000B"]) == 8
    assert all(n["event_id"] == "OUT-00000000000B" for c in shard.records for n in shard.outbox.for_customer(c))
    status = shard.outbox.group_status(EVENT["id"])  # the counts survive for the status page
    assert status["counts"] == before_status["counts"] and status["total"] == len(old_nids)
    assert out is not None
    # the old outage declared again (a retried request, a replay): nothing queued, nothing sent twice
    shard.write({**copy.deepcopy(old), "write_id": "again"})
    assert not set(old_nids) & {n["nid"] for n in shard.outbox.due(1e12, 100)}
    # a group with anything unfinished or recent is not compacted
    shard.write({**compact, "write_id": "c2", "body": {"before": "2030-01-01T00:00:00+00:00"}})
    assert len(shard.outbox.items) == 8
    # replaying the log rebuilds the same outbox; snapshots carry the retired groups
    replayed = Shard(0, list(range(PARTITIONS)))
    replayed.records = shard.records
    for o in log:
        replayed.apply(copy.deepcopy(o))
    assert replayed.outbox.digest() == shard.outbox.digest()
    tables, blobs = to_snapshot(shard)
    assert from_snapshot(tables, blobs).outbox.group_status(EVENT["id"]) == status


def test_compaction_without_a_cutoff_is_refused(shard):
    from grid.errors import InvalidInput

    with pytest.raises(InvalidInput) as e:
        shard.prepare({"kind": "outbox_compact", "customer_id": None, "write_id": "x", "body": {}})
    assert e.value.field == "body.before"
