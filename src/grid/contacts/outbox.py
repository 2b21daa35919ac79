"""The durable outbox of one shard: every notification accepted, and where its delivery stands.

A *notification* is one message of one event to one customer (``nid``); its *route* is the ordered list of
(contact, channel, address) candidates it may go to: the contact's channels in preference order, then the next
contact with the role (DOMAIN.md section 9). Each candidate has an idempotency key per (event, contact,
channel): the unit sent at most once, however often a send is retried or the log replayed.

Every change is a shard-wide WAL op (``customer_id`` None) applied by :func:`apply`; the op carries every
decision (times, next step, backoff), so a replay rebuilds exactly the same outbox. Op kinds:

=====================  ==================================================================================
``outbox_enqueue``     an event and its notifications (already-known nids are skipped: replays, retries)
``outbox_attempt``     candidates about to be handed to a provider, with a lease (a crash mid-send leaves
                       it ``sending``: after the lease the next try is ambiguous and first looks the
                       message up at the provider, ``grid.contacts.transports``)
``outbox_delivered``   a provider accepted (``sent``) or confirmed (``delivered``) a message
``outbox_failed``      a send failed: ``retry`` the same candidate later (``ambiguous`` when the provider
                       may hold it all the same), ``failover`` to the next one, or ``defer`` the whole
                       notification (quiet hours) until ``not_before``
``outbox_acknowledged``  the recipient acknowledged (reply keyword or link): no escalation
``outbox_compact``     retention (:mod:`grid.contacts.retention`): finished outages and notices shrink to
                       one *done* entry per notification
``outbox_absorb``      a removed shard's outbox handed to a survivor on scale-down (:mod:`grid.contacts.moves`)
=====================  ==================================================================================

Partition moves: notifications, done entries and the events they belong to move with their customer's
partition (:meth:`Outbox.export` / :meth:`Outbox.absorb` / :meth:`Outbox.drop`, see :mod:`grid.contacts.moves`).

States of a notification: ``queued`` -> ``sending`` -> ``sent`` -> ``delivered`` (-> ``acknowledged``), or
``failed`` when every candidate failed. A state never moves backwards (a late ``sent`` after a receipt's
``delivered`` keeps ``delivered``).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from itertools import islice

import msgpack

from grid.contacts import moves
from grid.contacts.retention import compact
from grid.errors import InvalidInput, NotFound, WrongShard

KINDS = ("outbox_enqueue", "outbox_attempt", "outbox_delivered", "outbox_failed", "outbox_acknowledged",
         "outbox_compact", "outbox_absorb")
RANK = {"failed": -1, "queued": 0, "sending": 1, "sent": 2, "delivered": 3, "acknowledged": 4}
HISTORY = 20  # events kept per notification (attempts are counted, not all listed)


def idempotency_key(event_id: str, contact_id: str, channel: str) -> str:
    """The key of one (event, contact, channel): the unit sent at most once."""
    return hashlib.sha256(f"{event_id}|{contact_id}|{channel}".encode()).hexdigest()[:24]


def notification_id(event_id: str, customer_id: str, purpose: str) -> str:
    return "M" + hashlib.sha256(f"{event_id}|{customer_id}|{purpose}".encode()).hexdigest()[:15]


class Outbox:
    """Notifications of one shard and their indexes (rebuilt from the notifications, never stored)."""

    def __init__(self):
        self.events: dict[str, dict] = {}  # outage/notice id -> what was declared
        self.items: dict[str, dict] = {}  # nid -> notification
        self.done: dict[str, list] = {}  # nid -> [group, customer id, final state, attempts]: compacted ones
        # exported to another shard and not yet dropped: served nowhere here (writes on them answer
        # WrongShard), kept so that a failed move can be undone (see grid.contacts.moves)
        self.away: dict[str, dict] = {}
        self.away_done: dict[str, list] = {}
        self._index()

    def _index(self) -> None:
        self.queued: dict[str, None] = {}  # ordered: critical first within an enqueue
        self.leased: dict[str, float] = {}  # nid -> lease end (epoch s)
        self.awaiting_ack: dict[str, float] = {}  # nid -> acknowledge-by (epoch s)
        self.by_group: dict[str, list[str]] = {}
        self.by_customer: dict[str, list[str]] = {}
        self.by_address: dict[str, list[str]] = {}
        self.done_by_group: dict[str, list[str]] = {}
        self._add(self.items.values(), self.done)

    def _add(self, items, done: dict[str, list]) -> None:
        """Index these notifications and done entries (already in ``items`` / ``done``)."""
        for nid, d in done.items():
            self.done_by_group.setdefault(d[0], []).append(nid)
        for n in items:
            self._track(n)
            self.by_group.setdefault(n["group"], []).append(n["nid"])
            self.by_customer.setdefault(n["customer_id"], []).append(n["nid"])
            for c in n["route"]:
                self.by_address.setdefault(c["address"], []).append(n["nid"])

    def _remove(self, items: dict[str, dict], done: dict[str, list]) -> None:
        """Take these notifications and done entries out of the indexes: a partition move takes a few
        percent of a shard's messages per batch, and rebuilding every index for that stalled the shard."""
        for nid in items:
            self.queued.pop(nid, None)
            self.leased.pop(nid, None)
            self.awaiting_ack.pop(nid, None)
        for index, keys, gone in (
                (self.by_group, {n["group"] for n in items.values()}, items),
                (self.by_customer, {n["customer_id"] for n in items.values()}, items),
                (self.by_address, {c["address"] for n in items.values() for c in n["route"]}, items),
                (self.done_by_group, {d[0] for d in done.values()}, done)):
            for k in keys:
                left = [nid for nid in index.get(k, ()) if nid not in gone]
                if left:
                    index[k] = left
                else:
                    index.pop(k, None)

    def _track(self, n: dict) -> None:
        """Keep the queue indexes in step with one notification's state."""
        nid = n["nid"]
        self.queued.pop(nid, None)
        self.leased.pop(nid, None)
        self.awaiting_ack.pop(nid, None)
        if n["state"] == "queued":
            self.queued[nid] = None
        elif n["state"] == "sending":
            self.leased[nid] = n["lease_until"]
        if n.get("ack_by") and n["state"] in ("sent", "delivered") and not n.get("escalated"):
            self.awaiting_ack[nid] = n["ack_by"]

    # -- snapshots ----------------------------------------------------------------------------------------
    # Snapshots hold what was exported and not yet dropped as if it were still here: the source's durable
    # state only loses it at the drop (a recovered shard drops the partitions it no longer owns).
    def to_blob(self) -> bytes:
        return msgpack.packb({"events": self.events, "items": {**self.items, **self.away},
                              "done": {**self.done, **self.away_done}}, use_bin_type=True)

    def digest(self) -> bytes:
        """Order-independent digest for the shard checksum (a replay may interleave shards' ops differently)."""
        h = hashlib.sha256()
        items, done = {**self.items, **self.away}, {**self.done, **self.away_done}
        for nid in sorted(items):
            h.update(msgpack.packb(items[nid], use_bin_type=True))
        for nid in sorted(done):
            h.update(msgpack.packb([nid, done[nid]], use_bin_type=True))
        for g in sorted(self.events):
            h.update(msgpack.packb(self.events[g], use_bin_type=True))
        return h.digest()

    @classmethod
    def from_blob(cls, blob: bytes | None) -> "Outbox":
        box = cls()
        if blob:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            box.events, box.items, box.done = data["events"], data["items"], data.get("done", {})
            box._index()
        return box

    # -- moving partitions (grid.contacts.moves) ------------------------------------------------------------
    def export(self, partitions) -> dict:
        return moves.export(self, partitions)

    def absorb(self, payload: dict | None) -> None:
        moves.absorb(self, payload)

    def drop(self, partitions) -> None:
        moves.drop(self, partitions)

    def reown(self, partitions) -> None:
        moves.reown(self, partitions)

    def partitions_held(self) -> set[int]:
        return moves.partitions_held(self)

    # -- reads --------------------------------------------------------------------------------------------
    def due(self, now: float, limit: int) -> list[dict]:
        """Up to ``limit`` notifications to work on now: queued and ripe, or sending with an expired lease."""
        out = []
        for nid, until in self.leased.items():  # a crashed dispatcher's sends first: they are the oldest
            if until <= now:
                out.append(self.items[nid])
                if len(out) >= limit:
                    return out
        for nid in self.queued:
            n = self.items[nid]
            if n["not_before"] <= now:
                out.append(n)
                if len(out) >= limit:
                    break
        return out

    def overdue(self, now: float) -> list[dict]:
        """Sent critical notifications whose acknowledgement is late and that were not escalated yet."""
        return [self.items[nid] for nid, by in self.awaiting_ack.items() if by <= now]

    def group_status(self, group: str, state: str | None = None, limit: int = 500) -> dict | None:
        """Counts per state and the recipients (up to ``limit``) of one outage or notice on this shard."""
        if group not in self.events:
            return None
        nids = self.by_group.get(group, [])
        done = [self.done[n] for n in self.done_by_group.get(group, [])]  # compacted: counted, not listed
        counts = Counter(self.items[n]["state"] for n in nids)
        counts.update(d[2] for d in done)
        total = len(nids) + len(done)
        attempts = sum(sum(a["n"] for a in self.items[n]["attempts"].values()) for n in nids) + sum(d[3] for d in done)
        legacy = self.events[group].get("retired")  # compacted by an older version: shard-wide counts only
        if legacy:
            counts.update(legacy["counts"])
            total, attempts = total + legacy["total"], attempts + legacy["attempts"]
        # only the rows shown are built: a status page polled during a 100k outage must not view every message
        rows = [public_view(self.items[n]) for n in islice(
            (n for n in nids if state is None or self.items[n]["state"] == state), limit)]
        return {"event": self.events[group], "counts": dict(counts), "total": total,
                "recipients": rows, "attempts": attempts}

    def for_customer(self, customer_id: str) -> list[dict]:
        return [public_view(self.items[n]) for n in self.by_customer.get(customer_id, [])]

    def awaiting_reply(self, address: str) -> list[str]:
        """Notifications sent to ``address`` that wait for an acknowledgement (a reply from that number)."""
        return [nid for nid in self.by_address.get(address, []) if nid in self.awaiting_ack
                or (self.items[nid].get("ack_by") and self.items[nid]["state"] in ("sent", "delivered"))]

    def receipt_target(self, nid: str) -> dict | None:
        return self.items.get(nid)


