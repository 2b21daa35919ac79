"""Outbox state moving with partitions: a customer's notifications follow it to its new shard.

What moves with a partition (:func:`export` at the source, :func:`absorb` at the destination, :func:`drop` at
the source once the partition table points at the destination):

- every notification of the partition's customers, whatever its state: queued (pending), ``sending`` with
  its lease (in flight: the dispatcher's result is written where the message now is, see
  ``grid.cluster.Grid.aoutbox_write``), finished ones with their attempts per idempotency key (what was
  already sent, so a replayed declaration or a retry sends nothing twice);
- the *done* entries of compacted notifications (the sent-keys that keep at-most-once after retention);
- a copy of the event (outage or notice) each of them belongs to, merged into the destination's copy.

The source stops serving what it exported at once (it leaves ``items``, its indexes and every read; a write
on it answers WrongShard), but keeps it in ``away`` until the drop, so that a move whose import failed is
undone by :func:`reown` and a snapshot taken meanwhile still holds it.

Shard-wide state (an event's counts compacted by an older version, events that no customer's notification
names) does not belong to a partition: on scale-down the grid hands a removed shard's remainder to a
survivor as one ``outbox_absorb`` op through the survivor's WAL (:func:`handover`).

Every function is deterministic in (outbox, arguments): ``outbox_absorb`` replays to the same state.
"""
from __future__ import annotations

from grid.errors import InvalidInput
from grid.partitions import partition_of


def export(box, partitions) -> dict:
    """Take the notifications of ``partitions`` out of service here; returns what the destination absorbs."""
    ps = set(int(p) for p in partitions)
    items = {nid: n for nid, n in box.items.items() if partition_of(n["customer_id"]) in ps}
    done = {nid: d for nid, d in box.done.items() if partition_of(d[1]) in ps}
    groups = {n["group"] for n in items.values()} | {d[0] for d in done.values()}
    for nid in items:
        del box.items[nid]
    for nid in done:
        del box.done[nid]
    box.away.update(items)
    box.away_done.update(done)
    box._remove(items, done)
    return {"items": items, "done": done,
            "events": {g: _movable(box.events[g]) for g in sorted(groups) if g in box.events}}


def absorb(box, payload: dict | None, shard_wide: bool = False) -> None:
    """Take over exported notifications (a partition move) or a removed shard's whole outbox (``shard_wide``:
    legacy compacted counts are added to this shard's, as they belong to no partition)."""
    if not payload:
        return
    for g, ev in payload["events"].items():
        box.events[g] = merge_event(box.events.get(g), ev if shard_wide else _movable(ev))
        theirs = ev.get("retired") if shard_wide else None
        if theirs:
            mine = box.events[g].get("retired") or {"at": theirs["at"], "total": 0, "counts": {}, "attempts": 0}
            counts = dict(mine["counts"])
            for k, v in theirs["counts"].items():
                counts[k] = counts.get(k, 0) + v
            box.events[g]["retired"] = {"at": max(mine["at"], theirs["at"]), "total": mine["total"] + theirs["total"],
                                        "counts": dict(sorted(counts.items())),
                                        "attempts": mine["attempts"] + theirs["attempts"]}
    items = {nid: n for nid, n in payload["items"].items() if nid not in box.items}  # (a retried absorb)
    done = {nid: d for nid, d in payload["done"].items() if nid not in box.done}
    box.items.update(items)
    box.done.update(done)
    box._add(items.values(), done)


def drop(box, partitions) -> None:
    """Forget the notifications of ``partitions`` (exported ones, and any still here: a recovered shard
    dropping partitions that moved while it was down)."""
    ps = set(int(p) for p in partitions)
    served = {nid: n for nid, n in box.items.items() if partition_of(n["customer_id"]) in ps}
    served_done = {nid: d for nid, d in box.done.items() if partition_of(d[1]) in ps}
    for store, gone in ((box.items, served), (box.done, served_done)):
        for nid in gone:
            del store[nid]
    box._remove(served, served_done)
    for store in (box.away, box.away_done):  # out of the indexes since the export
        for nid in [nid for nid, x in store.items() if partition_of(x["customer_id"] if isinstance(x, dict)
                                                                     else x[1]) in ps]:
            del store[nid]


def reown(box, partitions) -> None:
    """Undo an export whose import failed: serve its notifications here again."""
    ps = set(int(p) for p in partitions)
    items = {nid: box.away.pop(nid) for nid in [nid for nid, n in box.away.items()
                                                if partition_of(n["customer_id"]) in ps]}
    done = {nid: box.away_done.pop(nid) for nid in [nid for nid, d in box.away_done.items()
                                                    if partition_of(d[1]) in ps]}
    box.items.update(items)
    box.done.update(done)
    box._add(items.values(), done)


def partitions_held(box) -> set[int]:
    """Partitions of every customer with a notification or a done entry here (served or away)."""
    return ({partition_of(n["customer_id"]) for s in (box.items, box.away) for n in s.values()}
            | {partition_of(d[1]) for s in (box.done, box.away_done) for d in s.values()})


def handover(box) -> dict:
    """Everything a shard about to be removed still holds, as the body of an ``outbox_absorb`` op."""
    return {"items": dict(box.items), "done": dict(box.done), "events": dict(box.events)}


def check_payload(body) -> None:
    """Shape check of an ``outbox_absorb`` body (the op's prepare)."""
    for part in ("items", "done", "events"):
        if not isinstance(body, dict) or not isinstance(body.get(part), dict):
            raise InvalidInput(f"an outbox handover needs its {part}", field=f"body.{part}")


def _movable(ev: dict) -> dict:
    """An event as it travels with a partition: without the shard-wide legacy counts (they stay behind)."""
    return {k: v for k, v in ev.items() if k != "retired"}


def merge_event(mine: dict | None, theirs: dict) -> dict:
    """Two shards' copies of one event as one: fields one copy lacks come from the other, a restoration on
    either side wins, audit entries are united in order (each shard got the same declaration)."""
    if mine is None:
        return dict(theirs)
    out = dict(mine)
    for k, v in theirs.items():
        if out.get(k) is None and k != "retired":
            out[k] = v
    if theirs.get("state") == "restored" and mine.get("state") != "restored":
        out["state"], out["restored_at"] = "restored", theirs.get("restored_at")
    audit = list(mine.get("audit") or [])
    audit += [e for e in theirs.get("audit") or [] if e not in audit]
    if audit:
        out["audit"] = sorted(audit, key=lambda e: (e.get("at") or "", e.get("action") or ""))
    return out
