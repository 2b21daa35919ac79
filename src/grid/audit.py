"""The audit log: who changed which customer, when, through which route, and what changed.

The gateway stamps each customer write op with an ``audit`` block (key id, role, method, route, request id,
what changed); the shard records it when it applies the op, so the entry rides in the same WAL record as the
change itself: it is durable exactly when the change is, replays with it, moves with the customer's
partition and is held by snapshots (a capability of ``grid.shard.Shard``). Operators read it with
``GET /v1/audit?customer=``.

Besides what the request said (``changes``: a patch body, the parts a replacement named), an entry of a
patch or a replacement holds what really changed in the context (``diff``: path, from, to), computed by the
shard from the record before and after the write, so a console that writes a whole context back to change
one service point's load priority is recorded as exactly that change.

Outages are not customer writes: who declared or restored one, when and with what, is kept with the event
itself in every shard's outbox (``grid.contacts``) and read with ``GET /v1/outages/{id}/audit``.
"""
from __future__ import annotations

import hashlib
from collections import deque

import msgpack

PER_CUSTOMER = 10_000  # newest entries kept per customer (older ones remain in the WAL and old snapshots)
FIELDS = ("key_id", "role", "method", "route", "request_id", "changes")
DIFF_KINDS = ("patch", "replace")  # the writes whose entry carries the context's diff
DIFF_LIMIT = 50  # changed paths kept per entry (a bulk replacement says "and more")
_IGNORED = {"version", "updated_at"}  # bookkeeping every write changes
_IDS = ("contact_id", "account_id", "service_point_id", "note_id", "payment_id", "entity_id")


def audit_block(key_id: str, role: str, method: str, route: str, request_id: str | None, changes) -> dict:
    """The ``audit`` field of a write op (set by the gateway)."""
    return {"key_id": key_id, "role": role, "method": method, "route": route, "request_id": request_id,
            "changes": changes}


class AuditLog:
    """Per customer, its audit entries oldest first."""

    def __init__(self):
        self.entries: dict[str, deque] = {}

    def record(self, op: dict, version: int | None, before: dict | None = None, after: dict | None = None) -> None:
        """Keep the op's audit block (deterministic: ``at`` and ``write_id`` come from the op), with the diff
        of the context ``before`` and ``after`` the write when both are given."""
        block, cid = op.get("audit"), op.get("customer_id")
        if not block or cid is None:
            return
        entry = {k: block.get(k) for k in FIELDS}
        entry.update(customer_id=cid, kind=op["kind"], write_id=op["write_id"], at=op.get("at"), version=version)
        if before is not None and after is not None:
            entry["diff"] = diff(before, after)
        self.entries.setdefault(cid, deque(maxlen=PER_CUSTOMER)).append(entry)

    def record_each(self, op: dict, rows: dict[str, dict], versions: dict[str, int]) -> None:
        """An op over many customers (an import push, ``customer_id`` None): one entry on each customer it named,
        its ``changes`` the op's plus that customer's rows (``{"accepted", "quarantined"}``)."""
        block = op.get("audit")
        if not block:
            return
        for cid in sorted(rows):
            entry = {k: block.get(k) for k in FIELDS}
            entry["changes"] = {**(block.get("changes") or {}), **rows[cid]}
            entry.update(customer_id=cid, kind=op["kind"], write_id=op["write_id"], at=op.get("at"),
                         version=versions.get(cid))
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


def diff(before, after, path: str = "") -> list[dict]:
    """What changed from ``before`` to ``after``: ``[{"path", "from", "to"}]``, lists of parts matched by
    their id (``accounts[AC1].service_points[SP1].load_priority``), at most :data:`DIFF_LIMIT` entries."""
    out: list[dict] = []
    _diff(before, after, path, out)
    if len(out) > DIFF_LIMIT:
        out = out[:DIFF_LIMIT] + [{"path": "…", "from": None, "to": f"{len(out) - DIFF_LIMIT} more changes"}]
    return out


def _diff(a, b, path: str, out: list) -> None:
    if a == b:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in _IGNORED:
                _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), out)
        return
    key = _id_key(a, b)
    if key is not None:
        old, new = {x[key]: x for x in a or []}, {x[key]: x for x in b or []}
        for i in sorted(set(old) | set(new), key=str):
            _diff(old.get(i), new.get(i), f"{path}[{i}]", out)
        return
    out.append({"path": path, "from": a, "to": b})


def _id_key(a, b) -> str | None:
    """The id field of a list of parts (contacts, accounts, service points...), if both sides are one."""
    items = [x for side in (a, b) if isinstance(side, list) for x in side]
    if not items or not all(isinstance(x, dict) for x in items) or not all(
            isinstance(side, list) or side is None for side in (a, b)):
        return None
    return next((k for k in _IDS if all(k in x for x in items)), None)