def public_view(n: dict) -> dict:
    """What a status page shows of a notification (no template variables beyond the message type)."""
    current = n["route"][n["pos"]] if n["pos"] < len(n["route"]) else None
    return {"message_id": n["nid"], "event_id": n["event_id"], "group": n["group"], "type": n["type"],
            "customer_id": n["customer_id"], "priority": n["priority"], "critical": n["critical"],
            "state": n["state"], "contact_id": current["contact_id"] if current else None,
            "channel": current["channel"] if current else None,
            "delivered_via": n.get("delivered_via"), "attempts": sum(a["n"] for a in n["attempts"].values()),
            "created_at": n["created_at"], "updated_at": n["updated_at"],
            "acknowledged_at": n.get("acknowledged_at"), "escalated": bool(n.get("escalated")),
            "history": n["history"][-5:]}


# -- the ops --------------------------------------------------------------------------------------------------
def shard_prepare(shard, op: dict) -> dict:
    """The shard's dispatch-table entry (``grid.shard.OPS``)."""
    if op["kind"] == "outbox_enqueue":
        for i, n in enumerate(op["body"].get("notifications", [])):
            if not shard.owns(n.get("customer_id", "")):  # its partition moved: enqueued here, it would be lost
                raise WrongShard(f"customer {n.get('customer_id')} is not on shard {shard.shard_id}",
                                 field=f"notifications[{i}].customer_id", retry_after=1)
    return prepare(shard.outbox, op)


