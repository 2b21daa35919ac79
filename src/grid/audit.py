"""The audit log: who changed which customer, when, through which route, and what changed.

The gateway stamps each customer write op with an ``audit`` block (key id, role, method, route, request id,
what changed); the shard records it when it applies the op, so the entry rides in the same WAL record as the
change itself: it is durable exactly when the change is, replays with it, moves with the customer's
partition and is held by snapshots (a capability of ``grid.shard.Shard``). Operators read it with
``GET /v1/audit?customer=``.
"""
from __future__ import annotations

import hashlib
from collections import deque

import msgpack

PER_CUSTOMER = 10_000  # newest entries kept per customer (older ones remain in the WAL and old snapshots)
FIELDS = ("key_id", "role", "method", "route", "request_id", "changes")


def audit_block(key_id: str, role: str, method: str, route: str, request_id: str | None, changes) -> dict:
    """The ``audit`` field of a write op (set by the gateway)."""
    return {"key_id": key_id, "role": role, "method": method, "route": route, "request_id": request_id,
            "changes": changes}


class AuditLog:
    """Per customer, its audit entries oldest first."""

    def __init__(self):
        self.entries: dict[str, deque] = {}

    def record(self, op: dict, version: int | None) -> None:
        """Keep the op's audit block (deterministic: ``at`` and ``write_id`` come from the op)."""
        block, cid = op.get("audit"), op.get("customer_id")
        if not block or cid is None:
            return
        entry = {k: block.get(k) for k in FIELDS}
        entry.update(customer_id=cid, kind=op["kind"], write_id=op["write_id"], at=op.get("at"), version=version)
        self.entries.setdefault(cid, deque(maxlen=PER_CUSTOMER)).append(entry)

    def of(self, customer_id: str, limit: int = 100) -> list[dict]:
        """The newest ``limit`` entries of a customer, newest first."""
        got = self.entries.get(customer_id) or ()
        return list(reversed(list(got)[-limit:]))

    # -- moving partitions, snapshots, checksum ---------------------------------------------------------------
    def export(self, customer_ids: set[str]) -> dict:
        return {c: list(self.entries[c]) for c in customer_ids if c in self.entries}

    def absorb(self, payload: dict | None) -> None:
        for c, items in (payload or {}).items():
            self.entries[c] = deque(items, maxlen=PER_CUSTOMER)

    def drop(self, customer_ids: set[str]) -> None:
        for c in customer_ids:
            self.entries.pop(c, None)

    def to_blob(self) -> bytes:
        return msgpack.packb({c: list(e) for c, e in self.entries.items()}, use_bin_type=True)

    @classmethod
    def from_blob(cls, blob: bytes) -> "AuditLog":
        out = cls()
        out.absorb(msgpack.unpackb(blob, raw=False, strict_map_key=False))
        return out

    def digest(self) -> bytes:
        h = hashlib.sha256()
        for c in sorted(self.entries):
            h.update(msgpack.packb([c, list(self.entries[c])], use_bin_type=True))
        return h.digest()
