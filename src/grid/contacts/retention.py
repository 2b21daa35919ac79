"""Retention of the outbox: the ``outbox_compact`` op.

Every outage or notice whose notifications are all finished and last changed before ``before`` (an ISO time
in the op) is retired: each notification shrinks to its *done* entry (group, customer, final state,
attempts), which keeps the counts of the status page, moves with its customer's partition
(:mod:`grid.contacts.moves`), and makes a later enqueue of the same notification (a replayed or retried
declaration) add nothing, so nothing is sent twice after compaction.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grid.contacts.outbox import Outbox

FINISHED = frozenset({"sent", "delivered", "acknowledged", "failed"})  # nothing more will be sent


def compact(box: Outbox, before: str, at: str) -> dict:
    """Retire every group whose notifications are all finished, none awaiting an acknowledgement, and all last
    changed before ``before`` (ISO times compare as text: the shard stamps them all in one format): each of
    them shrinks to its done entry.

    Deterministic in (outbox, op): groups are visited in sorted order and every time comes from the op.
    """
    retired, dropped = [], 0
    for group in sorted(box.events):
        nids = box.by_group.get(group, [])
        if not nids:
            continue
        ns = [box.items[n] for n in nids]
        if all(n["state"] in FINISHED and n["nid"] not in box.awaiting_ack and n["updated_at"] < before
               for n in ns):
            for n in ns:
                box.done[n["nid"]] = [group, n["customer_id"], n["state"],
                                      sum(a["n"] for a in n["attempts"].values())]
                del box.items[n["nid"]]
            retired.append(group)
            dropped += len(nids)
    if dropped:
        box._index()  # the indexes are derived from the items
    return {"kind": "outbox_compact", "retired": retired, "dropped": dropped, "at": at}