def shard_apply(shard, op: dict, _prepared) -> tuple[dict, list[str]]:
    return apply(shard.outbox, op), []  # no context changed: no version bump, no re-classification


def _items(op: dict) -> list[dict]:
    items = op["body"].get("items")
    if not isinstance(items, list):
        raise InvalidInput("an outbox op needs a list of items", field="body.items")
    return items


def prepare(box: Outbox, op: dict) -> dict:
    """Check an outbox op against the outbox; mutate nothing (the shard's prepare step)."""
    kind = op["kind"]
    if kind == "outbox_enqueue":
        ev = op["body"].get("event")
        if not isinstance(ev, dict) or not isinstance(ev.get("id"), str):
            raise InvalidInput("an enqueue needs its event", field="body.event")
        for i, n in enumerate(op["body"].get("notifications", [])):
            if not n.get("route"):
                raise InvalidInput("a notification needs at least one candidate", field=f"notifications[{i}]")
        return op
    if kind == "outbox_compact":
        if not isinstance(op["body"].get("before"), str):
            raise InvalidInput("a compaction needs the time before which finished messages go", field="body.before")
        return op
    if kind == "outbox_absorb":
        moves.check_payload(op["body"])
        return op
    for i, it in enumerate(_items(op)):
        nid = it.get("nid")
        if nid not in box.items:
            if nid in box.away:  # exported with its customer's partition: the grid client writes it there
                raise WrongShard(f"message {nid!r} moved to another shard", field=f"items[{i}].nid", retry_after=1)
            raise NotFound(f"no message {nid!r} in this outbox", field=f"items[{i}].nid")
    return op


