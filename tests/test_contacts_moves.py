"""Outbox state moves with its customers' partitions (plain shards, no Ray): pending, in-flight and finished
notifications, the done entries compaction leaves, and the events they belong to.

Regression: outbox items stayed on the shard that enqueued them, so a scale-down lost a removed shard's
pending messages and a moved customer's messages were sent (or re-planned) by the wrong shard.
"""
from __future__ import annotations

import copy

import pytest
from factories import context

from grid.contacts.events import outage_op, restoration_op
from grid.contacts.moves import handover
from grid.errors import NotFound, WrongShard
from grid.partitions import PARTITIONS, partition_of
from grid.shard import Shard, from_snapshot, to_snapshot

OLD = {"id": "OUT-0000000000A1", "group": "OUT-0000000000A1", "type": "outage", "start": "2026-09-01T10:00:00Z",
       "estimated_restoration": None, "cause": "storm", "selector": {"area": {"attribute": "feeder", "value": "F1"}}}
NEW = {**OLD, "id": "OUT-0000000000B2", "group": "OUT-0000000000B2", "start": "2026-12-01T10:00:00Z",
       "audit": [{"action": "declare", "key_id": "ops", "role": "operator", "at": "2026-12-01T10:00:00Z"}]}
N = 40


def _op(kind, items, wid):
    return {"kind": kind, "customer_id": None, "write_id": wid, "body": {"items": items}}


@pytest.fixture
def world():
    """A shard with N customers on feeder F1: an old outage delivered and compacted, a new one part queued,
    part in flight (sending, leased), part delivered."""
    src = Shard(0, list(range(PARTITIONS)))
    for i in range(N):
        cid, body = context(i)
        body["attributes"]["feeder"] = "F1"
        body["contacts"] = [{"contact_id": f"K{i}", "name": "K", "roles": ["outage"], "channels": [
            {"type": "sms", "address": f"+1415555{i:04d}", "preference": 1, "quiet_hours": None}]}]
        src.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"put-{i}"})
    old, _ = outage_op(src, copy.deepcopy(OLD), 900)
    old["at"] = "2026-09-01T10:00:00+00:00"
    src.write(old)
    src.write(_op("outbox_delivered", [{"nid": n, "key": src.outbox.items[n]["route"][0]["key"], "status": "delivered",
                                        "at": "2026-09-01T10:01:00+00:00"} for n in src.outbox.by_group[OLD["id"]]], "d0"))
    src.write({"kind": "outbox_compact", "customer_id": None, "write_id": "c0",
               "body": {"before": "2026-10-01T00:00:00+00:00"}})
    new, _ = outage_op(src, copy.deepcopy(NEW), 900)
    src.write(new)
    nids = src.outbox.by_group[NEW["id"]]
    src.write(_op("outbox_attempt", [{"nid": n, "pos": 0, "lease_until": 5e9, "at": "2026-12-01T10:00:01+00:00"}
                                     for n in nids[:20]], "a1"))
    src.write(_op("outbox_delivered", [{"nid": n, "key": src.outbox.items[n]["route"][0]["key"], "status": "sent",
                                        "at": "2026-12-01T10:00:02+00:00"} for n in nids[:10]], "s1"))
    return src, nids


def _status(*shards, group):
    parts = [s.outbox.group_status(group) for s in shards]
    counts: dict[str, int] = {}
    for p in parts:
        for k, v in (p or {"counts": {}})["counts"].items():
            counts[k] = counts.get(k, 0) + v
    return counts, sum(p["total"] for p in parts if p)


def test_notifications_move_with_the_partition_and_nothing_is_counted_twice(world):
    src, nids = world
    before = {g: _status(src, group=g) for g in (OLD["id"], NEW["id"])}
    assert before[NEW["id"]] == ({"sent": 10, "sending": 10, "queued": 20}, N)
    assert before[OLD["id"]] == ({"delivered": N}, N)
    parts = list(range(0, PARTITIONS, 2))
    moving = {c for c in src.records if partition_of(c) in set(parts)}
    held = {n: copy.deepcopy(src.outbox.items[n]) for n in nids if src.outbox.items[n]["customer_id"] in moving}
    payload = src.export_partitions(parts)
    # exported: served nowhere here at once, writes on it re-routed (WrongShard), not applied and lost
    assert not {n["nid"] for n in src.outbox.due(1e12, 1000)} & set(held)
    assert all(src.outbox.for_customer(c) == [] for c in moving)
    with pytest.raises(WrongShard):
        src.prepare(_op("outbox_delivered", [{"nid": next(iter(held)), "key": "k", "at": "t"}], "late"))
    dst = Shard(1, [])
    dst.import_partitions(payload)
    src.drop_partitions(parts)
    for g in (OLD["id"], NEW["id"]):
        assert _status(src, dst, group=g) == before[g]
    assert {n: dst.outbox.items[n] for n in held} == held  # states, attempts, leases and routes as they were
    assert dst.outbox.events[NEW["id"]]["audit"] == NEW["audit"]  # who declared it travels with the outage
    leased = [n for n, x in held.items() if x["state"] == "sending"]
    assert leased and {x["nid"] for x in dst.outbox.due(1e9, 1000)} == {n for n, x in held.items()
                                                                     if x["state"] == "queued"}
    assert {x["nid"] for x in dst.outbox.due(6e9, 1000)} >= set(leased)  # a lease still runs out there
    with pytest.raises(NotFound):  # dropped: the source knows it no more
        src.prepare(_op("outbox_delivered", [{"nid": leased[0], "key": "k", "at": "t"}], "later"))
    # the new shard takes the dispatcher's result of a send that was in flight during the move
    key = held[leased[0]]["route"][0]["key"]
    dst.write(_op("outbox_delivered", [{"nid": leased[0], "key": key, "status": "sent", "at": "t9"}], "s2"))
    assert dst.outbox.items[leased[0]]["state"] == "sent"
    # a snapshot of the new shard holds them
    assert from_snapshot(*to_snapshot(dst)).outbox.digest() == dst.outbox.digest()


