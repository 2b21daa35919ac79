"""A shard's import state: where each source's streams stand, and a key index for linking rows.

``ImportState`` is the one attribute the shard holds for imports (``shard.imports``); it travels in snapshots
through :meth:`to_blob` / :meth:`from_blob` and changes only by ``import_rows`` ops (``grid.imports.apply``),
so the WAL record that applies a batch's rows also moves its position: both or neither survive a crash.

Positions: ``positions[source][stream] = (offset, position dict)``. A shard skips any row whose offset is at
or below its stream's offset, which makes a replayed batch (a restarted importer resumes at the lowest
position over the shards) a no-op where it was applied and an apply where it was not.

The key index (``account_id``/``meter_id`` -> customer) is derived state, rebuilt lazily from the records and
kept current from the shard's change log, so it costs nothing in snapshots and cannot disagree with them.
"""
from __future__ import annotations

from collections import deque

import msgpack

REJECTED_KEEP = 10_000  # rows a shard refused (state-dependent checks), kept for the quarantine view
PUSH_STREAMS_KEEP = 10_000  # idempotency-keyed pushes remembered per source (a retry older than this re-applies
# as a no-op: its rows are keyed by content)


class ImportState:
    """See the module docstring."""

    def __init__(self):
        self.positions: dict[str, dict[str, list]] = {}  # source -> stream -> [offset, position]
        self.rejected: dict[str, deque] = {}  # source -> recent refused rows (offset, stream, field, reason)
        self.applied_rows: dict[str, int] = {}  # source -> rows applied here (progress)
        self._index_seq = -1
        self._accounts: dict[str, str] = {}
        self._meters: dict[str, tuple[str, str, int]] = {}
        self._bill_ids: set[str] | None = None

    # -- positions ----------------------------------------------------------------------------------------
    def offset(self, source: str, stream: str) -> int:
        return int(self.positions.get(source, {}).get(stream, (0, None))[0])

    def advance(self, source: str, position: dict) -> None:
        streams = self.positions.setdefault(source, {})
        stream = str(position["stream"])
        if int(position["offset"]) >= self.offset(source, stream):
            streams[stream] = [int(position["offset"]), position]
        if stream.startswith("push:") and len(streams) > PUSH_STREAMS_KEEP:
            # every keyed push is its own stream: forget the oldest (insertion order, so a replay agrees)
            oldest = next(s for s in streams if s.startswith("push:"))
            del streams[oldest]

    def reject(self, source: str, entries: list[dict]) -> None:
        q = self.rejected.setdefault(source, deque(maxlen=REJECTED_KEEP))
        q.extend(entries)

    def view(self, source: str) -> dict:
        """This shard's part of a source's progress: positions per stream, rows applied, rows refused."""
        return {"streams": {s: p[1] for s, p in self.positions.get(source, {}).items()},
                "applied": self.applied_rows.get(source, 0), "rejected": list(self.rejected.get(source, ()))}

    # -- snapshots ----------------------------------------------------------------------------------------
    def to_blob(self) -> bytes:
        return msgpack.packb({"positions": self.positions, "applied": self.applied_rows,
                              "rejected": {k: list(v) for k, v in self.rejected.items()}}, use_bin_type=True)

    @classmethod
    def from_blob(cls, blob: bytes) -> "ImportState":
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        st = cls()
        st.positions = data["positions"]
        st.applied_rows = data["applied"]
        st.rejected = {k: deque(v, maxlen=REJECTED_KEEP) for k, v in data["rejected"].items()}
        return st

    # -- key index ----------------------------------------------------------------------------------------
    def _index(self, shard) -> None:
        if self._index_seq == shard.change_seq:
            return
        if self._index_seq < 0:
            changed = None
        else:
            _, changed = shard.changes_since(self._index_seq)
        if changed is None:
            self._accounts, self._meters = {}, {}
            changed = list(shard.records)
        for cid in set(changed):
            rec = shard.records.get(cid)
            if rec is None:
                continue
            for a in rec["accounts"]:
                self._accounts[a["account_id"]] = cid
                for sp in a["service_points"]:
                    if sp.get("meter_id"):
                        self._meters[sp["meter_id"]] = (cid, sp["service_point_id"], int(sp["interval_minutes"]))
        self._index_seq = shard.change_seq

    def lookup(self, shard, keys: dict[str, list[str]]) -> dict[str, dict[str, list]]:
        """kind -> value -> [customer_id, service_point_id | None, interval_minutes | None] for keys held here."""
        out: dict[str, dict[str, list]] = {}
        for cid in keys.get("customer_id", ()):
            if cid in shard.records:
                out.setdefault("customer_id", {})[cid] = [cid, None, None]
        for sp in keys.get("service_point_id", ()):
            owner = shard.sp_owner.get(sp)
            if owner is not None:
                out.setdefault("service_point_id", {})[sp] = [owner[0], sp, owner[1]]
        if keys.get("account_id") or keys.get("meter_id"):
            self._index(shard)
            for a in keys.get("account_id", ()):
                c = self._accounts.get(a)
                if c is not None and c in shard.records:
                    out.setdefault("account_id", {})[a] = [c, None, None]
            for m in keys.get("meter_id", ()):
                hit = self._meters.get(m)
                if hit is not None and hit[0] in shard.records:
                    out.setdefault("meter_id", {})[m] = list(hit)
        return out

    def bill_ids(self, shard) -> set[str]:
        if self._bill_ids is None:
            self._bill_ids = set(shard.bills.table.column("bill_id").to_pylist())
        return self._bill_ids
