"""Events that alert, turned into outbox ops on one shard (called by ``ShardServer``'s named methods).

Each function reads the shard's live state and returns the one ``outbox_enqueue`` op to write (plus a summary
for the caller); the op holds the planned notifications themselves, so a WAL replay re-applies exactly what was
planned, whatever the records look like by then. Write ids are derived from the event, so a retried scatter
(Ray retries, a client re-posting with the same Idempotency-Key) enqueues once.
"""
from __future__ import annotations

import hashlib
from collections import Counter

from grid.contacts import targets


def _enqueue(write_id: str, event: dict, notifications: list[dict], escalates: list[str] | None = None) -> dict:
    body = {"event": event, "notifications": notifications}
    if escalates:
        body["escalates"] = escalates
    return {"kind": "outbox_enqueue", "customer_id": None, "write_id": write_id, "body": body}


ENQUEUE_CHUNK = 2000  # notifications per enqueue op of a large outage


def outage_ops(shard, event: dict, ack_within_s: float, chunk: int = ENQUEUE_CHUNK) -> tuple[list[dict], dict]:
    """(ops, summary) of an outage on this shard, its notifications in enqueue ops of ``chunk`` each, in
    delivery order (critical first).

    A 100k outage is some 50 MB of planned notifications per shard: as one op, nothing could be sent until all of
    it was encoded, logged and applied (22 s in the benchmark). In chunks, the shard applies the first ones while
    it logs the next, the dispatcher starts on the critical loads at once, and group commit shares the fsyncs.
    A chunk's write id is its content (event, shard, the notification ids): a retried declaration that plans the
    same writes nothing twice, and one that plans differently (a record changed in between, a chunk lost to a
    crash before the acknowledgement) adds only the notifications not enqueued yet (enqueue skips known ids).
    """
    notifications, summary = _plan_outage(shard, event, ack_within_s)
    ops = []
    for i in range(0, max(1, len(notifications)), chunk):
        part = notifications[i:i + chunk]
        digest = hashlib.sha256("|".join(n["nid"] for n in part).encode()).hexdigest()[:16]
        ops.append(_enqueue(f"{event['id']}:enqueue:{shard.shard_id}:{digest}", event, part))
    return ops, summary


def outage_op(shard, event: dict, ack_within_s: float) -> tuple[dict, dict]:
    """(op, summary) of an outage on this shard in one op: every shard records the event, affected or not."""
    notifications, summary = _plan_outage(shard, event, ack_within_s)
    return _enqueue(f"{event['id']}:enqueue:{shard.shard_id}", event, notifications), summary


def _plan_outage(shard, event: dict, ack_within_s: float) -> tuple[list[dict], dict]:
    hits = targets.affected(shard, event)
    notifications = targets.plan_outage(shard, event, ack_within_s)
    prio = Counter()
    for cid, sps in hits.items():
        p = max((sp.get("load_priority", "normal") for sp in sps), key=lambda x: targets.PRIORITY.get(x, 0))
        prio[p] += 1
    key_accounts = sum(bool((shard.records[c].get("classification") or {}).get("key_account")) for c in hits)
    summary = {"customers": len(hits), "service_points": sum(len(v) for v in hits.values()),
               "critical": prio["critical"], "priority": prio["priority"], "normal": prio["normal"],
               "key_accounts": key_accounts, "notifications": len(notifications),
               "without_contact": len(hits) - len({n["customer_id"] for n in notifications})}
    return notifications, summary


def restoration_op(shard, outage_id: str, restored_at: str, audit: dict | None = None) -> tuple[dict | None, int]:
    """(op, notifications) announcing restoration; (None, 0) when this shard never heard of the outage.
    ``audit``: who restored it, appended to the outage's audit entries (``grid.contacts.outbox``)."""
    if outage_id not in shard.outbox.events:
        return None, 0
    event_id = f"{outage_id}.restored"
    notifications = targets.plan_restoration(shard, outage_id, event_id, restored_at)
    event = {"id": event_id, "group": outage_id, "update": {"restored_at": restored_at, "state": "restored"}}
    if audit:
        event["audit"] = [audit]
    return _enqueue(f"{event_id}:enqueue:{shard.shard_id}", event, notifications), len(notifications)


def notice_op(shard, notice: dict) -> tuple[dict, int]:
    notifications = targets.plan_notices(shard, notice)
    return _enqueue(f"{notice['id']}:enqueue:{shard.shard_id}", notice, notifications), len(notifications)


def escalation_op(shard, now: float, fallback: dict | None) -> dict | None:
    """The escalations due now (one op for all of them), or None."""
    escalated, notifications = targets.plan_escalations(shard, now, fallback)
    if not escalated:
        return None
    digest = hashlib.sha256("|".join(sorted(escalated)).encode()).hexdigest()[:16]
    event = {"id": f"escalation:{digest}", "group": "escalations", "type": "escalation"}
    return _enqueue(f"escalate:{digest}", event, notifications, escalates=escalated)