def test_a_declaration_replayed_after_the_move_sends_nothing_twice(world):
    src, nids = world
    parts = list(range(PARTITIONS // 2))
    payload = src.export_partitions(parts)
    dst = Shard(1, [])
    dst.import_partitions(payload)
    src.drop_partitions(parts)
    for g in (OLD, NEW):  # a retried or replayed declaration, planned by each shard on its own customers
        for shard in (src, dst):
            op, _ = outage_op(shard, copy.deepcopy(g), 900)
            assert op["body"]["notifications"]
            assert shard.write({**op, "write_id": f"again-{g['id']}-{shard.shard_id}"})["added"] == 0
    # restoration reaches every moved customer alerted by the live outage, from its new shard
    o, n = restoration_op(dst, NEW["id"], "2026-12-01T12:00:00Z")
    assert n == len(payload["outbox"]["items"]) == len(set(payload["records"])) > 0
    assert {x["customer_id"] for x in o["body"]["notifications"]} == set(payload["records"])


def test_an_enqueue_for_a_customer_the_shard_no_longer_owns_is_refused(world):
    src, _ = world
    op, _ = outage_op(src, copy.deepcopy({**NEW, "id": "OUT-0000000000C3", "group": "OUT-0000000000C3"}), 900)
    src.export_partitions(list(range(PARTITIONS)))
    with pytest.raises(WrongShard):
        src.prepare(op)


def test_a_failed_import_is_undone_at_the_source(world):
    src, nids = world
    before = src.outbox.digest(), _status(src, group=NEW["id"])
    due = [n["nid"] for n in src.outbox.due(1e12, 1000)]
    src.export_partitions(list(range(PARTITIONS)))
    assert src.outbox.due(1e12, 1000) == [] and src.outbox.digest() == before[0]  # snapshots still hold it
    src.reown_partitions(list(range(PARTITIONS)))
    assert [n["nid"] for n in src.outbox.due(1e12, 1000)] == due
    assert (src.outbox.digest(), _status(src, group=NEW["id"])) == before


def test_a_recovered_source_drops_the_messages_of_partitions_that_left(world):
    src, _ = world
    tables, blobs = to_snapshot(src)  # the snapshot before the move
    src.export_partitions(list(range(10)))
    stale = from_snapshot(tables, blobs)
    stale.owned[:10] = False  # the ownership file says they left
    stale.drop_unowned()
    assert not stale.outbox.partitions_held() & set(range(10))


def test_a_removed_shards_remainder_goes_to_a_survivor_through_the_log(world):
    src, _ = world
    src.outbox.events[OLD["id"]]["retired"] = {"at": "2026-10-01", "total": 3, "counts": {"delivered": 3},
                                               "attempts": 4}  # compacted by the old version: counts only
    survivor = Shard(1, [])
    survivor.outbox.events[OLD["id"]] = {**OLD, "retired": {"at": "2026-10-02", "total": 2,
                                                            "counts": {"failed": 2}, "attempts": 2}}
    initial = to_snapshot(survivor)
    before_old = _status(src, survivor, group=OLD["id"])
    before_new = _status(src, survivor, group=NEW["id"])
    assert before_old[1] == N + 5
    op = {"kind": "outbox_absorb", "customer_id": None, "write_id": "handover:0", "body": handover(src.outbox)}
    stamped = copy.deepcopy(op)
    survivor.write(stamped)
    survivor.write(copy.deepcopy(op))  # a retried scale: absorbed once
    assert _status(survivor, group=OLD["id"]) == before_old
    assert _status(survivor, group=NEW["id"]) == before_new
    replayed = from_snapshot(*initial)  # the WAL replayed after a crash: the same outbox
    replayed.apply(copy.deepcopy(stamped))
    assert replayed.outbox.digest() == survivor.outbox.digest()
