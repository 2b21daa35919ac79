"""Events that alert, turned into outbox ops on one shard (called by ``ShardServer``'s named methods).

Each function reads the shard's live state and returns the one ``outbox_enqueue`` op to write (plus a summary
for the caller); the op holds the planned notifications themselves, so a WAL replay re-applies exactly what was
planned, whatever the records look like by then. Write ids are derived from the event, so a retried scatter
(Ray retries, a client re-posting with the same Idempotency-Key) enqueues once.
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter

from grid.contacts import targets


def _enqueue(write_id: str, event: dict, notifications: list[dict], escalates: list[str] | None = None) -> dict:
    body = {"event": event, "notifications": notifications}
    if escalates:
        body["escalates"] = escalates
    return {"kind": "outbox_enqueue", "customer_id": None, "write_id": write_id, "body": body}


ENQUEUE_CHUNK = 2000  # notifications per enqueue op of a large outage or notice


def enqueue_ops(write_id: str, event: dict, notifications: list[dict], chunk: int = ENQUEUE_CHUNK) -> list[dict]:
    """An event's notifications as enqueue ops of ``chunk`` each, in delivery order (at least one op: every shard
    records the event, affected or not).

    A 100k outage in one op per shard (50k notifications each) sent nothing until all of it was encoded, logged,
    fsynced and applied (22 s in the benchmark, at load average 16). In chunks, the shard applies the first while it
    logs the next, the dispatcher starts on the critical loads at once, and group commit shares the fsyncs.
    A chunk's write id is ``write_id`` and its content (the notification ids): a retried declaration that plans
    the same writes nothing twice, and one that plans differently (a record changed in between, chunks lost to
    a crash before the acknowledgement) adds only what is not enqueued yet (enqueue skips known ids).
    """
    ops = []
    for i in range(0, max(1, len(notifications)), chunk):
        part = notifications[i:i + chunk]
        digest = hashlib.sha256("|".join(n["nid"] for n in part).encode()).hexdigest()[:16]
        ops.append(_enqueue(f"{write_id}:{digest}", event, part))
    return ops


def outage_ops(shard, event: dict, ack_within_s: float, chunk: int = ENQUEUE_CHUNK) -> tuple[list[dict], dict]:
    """(ops, summary) of an outage on this shard, critical loads first (:func:`enqueue_ops`)."""
    notifications, summary = _plan_outage(shard, event, ack_within_s)
    return enqueue_ops(f"{event['id']}:enqueue:{shard.shard_id}", event, notifications, chunk), summary


def outage_op(shard, event: dict, ack_within_s: float) -> tuple[dict, dict]:
    """(op, summary) of an outage on this shard in one op."""
    ops, summary = outage_ops(shard, event, ack_within_s, chunk=sys.maxsize)
    return ops[0], summary


def _plan_outage(shard, event: dict, ack_within_s: float) -> tuple[list[dict], dict]:
    hits = targets.affected(shard, event)
    notifications = targets.plan_outage(shard, event, ack_within_s, hits)
    prio = Counter()
    for cid, sps in hits.items():
        p = max((sp.get("load_priority", "normal") for sp in sps), key=lambda x: targets.PRIORITY.get(x, 0))
        prio[p] += 1
    key_accounts = sum(bool((shard.records[c].get("classification") or {}).get("key_account")) for c in hits)
    summary = {"customers": len(hits), "service_points": sum(len(v) for v in hits.values()),
               "critical": prio["critical"], "priority": prio["priority"], "normal": prio["normal"],
               "key_accounts": key_accounts, "notifications": len(notifications),
               "without_contact": len(hits) - len({n["customer_id"] for n in notifications}),
               "matched": targets.matched(shard, event, hits)}
    return notifications, summary


def restoration_ops(shard, outage_id: str, restored_at: str, audit: dict | None = None,
                    chunk: int = ENQUEUE_CHUNK) -> tuple[list[dict] | None, int]:
    """(ops, notifications) announcing restoration; (None, 0) when this shard never heard of the outage.
    ``audit``: who restored it, appended to the outage's audit entries (``grid.contacts.outbox``)."""
    if outage_id not in shard.outbox.events:
        return None, 0
    event_id = f"{outage_id}.restored"
    notifications = targets.plan_restoration(shard, outage_id, event_id, restored_at)
    event = {"id": event_id, "group": outage_id, "update": {"restored_at": restored_at, "state": "restored"}}
    if audit:
        event["audit"] = [audit]
    return enqueue_ops(f"{event_id}:enqueue:{shard.shard_id}", event, notifications, chunk), len(notifications)


def restoration_op(shard, outage_id: str, restored_at: str, audit: dict | None = None) -> tuple[dict | None, int]:
    """:func:`restoration_ops` in one op."""
    ops, n = restoration_ops(shard, outage_id, restored_at, audit, chunk=sys.maxsize)
    return (ops[0] if ops else None), n


def notice_ops(shard, notice: dict, chunk: int = ENQUEUE_CHUNK) -> tuple[list[dict], int]:
    notifications = targets.plan_notices(shard, notice)
    return enqueue_ops(f"{notice['id']}:enqueue:{shard.shard_id}", notice, notifications, chunk), len(notifications)


def escalation_op(shard, now: float, fallback: dict | None) -> dict | None:
    """The escalations due now (one op for all of them), or None."""
    escalated, notifications = targets.plan_escalations(shard, now, fallback)
    if not escalated:
        return None
    digest = hashlib.sha256("|".join(sorted(escalated)).encode()).hexdigest()[:16]
    event = {"id": f"escalation:{digest}", "group": "escalations", "type": "escalation"}
    return _enqueue(f"escalate:{digest}", event, notifications, escalates=escalated)