def apply(box: Outbox, op: dict) -> dict:
    """Apply a prepared outbox op (deterministic: every time and decision is in the op)."""
    kind, body, at = op["kind"], op["body"], op["at"]
    if kind == "outbox_enqueue":
        return _enqueue(box, body, at)
    if kind == "outbox_compact":
        return compact(box, body["before"], at)
    if kind == "outbox_absorb":
        moves.absorb(box, body, shard_wide=True)
        return {"kind": kind, "items": len(body["items"]), "done": len(body["done"])}
    changed = 0
    for it in body["items"]:
        n = box.items[it["nid"]]
        if n["state"] == "acknowledged" or (n["state"] == "failed" and kind not in (
                "outbox_acknowledged", "outbox_delivered")):
            continue  # late news about a finished notification (a delivery receipt still counts)
        if kind == "outbox_attempt":
            _attempt(n, it)
        elif kind == "outbox_delivered":
            _delivered(n, it)
        elif kind == "outbox_failed":
            _failed(n, it)
        elif kind == "outbox_acknowledged":
            if n["state"] != "acknowledged":
                n["state"], n["acknowledged_at"] = "acknowledged", it["at"]
                _log(n, it["at"], "acknowledged", it.get("via", ""))
        n["updated_at"] = it.get("at", at)
        box._track(n)
        changed += 1
    return {"kind": kind, "changed": changed}


def _log(n: dict, at: str, what: str, detail: str) -> None:
    n["history"].append([at, what, detail])
    if len(n["history"]) > HISTORY:
        del n["history"][1:2]  # keep the first entry (queued) and the latest ones


def _enqueue(box: Outbox, body: dict, at: str) -> dict:
    ev = body["event"]
    group = ev.get("group", ev["id"])
    if group not in box.events:
        box.events[group] = dict(ev)
    else:
        if ev.get("update"):
            box.events[group] = {**box.events[group], **ev["update"]}
        if ev.get("audit"):  # who declared, restored or re-sent it, and when: entries accumulate
            known = box.events[group].get("audit") or []
            box.events[group] = {**box.events[group], "audit": known + [e for e in ev["audit"] if e not in known]}
    if box.events[group].get("retired"):  # compacted by an older version, which kept no done entries
        return {"kind": "outbox_enqueue", "event_id": ev["id"], "added": 0}
    for nid in body.get("escalates", []):
        if nid in box.items:
            box.items[nid]["escalated"] = True
            _log(box.items[nid], at, "escalated", "not acknowledged in time")
            box._track(box.items[nid])
    added = 0
    for n in body.get("notifications", []):
        if n["nid"] in box.items or n["nid"] in box.done:
            continue  # the same event enqueued again (a retried request or a replay): already accepted
        rec = {**n, "group": group, "pos": n.get("pos", 0), "state": "queued", "attempts": {},
               "not_before": n.get("not_before", 0.0), "lease_until": 0.0, "created_at": at, "updated_at": at,
               "history": [[at, "queued", ""]]}
        box.items[n["nid"]] = rec
        box._add((rec,), {})
        added += 1
    return {"kind": "outbox_enqueue", "event_id": ev["id"], "added": added}


