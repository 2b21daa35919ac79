"""One shard's customers: context records, columnar usage and bills, and the writes on them.

This is a plain class, tested without Ray; ``grid.shard_actor`` wraps it in a Ray actor and adds durability.
Writes are deterministic functions of ``(state, op)``: the actor logs ``op`` to the write-ahead log and a replay
applies the same ops in the same order to rebuild the same state. Every op carries a ``write_id``; an op whose
id was already applied returns its first result again (idempotent retries from clients, the gateway or Ray).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict, deque
from pathlib import Path

import msgpack
import numpy as np

from grid import context as ctx
from grid.base import read_chunk, read_entities, read_manifest
from grid.bills import BillStore
from grid.decisions import state as decision_ops  # decisions: events, decisions, responses, churn scores
from grid.errors import Conflict, InvalidInput, NotFound, PreconditionFailed, WrongShard
from grid.identity import ops as identity_ops  # identity: its write kinds
from grid.identity.index import IdentityIndex  # identity: per-shard index and durable state
from grid.imports import apply as imports_op  # imports: the import_rows op (grid.imports.apply)
from grid.imports.state import ImportState
from grid.partitions import PARTITIONS, partition_of
from grid.timegrid import DEFAULT_TIMEZONE, calendar, month_bounds
from grid.usage import UsageStore, drop_rows, extract_rows, insert_rows

APPLIED_WRITE_IDS = 200_000  # idempotency memory: far more than any retry window
CHANGE_LOG = 100_000  # recent changed customer ids kept for gateway near-cache invalidation


class Shard:
    """State of one shard; see the module docstring."""

    def __init__(self, shard_id: int, partitions: list[int] | None = None, timezone: str = DEFAULT_TIMEZONE):
        self.shard_id = shard_id
        self.timezone = timezone
        self.owned = np.zeros(PARTITIONS, dtype=bool)
        for p in partitions or []:
            self.owned[p] = True
        self.records: dict[str, dict] = {}
        self.usage: dict[int, UsageStore] = {}
        self.sp_owner: dict[str, tuple[str, int]] = {}  # service point -> (customer, interval minutes)
        self.bills = BillStore()
        self.applied: OrderedDict[str, dict] = OrderedDict()
        self.change_seq = 0
        self.decisions = decision_ops.DecisionState()  # decisions: events, contact history, audit, propensity
        self.bill_status: dict[str, list] = {}  # period -> outcomes of the latest runs (grid.billrun.BillStatus)
        self.changes: deque[tuple[int, str]] = deque(maxlen=CHANGE_LOG)
        self._entities: dict | None = None
        self._sorted_ids: list[str] = []
        self._membership_dirty = True
        self.identity = IdentityIndex()  # identity: keys of these customers, links, reviews, merges
        self.imports = ImportState()  # imports: source positions, refused rows, key index

    # -- loading ------------------------------------------------------------------------------------------
    def load_chunk(self, base_dir: str, chunk: int) -> int:
        """Take this shard's customers from one chunk of a generated base; returns how many."""
        return self.apply_chunk(self.read_chunk(base_dir, chunk))

    def read_chunk(self, base_dir: str, chunk: int):
        """Read (not apply) this shard's part of a chunk: safe to run in threads beside each other."""
        manifest = read_manifest(base_dir)
        entities = self._entities
        if entities is None:
            entities = self._entities = read_entities(base_dir)
        return read_chunk(base_dir, chunk, self.owned, entities, manifest["months"])

    def apply_chunk(self, part) -> int:
        """Add a chunk read by :meth:`read_chunk` to the state (one at a time: it mutates the stores)."""
        self._membership_dirty = True
        self.identity.invalidate()  # identity: rebuilt on first use, not per loaded record
        for rec in part.records:
            self.records[rec["customer_id"]] = rec
        for rec in part.records:
            for a in rec["accounts"]:
                for sp in a["service_points"]:
                    self.sp_owner[sp["service_point_id"]] = (rec["customer_id"], int(sp["interval_minutes"]))
        by_interval: dict[int, tuple[list, list]] = {}
        for sp, iv, solar in zip(part.sp_ids, part.sp_interval, part.sp_solar):
            ids, sol = by_interval.setdefault(iv, ([], []))
            ids.append(sp)
            sol.append(solar)
        for iv, (ids, sol) in by_interval.items():
            self._store(iv).add_service_points(ids, sol)
        for month, (sp_ids, imp, exp, has_exp) in part.usage.items():
            iv = self.sp_owner[sp_ids[0]][1]
            store = self._store(iv)
            rows = np.fromiter((store.row_of[s] for s in sp_ids), dtype=np.int64, count=len(sp_ids))
            store.put_month(month, rows, imp, exp, has_exp)
        if part.bills is not None:
            self.bills.append(part.bills)
        return len(part.records)

    def finish_load(self) -> None:
        self._entities = None

    def _store(self, interval_minutes: int) -> UsageStore:
        s = self.usage.get(interval_minutes)
        if s is None:
            s = self.usage[interval_minutes] = UsageStore(interval_minutes, self.timezone)
        return s

    # -- reads --------------------------------------------------------------------------------------------
    def record(self, customer_id: str) -> dict:
        rec = self.records.get(customer_id)
        if rec is None:
            if not self.owns(customer_id):
                raise WrongShard(f"customer {customer_id} is not on shard {self.shard_id}", retry_after=1)
            raise NotFound(f"no customer {customer_id!r}", field="id")
        return rec

    def get(self, customer_id: str) -> dict:
        return self.record(customer_id)

    def get_many(self, customer_ids: list[str]) -> list[dict | None]:
        return [self.records.get(c) for c in customer_ids]

    def accounts(self, customer_id: str) -> list[dict]:
        return self.record(customer_id)["accounts"]

    def customer_bills(self, customer_id: str, period: str | None = None,
                       account_id: str | None = None) -> list[dict]:
        accounts = [a["account_id"] for a in self.record(customer_id)["accounts"]]
        if account_id is not None:
            if account_id not in accounts:
                raise NotFound(f"no account {account_id!r} on customer {customer_id}", field="account_id")
            accounts = [account_id]
        return self.bills.for_accounts(accounts, period)

    def customer_usage(self, customer_id: str, month: str, service_point_id: str | None = None,
                       resolution: str = "interval") -> dict:
        """Usage of one month per service point, at interval, daily or monthly resolution (Wh)."""
        rec = self.record(customer_id)
        sps = [sp for a in rec["accounts"] for sp in a["service_points"]]
        if service_point_id is not None:
            sps = [sp for sp in sps if sp["service_point_id"] == service_point_id]
            if not sps:
                raise NotFound(f"no service point {service_point_id!r} on customer {customer_id}",
                               field="service_point_id")
        start, end = month_bounds(month)
        items = []
        for sp in sps:
            iv = int(sp["interval_minutes"])
            store = self._store(iv)
            row = store.row_of.get(sp["service_point_id"])
            cal = calendar(start, end, iv, self.timezone)
            if row is None:
                imp = exp = np.zeros(cal.n, np.int64)
            else:
                imp, exp = store.series(row, month)
            if resolution == "interval":
                keys = cal.utc_start
            elif resolution == "daily":
                keys = cal.day
            else:
                keys = np.zeros(cal.n, np.int64)
            uniq, first = np.unique(keys, return_index=True)
            imp_sum = np.add.reduceat(imp.astype(np.int64), first) if cal.n else imp
            exp_sum = np.add.reduceat(exp.astype(np.int64), first) if cal.n else exp
            for k, i, e, f in zip(uniq, imp_sum, exp_sum, first):
                ts = dt.datetime.fromtimestamp(int(cal.utc_start[f]), dt.timezone.utc)
                items.append({"service_point_id": sp["service_point_id"],
                              "start": ts.isoformat().replace("+00:00", "Z"),
                              "import_wh": int(i), "export_wh": int(e)})
        return {"customer_id": customer_id, "month": month, "resolution": resolution, "items": items}

    def sp_owners(self, sp_ids: list[str]) -> dict[str, str]:
        """Which of these service points this shard holds, and for which customer."""
        return {sp: self.sp_owner[sp][0] for sp in sp_ids if sp in self.sp_owner}

    def _ids_sorted(self) -> list[str]:
        """Customer ids in order, re-sorted only when customers were added or removed (not on every page)."""
        if self._membership_dirty or len(self._sorted_ids) != len(self.records):
            self._sorted_ids = sorted(self.records)
            self._membership_dirty = False
        return self._sorted_ids

    def list(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        """Up to ``limit`` summaries with ``customer_id > after``, in id order, passing ``filters``."""
        import bisect

        ids = self._ids_sorted()
        out = []
        for cid in ids[bisect.bisect_right(ids, after) if after is not None else 0:]:
            rec = self.records.get(cid)
            if rec is None:
                continue
            if ctx.matches(rec, filters):
                out.append(ctx.summary(rec))
                if len(out) >= limit:
                    break
        return out

    def stats(self) -> dict:
        return {"shard": self.shard_id, "customers": len(self.records),
                "service_points": len(self.sp_owner), "partitions": int(self.owned.sum()),
                "bills": self.bills.table.num_rows,
                "usage_bytes": int(sum(b.imp.nbytes + b.exp.nbytes for s in self.usage.values()
                                       for b in s.months.values()))}

    def checksum(self) -> str:
        """A digest over every context (records, usage and bills), order independent of load order."""
        h = hashlib.sha256()
        for cid in sorted(self.records):
            h.update(msgpack.packb(self.records[cid], use_bin_type=True))
        for iv in sorted(self.usage):
            s = self.usage[iv]
            order = np.argsort(np.array(s.sp_ids, dtype=object)) if s.sp_ids else np.zeros(0, np.int64)
            for month in sorted(s.months):
                for r in order:
                    imp, exp = s.series(int(r), month)
                    h.update(s.sp_ids[r].encode())
                    h.update(np.ascontiguousarray(imp).tobytes())
                    h.update(np.ascontiguousarray(exp).tobytes())
        t = self.bills.table.sort_by("bill_id")
        for col in ("bill_id", "total_cents"):
            h.update(repr(t.column(col).to_pylist()).encode())
        return h.hexdigest()

    def changed(self, customer_id: str) -> None:
        """Record that a context changed, for caches that watch this shard."""
        self.change_seq += 1
        self.changes.append((self.change_seq, customer_id))
        self.identity.on_changed(customer_id, self.records.get(customer_id))  # identity: keys follow every write

    def changes_since(self, seq: int) -> tuple[int, list[str] | None]:
        """(current seq, customers changed after ``seq``); None when ``seq`` is too old to tell."""
        if seq >= self.change_seq:
            return self.change_seq, []
        if not self.changes or self.changes[0][0] > seq + 1:
            return self.change_seq, None
        return self.change_seq, [c for s, c in self.changes if s > seq]

    # -- moving partitions ------------------------------------------------------------------------------------
    def _customers_in(self, partitions: list[int]) -> list[str]:
        ps = set(partitions)
        return [c for c in self.records if partition_of(c) in ps]

    def export_partitions(self, partitions: list[int]) -> dict:
        """Stop owning ``partitions`` and hand back everything held for them (the data stays until dropped)."""
        self.owned[partitions] = False
        cids = self._customers_in(partitions)
        cset = set(cids)
        sps = {iv: [sp for sp, (c, i) in self.sp_owner.items() if c in cset and i == iv] for iv in self.usage}
        t = self.bills.table
        import pyarrow as pa
        import pyarrow.compute as pc
        mask = pc.is_in(t.column("customer_id"), value_set=pa.array(sorted(cset), pa.string()))
        return {"partitions": list(partitions), "records": {c: self.records[c] for c in cids},
                "usage": [extract_rows(self.usage[iv], ids) for iv, ids in sps.items()],
                "bills": t.filter(mask),
                "applied": [(k, v) for k, v in self.applied.items() if v.get("customer_id") in cset],
                "identity": self.identity.export(cset),
                "decisions": self.decisions.export(cset)}

    def import_partitions(self, payload: dict) -> int:
        """Take over partitions exported by another shard."""
        self.owned[payload["partitions"]] = True
        self._membership_dirty = True
        for cid, rec in payload["records"].items():
            self.records[cid] = rec
            for a in rec["accounts"]:
                for sp in a["service_points"]:
                    self.sp_owner[sp["service_point_id"]] = (cid, int(sp["interval_minutes"]))
            self.changed(cid)
        for part in payload["usage"]:
            insert_rows(self._store(part["interval_minutes"]), part)
        self.bills.append(payload["bills"])
        for k, v in payload["applied"]:
            self.applied[k] = v
        self.identity.take(payload.get("identity"))
        self.decisions.absorb(payload.get("decisions"))
        return len(payload["records"])

    def drop_partitions(self, partitions: list[int]) -> int:
        """Forget the customers of partitions this shard no longer owns."""
        self.owned[partitions] = False
        cids = set(self._customers_in(partitions))
        self._membership_dirty = True
        for c in cids:
            del self.records[c]
            self.changed(c)
        self.identity.drop(cids)
        for iv, store in self.usage.items():
            drop_rows(store, {sp for sp, (c, i) in self.sp_owner.items() if c in cids and i == iv})
        self.sp_owner = {sp: o for sp, o in self.sp_owner.items() if o[0] not in cids}
        if cids:
            self.bills.drop_customers(cids)
        self.decisions.drop(cids)
        for k in [k for k, v in self.applied.items() if v.get("customer_id") in cids]:
            del self.applied[k]
        return len(cids)

    def drop_unowned(self) -> int:
        """After recovery: forget customers whose partitions moved away (ownership file beats snapshot)."""
        stray = sorted({partition_of(c) for c in self.records if not self.owns(c)})
        return self.drop_partitions(stray) if stray else 0

    # -- writes -------------------------------------------------------------------------------------------
    def owns(self, customer_id: str) -> bool:
        return bool(self.owned[partition_of(customer_id)])

    def prepare(self, op: dict) -> dict:
        """Check ``op`` against the current state and stamp it so that applying it is deterministic."""
        if op["write_id"] in self.applied:
            return op
        kind = op["kind"]
        if kind == imports_op.KIND:  # imports: a shard-wide op (rows of many customers + a position)
            return imports_op.prepare(self, op)
        cid = op["customer_id"]
        if not self.owns(cid):
            raise WrongShard(f"customer {cid} is not on shard {self.shard_id}", retry_after=1)
        op.setdefault("at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        if kind in ("patch", "usage"):
            rec = self.record(cid)
            if op.get("if_match") is not None and str(rec["version"]) != str(op["if_match"]).strip('"'):
                raise PreconditionFailed(f"context is at version {rec['version']}, not {op['if_match']}",
                                         field="If-Match")
            if kind == "patch":  # validate fully now, so a bad write never reaches the log; keep the result
                self._prepared = (op["write_id"], ctx.apply_patch(rec, op["body"], op["write_id"], op["at"]))
            else:
                self.check_readings(cid, op["body"].get("readings", []))
        elif kind == "replace":
            ctx.validate_replacement(cid, op["body"], op["at"])
        elif kind in identity_ops.KINDS:
            identity_ops.prepare(self, op)
        elif kind in decision_ops.KINDS:  # decisions: the logic lives in grid.decisions.state
            decision_ops.prepare(self, op)
        else:
            raise InvalidInput(f"unknown write kind {kind!r}", field="kind")
        return op

    def apply(self, op: dict) -> dict:
        """Apply a prepared op; returns its result (the same result again for a repeated write id)."""
        done = self.applied.get(op["write_id"])
        if done is not None:
            return done
        kind, cid = op["kind"], op["customer_id"]
        if kind == imports_op.KIND:  # imports: versions and change log are handled per touched customer
            result = imports_op.apply(self, op)
            self.applied[op["write_id"]] = {k: v for k, v in result.items() if k != "refused"}
            while len(self.applied) > APPLIED_WRITE_IDS:
                self.applied.popitem(last=False)
            return result
        if kind == "patch":
            prepared = getattr(self, "_prepared", None)
            self._prepared = None
            if prepared is not None and prepared[0] == op["write_id"]:
                new = prepared[1]  # computed by prepare() in the same event-loop step: still current
            else:
                new = ctx.apply_patch(self.record(cid), op["body"], op["write_id"], op["at"])
            self.records[cid] = new
            result = {"customer_id": cid, "version": new["version"]}
        elif kind == "replace":
            new = ctx.validate_replacement(cid, op["body"], op.get("at"))
            old = self.records.get(cid)
            new["version"] = (old["version"] if old else 0) + 1
            self._index_service_points(new)
            if old is None:
                self._membership_dirty = True
            self.records[cid] = new
            result = {"customer_id": cid, "version": new["version"]}
        elif kind in identity_ops.KINDS:
            result = identity_ops.apply(self, op)
        elif kind in decision_ops.KINDS:
            result = decision_ops.apply(self, op)
        else:
            result = self._apply_usage(cid, op["body"]["readings"])
        self.applied[op["write_id"]] = result
        # inputs may have changed: re-classify this customer (decisions ops change no classification input)
        if getattr(self, "_rules", None) is not None and kind not in decision_ops.KINDS:
            from grid.classification import reclassify

            reclassify(self, cid)
        self.changed(cid)
        while len(self.applied) > APPLIED_WRITE_IDS:
            self.applied.popitem(last=False)
        return result

    def write(self, op: dict) -> dict:
        """Prepare and apply in one step (the path without a log)."""
        return self.apply(self.prepare(op))

    def _index_service_points(self, rec: dict) -> None:
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                owner = self.sp_owner.get(sp["service_point_id"])
                if owner is not None and owner[0] != rec["customer_id"]:
                    raise Conflict(f"service point {sp['service_point_id']} belongs to {owner[0]}",
                                   field="accounts.service_points.service_point_id")
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                iv = int(sp.get("interval_minutes", 60))
                self.sp_owner[sp["service_point_id"]] = (rec["customer_id"], iv)
                self._store(iv).add_service_points([sp["service_point_id"]], [bool(sp.get("has_solar"))])

    def check_readings(self, customer_id: str, readings: list[dict]) -> list[tuple]:
        """Validate every reading before any is written; returns (store, row, month, idx, imp, exp, end)."""
        rec = self.record(customer_id)
        own = {sp["service_point_id"]: int(sp["interval_minutes"])
               for a in rec["accounts"] for sp in a["service_points"]}
        out = []
        for i, r in enumerate(readings):
            sp = r.get("service_point_id")
            if sp not in own:
                raise InvalidInput(f"no service point {sp!r} on customer {customer_id}",
                                   field=f"readings[{i}].service_point_id")
            try:
                ts = dt.datetime.fromisoformat(str(r["start"]).replace("Z", "+00:00"))
            except ValueError as exc:
                raise InvalidInput("start must be an RFC 3339 date-time", field=f"readings[{i}].start") from exc
            if ts.tzinfo is None:
                raise InvalidInput("start needs a UTC offset", field=f"readings[{i}].start")
            for key in ("import_wh", "export_wh"):
                v = r.get(key, 0)
                if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 100_000_000:
                    raise InvalidInput(f"{key} must be an integer Wh in 0..100000000",
                                       field=f"readings[{i}].{key}")
            store = self._store(own[sp])
            try:
                month, idx = store.locate(int(ts.timestamp()))
            except InvalidInput as exc:
                raise InvalidInput(exc.detail, field=f"readings[{i}].start") from exc
            row = store.row_of.get(sp)
            if row is None:
                row = int(store.add_service_points([sp], [False])[0])
            end = int(ts.timestamp()) + own[sp] * 60
            out.append((store, row, month, idx, int(r["import_wh"]), int(r.get("export_wh", 0)), end))
        return out

    def _apply_usage(self, customer_id: str, readings: list[dict]) -> dict:
        checked = self.check_readings(customer_id, readings)
        for store, row, month, idx, imp, exp, end in checked:
            store.write_readings(row, month, np.array([idx]), np.array([imp], np.int32),
                                 np.array([exp], np.int32), end)
        rec = self.records[customer_id]
        new = dict(rec)
        new["version"] = rec["version"] + 1
        self.records[customer_id] = new
        return {"customer_id": customer_id, "written": len(checked), "version": new["version"]}


# -- snapshots --------------------------------------------------------------------------------------------------
def to_snapshot(shard: Shard) -> tuple[dict, dict]:
    """(Arrow tables, blobs) holding the whole state of ``shard``; arrays are copies, so writes may go on."""
    import pyarrow as pa

    tables: dict[str, pa.Table] = {"bills": shard.bills.table}
    for iv, store in shard.usage.items():
        for name, t in store.to_tables().items():
            tables[f"u{iv}-{name}"] = t
    meta = {"shard_id": shard.shard_id, "timezone": shard.timezone,
            "owned": np.flatnonzero(shard.owned).tolist(), "applied": list(shard.applied.items()),
            "change_seq": shard.change_seq, "intervals": sorted(shard.usage)}
    blobs = {"records": msgpack.packb(shard.records, use_bin_type=True),
             "meta": msgpack.packb(meta, use_bin_type=True), "identity": shard.identity.to_blob(),
             "imports": shard.imports.to_blob(), "decisions": shard.decisions.to_blob()}
    return tables, blobs


def from_snapshot(tables: dict, blobs: dict) -> Shard:
    meta = msgpack.unpackb(blobs["meta"], raw=False, strict_map_key=False)
    shard = Shard(meta["shard_id"], meta["owned"], meta["timezone"])
    shard.records = msgpack.unpackb(blobs["records"], raw=False, strict_map_key=False)
    shard.applied = OrderedDict((k, v) for k, v in meta["applied"])
    shard.change_seq = meta["change_seq"]
    if "imports" in blobs:  # imports: source positions travel with the state they describe
        shard.imports = ImportState.from_blob(blobs["imports"])
    for iv in meta["intervals"]:
        prefix = f"u{iv}-"
        store_tables = {k[len(prefix):]: t for k, t in tables.items() if k.startswith(prefix)}
        shard.usage[iv] = UsageStore.from_tables(iv, shard.timezone, store_tables)
    for rec in shard.records.values():
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                shard.sp_owner[sp["service_point_id"]] = (rec["customer_id"], int(sp["interval_minutes"]))
    shard.bills = BillStore(tables["bills"])
    shard.identity = IdentityIndex.from_blob(blobs.get("identity"))
    if "decisions" in blobs:  # snapshots older than the decisions state have none
        shard.decisions = decision_ops.DecisionState.from_blob(blobs["decisions"])
    return shard