def _attempt(n: dict, it: dict) -> None:
    pos = int(it["pos"])
    key = n["route"][pos]["key"]
    a = n["attempts"].setdefault(key, {"n": 0, "status": "", "provider_id": None, "error": None})
    if a["status"] == "sending":  # the last try never reported (a crash, a lease run out): it may have gone
        a["ambiguous"] = True
    a.setdefault("since", it["at"])  # the first try: a lookup at the provider searches from there
    a["n"] += 1
    a["status"] = "sending"
    n["pos"] = pos  # the dispatcher may skip candidates in quiet hours or without a transport
    if n["state"] == "queued":
        n["state"] = "sending"
    n["lease_until"] = float(it["lease_until"])
    _log(n, it["at"], "attempt", f"{n['route'][pos]['channel']} {n['route'][pos]['contact_id']} #{a['n']}")


def _delivered(n: dict, it: dict) -> None:
    key = it["key"]
    status = it.get("status", "sent")
    a = n["attempts"].setdefault(key, {"n": 0, "status": "", "provider_id": None, "error": None})
    if status == "sent" and a["status"] == "failed":
        _log(n, it["at"], "sent", "after its failure receipt: kept failed")  # the receipt came first
        return
    if RANK.get(a["status"], 0) < RANK[status]:
        a["status"] = status
    a["provider_id"] = it.get("provider_id") or a["provider_id"]
    if RANK[status] > RANK[n["state"]] or n["state"] == "queued":
        n["state"] = status
    cand = next((c for c in n["route"] if c["key"] == key), None)
    if cand is not None:
        n["delivered_via"] = {"contact_id": cand["contact_id"], "channel": cand["channel"]}
    if n.get("ack_within_s") and not n.get("ack_by") and it.get("sent_epoch") is not None:
        n["ack_by"] = float(it["sent_epoch"]) + float(n["ack_within_s"])
    _log(n, it["at"], status, it.get("provider_id") or "")


def _failed(n: dict, it: dict) -> None:
    key, step = it.get("key"), it["next"]
    if key is not None:
        a = n["attempts"].setdefault(key, {"n": 0, "status": "", "provider_id": None, "error": None})
        a["status"], a["error"] = "failed", it.get("error")
        if it.get("ambiguous"):  # the provider may hold it: the next try looks it up first (transports.py)
            a["ambiguous"] = True
        current = n["route"][n["pos"]]["key"] if n["pos"] < len(n["route"]) else None
        if key != current:  # a late failure receipt for a candidate already left behind
            _log(n, it["at"], "failed", f"{it.get('error')} (earlier candidate)")
            return
    if n["state"] == "delivered" or (n["state"] == "sent" and step != "failover"):
        return  # the message got through: a late failure of an earlier try changes nothing
    if step == "retry" or step == "defer":
        n["state"], n["not_before"] = "queued", float(it["not_before"])
    elif step == "failover":
        n["pos"] = int(it.get("pos", n["pos"])) + 1
        n["not_before"] = float(it.get("not_before", 0.0))
        n["state"] = "queued" if n["pos"] < len(n["route"]) else "failed"
    elif step == "exhausted":
        n["state"] = "failed"
    n["lease_until"] = 0.0
    _log(n, it["at"], step, it.get("error") or "")
