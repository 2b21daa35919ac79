"""One shard's customers: context records, columnar usage and bills, and the writes on them.

This is a plain class, tested without Ray; ``grid.shard_actor`` wraps it in a Ray actor and adds durability.
Its whole state is declared in :meth:`Shard.__init__`; a capability's per-shard state is one attribute there
holding an object with ``to_blob() -> bytes``, ``from_blob(bytes)`` and ``digest() -> bytes`` (named in
:data:`CAPABILITIES`, so snapshots and the checksum hold it).

Every state change is an op ``{"kind", "customer_id" (None for shard-wide ops), "write_id", "at", "body"}``
and goes one way: :meth:`Shard.prepare` (check against the state, raise a ``grid.errors`` error, mutate
nothing) -> write-ahead log (the actor) -> :meth:`Shard.apply` (deterministic: a replay of the same ops in the
same order rebuilds the same state) -> version bump of every changed customer -> change-log entry -> result.
Kinds are the rows of :data:`OPS` (kind -> prepare/apply); a capability adds its kinds there with the logic in
its own package. An op whose write id was already applied returns its first result again (idempotent retries).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
import numpy as np

from grid import context as ctx
from grid.audit import DIFF_KINDS, AuditLog
from grid.base import read_chunk, read_entities, read_manifest
from grid.bill_outcomes import BillOutcomes
from grid.billing_index import BillingIndexes
from grid.bills import BillStore
from grid.contacts import outbox as outbox_ops  # contacts: the durable outbox's state and ops
from grid.decisions import state as decision_ops  # decisions: events, decisions, responses, churn scores
from grid.classification import Classification, apply_classification, reclassify
from grid.errors import Conflict, InvalidInput, Merged, NotFound, PreconditionFailed, WrongShard
from grid.identity import merge as identity_merge, ops as identity_ops  # identity: its write kinds, merge freeze
from grid.identity.index import IdentityIndex  # identity: per-shard index and durable state
from grid.imports import apply as imports_op  # imports: the import_rows op (grid.imports.apply)
from grid.imports.state import ImportState
from grid.partitions import PARTITIONS, partition_of
from grid.timegrid import DEFAULT_TIMEZONE, VALID_INTERVALS, calendar, month_bounds
from grid.usage import UsageStore, drop_rows, extract_rows, insert_rows

APPLIED_WRITE_IDS = 200_000  # idempotency memory: far more than any retry window
CHANGE_LOG = 100_000  # recent changed customer ids kept for gateway near-cache invalidation
# Attributes of Shard holding a capability's state (to_blob/from_blob/digest): snapshots and checksum hold them.
CAPABILITIES = ("bill_outcomes", "classification", "imports", "identity", "decisions", "outbox", "audit")

log = logging.getLogger(__name__)


class Shard:
    """State of one shard; see the module docstring."""

    def __init__(self, shard_id: int, partitions: list[int] | None = None, timezone: str = DEFAULT_TIMEZONE):
        self.shard_id = shard_id
        self.timezone = timezone
        self.owned = np.zeros(PARTITIONS, dtype=bool)
        for p in partitions or []:
            self.owned[p] = True
        # contexts
        self.records: dict[str, dict] = {}
        self.usage: dict[int, UsageStore] = {}
        self.sp_owner: dict[str, tuple[str, int]] = {}  # service point -> (customer, interval minutes)
        self.bills = BillStore()
        # capabilities (see CAPABILITIES)
        self.bill_outcomes = BillOutcomes()  # grid.bill_outcomes: outcome of every account per period
        self.classification = Classification()  # grid.classification: rules and portfolios in force
        self.imports = ImportState()  # grid.imports: source positions, refused rows, key index
        self.identity = IdentityIndex()  # grid.identity: keys of these customers, links, reviews, merges
        self.decisions = decision_ops.DecisionState()  # grid.decisions: events, contact history, audit, propensity
        self.outbox = outbox_ops.Outbox()  # grid.contacts: notifications accepted and where their delivery stands
        self.audit = AuditLog()  # grid.audit: who changed each customer, when, how (from the ops' audit block)
        # the write path
        self.applied: OrderedDict[str, dict] = OrderedDict()  # write id -> result (idempotent retries)
        self.change_seq = 0
        self.changes: deque[tuple[int, str]] = deque(maxlen=CHANGE_LOG)
        # caches derived from the state above (never logged or snapshotted)
        self.billing_index: BillingIndexes | None = None  # grid.billing_index, rebuilt when change_seq moves
        self._prepared: tuple[str, Any] | None = None  # what prepare() computed for the op apply() comes next
        self._entities: dict | None = None  # bulk load only
        self._sorted_ids: list[str] = []
        self._membership_dirty = True

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
        for store in self.usage.values():  # memory: drop the spare capacity the bulk load's doubling left
            store.trim()

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
            gone = self.identity.durable.merged.get(customer_id)  # identity: a merged id says where it went
            if gone is not None:
                raise Merged(f"customer {customer_id} was merged into {gone['merged_into']}", field="id",
                             merged_into=gone["merged_into"])
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
            iv = int(sp.get("interval_minutes", 60))
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
        """A digest over everything the shard holds (records, usage, bills, every capability's state), order
        independent of load order."""
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
        for name in CAPABILITIES:
            state = getattr(self, name)
            h.update(name.encode())
            h.update(state.digest() if hasattr(state, "digest") else state.to_blob())
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

    def _accounts_of(self, customer_ids) -> set[str]:
        """Account ids of these customers (bill outcomes and portfolios are keyed by account)."""
        return {a["account_id"] for c in customer_ids for a in self.records[c]["accounts"]}

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
                "decisions": self.decisions.export(cset), "audit": self.audit.export(cset),
                "outbox": self.outbox.export(partitions),  # contacts: notifications move with the customer
                "bill_outcomes": self.bill_outcomes.export(self._accounts_of(cids)),
                "classification": self.classification.export(self._accounts_of(cids))}

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
        self.audit.absorb(payload.get("audit"))
        self.outbox.absorb(payload.get("outbox"))
        self.bill_outcomes.absorb(payload.get("bill_outcomes"))
        self.classification.absorb(payload.get("classification"))
        return len(payload["records"])

    def drop_partitions(self, partitions: list[int]) -> int:
        """Forget the customers of partitions this shard no longer owns."""
        self.owned[partitions] = False
        cids = set(self._customers_in(partitions))
        accounts = self._accounts_of(cids)
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
        self.audit.drop(cids)
        self.outbox.drop(partitions)
        self.bill_outcomes.drop(accounts)
        self.classification.drop(accounts)
        for k in [k for k, v in self.applied.items() if v.get("customer_id") in cids]:
            del self.applied[k]
        return len(cids)

    def reown_partitions(self, partitions: list[int]) -> None:
        """Undo an export whose import failed (the data never left)."""
        self.owned[partitions] = True
        self.outbox.reown(partitions)  # contacts: exported notifications are served here again

    def drop_unowned(self) -> int:
        """After recovery: forget customers whose partitions moved away (ownership file beats snapshot)."""
        stray = {partition_of(c) for c in self.records if not self.owns(c)}
        stray |= {p for p in self.outbox.partitions_held() if not self.owned[p]}  # contacts: their messages too
        return self.drop_partitions(sorted(stray)) if stray else 0

    # -- writes -------------------------------------------------------------------------------------------
    def owns(self, customer_id: str) -> bool:
        return bool(self.owned[partition_of(customer_id)])

    def prepare(self, op: dict) -> dict:
        """Check ``op`` against the current state and stamp it so that applying it is deterministic.

        Raises a ``grid.errors`` error (and changes nothing) when the op cannot apply; what the check computed
        is kept for the :meth:`apply` of the same op that follows in the same event-loop step.
        """
        done = self.applied.get(op["write_id"])
        if done is not None:
            if op.get("request") is not None and done.get("request", op["request"]) != op["request"]:
                raise InvalidInput("this Idempotency-Key was used for a different request (method, route or "
                                   "body); use a new key for a new request", field="Idempotency-Key")
            return op
        kind = OPS.get(op["kind"])
        if kind is None:
            raise InvalidInput(f"unknown write kind {op['kind']!r}", field="kind")
        cid = op.get("customer_id")
        if kind.customer and not self.owns(cid):
            raise WrongShard(f"customer {cid} is not on shard {self.shard_id}", retry_after=1)
        if kind.customer and op["kind"] not in identity_merge.KINDS:
            identity_merge.refuse_while_merging(self, cid)  # identity: a customer being merged takes no writes
        op.setdefault("at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        self._prepared = (op["write_id"], kind.prepare(self, op))
        return op

    def apply(self, op: dict) -> dict:
        """Apply a prepared op; returns its result (the same result again for a repeated write id).

        The kind's apply changes the state and says which customers' contexts changed; each of them is then
        re-classified (customer ops), gets the next version and a change-log entry.
        """
        done = self.applied.get(op["write_id"])
        if done is not None:
            return done
        kind = OPS[op["kind"]]
        prepared = self._prepared[1] if self._prepared and self._prepared[0] == op["write_id"] else None
        self._prepared = None
        cid = op.get("customer_id")
        # audit: what the context was, for the entry's diff (records are replaced on write, never mutated)
        before = self.records.get(cid) if op.get("audit") and op["kind"] in DIFF_KINDS else None
        result, changed = kind.apply(self, op, prepared)
        for cid in changed:
            if kind.inputs:
                reclassify(self, cid)  # inputs may have changed (never raises)
            rec = self.records.get(cid)
            if rec is not None:
                self.records[cid] = {**rec, "version": rec["version"] + 1}
            self.changed(cid)
        if kind.customer and cid in self.records:
            result["version"] = self.records[cid]["version"]
        # audit: rides in the op, so the WAL holds it
        self.audit.record(op, result.get("version"), before, self.records.get(cid) if before is not None else None)
        if "audit_rows" in result:  # a shard-wide op (an import push): an entry on each customer it named
            rows = result.pop("audit_rows")
            self.audit.record_each(op, rows, {c: self.records[c]["version"] for c in rows if c in self.records})
        if op.get("request") is not None:
            result["request"] = op["request"]  # what the client's Idempotency-Key is bound to
        # a retry gets the result again, less the rows refused (a quarantine list can be long; it was reported)
        self.applied[op["write_id"]] = {k: v for k, v in result.items() if k != "refused"}
        while len(self.applied) > APPLIED_WRITE_IDS:
            self.applied.popitem(last=False)
        return result

    def write(self, op: dict) -> dict:
        """Prepare and apply in one step (the path without a log)."""
        return self.apply(self.prepare(op))

    def _check_service_points(self, rec: dict) -> None:
        seen = set()
        for i, a in enumerate(rec["accounts"]):
            for j, sp in enumerate(a["service_points"]):
                field = f"accounts[{i}].service_points[{j}]"
                sp_id = sp.get("service_point_id")
                if not isinstance(sp_id, str) or not sp_id:
                    raise InvalidInput("service_point_id must be a non-empty string", field=f"{field}.service_point_id")
                if sp_id in seen:
                    raise InvalidInput(f"service point {sp_id} is listed twice", field=f"{field}.service_point_id")
                seen.add(sp_id)
                if sp.get("interval_minutes", 60) not in VALID_INTERVALS:
                    raise InvalidInput(f"interval_minutes must be one of {VALID_INTERVALS}",
                                       field=f"{field}.interval_minutes")
                owner = self.sp_owner.get(sp_id)
                if owner is not None and owner[0] != rec["customer_id"]:
                    raise Conflict(f"service point {sp_id} belongs to {owner[0]}", field=f"{field}.service_point_id")
                if owner is not None and owner[1] != int(sp.get("interval_minutes", 60)):
                    raise Conflict(f"service point {sp_id} has {owner[1]}-minute usage held; its interval cannot "
                                   "change", field=f"{field}.interval_minutes")

    def _index_service_points(self, old: dict | None, rec: dict) -> None:
        keep = {sp["service_point_id"] for a in rec["accounts"] for sp in a["service_points"]}
        for a in (old or {}).get("accounts", []):
            for sp in a["service_points"]:
                if sp["service_point_id"] not in keep:  # taken off this customer: free for another
                    self.sp_owner.pop(sp["service_point_id"], None)
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                iv = int(sp.get("interval_minutes", 60))
                self.sp_owner[sp["service_point_id"]] = (rec["customer_id"], iv)
                self._store(iv).add_service_points([sp["service_point_id"]], [bool(sp.get("has_solar"))])

    def check_readings(self, customer_id: str, readings: list[dict]) -> list[tuple]:
        """Validate every reading before any is written; returns (store, sp, month, idx, imp, exp, end)."""
        rec = self.record(customer_id)
        own = {sp["service_point_id"]: int(sp.get("interval_minutes", 60))
               for a in rec["accounts"] for sp in a["service_points"]}
        out = []
        for i, r in enumerate(readings):
            sp = r.get("service_point_id")
            if sp not in own:
                raise InvalidInput(f"no service point {sp!r} on customer {customer_id}",
                                   field=f"readings[{i}].service_point_id")
            try:
                ts = dt.datetime.fromisoformat(str(r["start"]).replace("Z", "+00:00"))
            except (KeyError, ValueError) as exc:
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
            end = int(ts.timestamp()) + own[sp] * 60
            out.append((store, sp, month, idx, int(r.get("import_wh", 0)), int(r.get("export_wh", 0)), end))
        return out


# -- the dispatch table: kind -> prepare / apply ----------------------------------------------------------------
@dataclass(frozen=True)
class OpKind:
    """How one kind of op is checked and applied.

    ``prepare(shard, op)`` raises a ``grid.errors`` error when the op cannot apply and mutates nothing; what it
    returns is handed to ``apply`` when apply follows in the same step (None on replay). ``apply(shard, op,
    prepared) -> (result, changed customer ids)`` must be deterministic and must not raise for a prepared op.
    ``customer``: the op addresses one customer (``customer_id``: ownership checked, its version returned).
    ``inputs``: the op changes what classification reads, so every changed customer is re-classified.
    """

    prepare: Callable[[Shard, dict], Any]
    apply: Callable[[Shard, dict, Any], tuple[dict, list[str]]]
    customer: bool = True
    inputs: bool = True


def _check_version(rec: dict, op: dict) -> None:
    if op.get("if_match") is not None and str(rec["version"]) != str(op["if_match"]).strip('"'):
        raise PreconditionFailed(f"context is at version {rec['version']}, not {op['if_match']}", field="If-Match")


def _prepare_patch(shard: Shard, op: dict) -> dict:
    rec = shard.record(op["customer_id"])
    _check_version(rec, op)
    return ctx.apply_patch(rec, op["body"], op["write_id"], op["at"])


def _apply_patch(shard: Shard, op: dict, new: dict | None):
    cid = op["customer_id"]
    old = shard.records[cid]
    if new is None:  # replay: recompute (deterministic: same record, body, write id and time)
        new = ctx.apply_patch(old, op["body"], op["write_id"], op["at"])
    shard.records[cid] = {**new, "version": old["version"]}  # the shard bumps versions, after apply
    return {"customer_id": cid}, [cid]


def _prepare_replace(shard: Shard, op: dict) -> dict:
    cid = op["customer_id"]
    old = shard.records.get(cid)
    if old is not None:
        _check_version(old, op)
    new = ctx.validate_replacement(cid, op["body"], op["at"])
    shard._check_service_points(new)
    return new


def _apply_replace(shard: Shard, op: dict, new: dict | None):
    cid = op["customer_id"]
    if new is None:
        new = ctx.validate_replacement(cid, op["body"], op["at"])
    old = shard.records.get(cid)
    new["version"] = old["version"] if old else 0
    shard._index_service_points(old, new)
    if old is None:
        shard._membership_dirty = True
    shard.records[cid] = new
    return {"customer_id": cid}, [cid]


def _prepare_usage(shard: Shard, op: dict) -> list[tuple]:
    rec = shard.record(op["customer_id"])
    _check_version(rec, op)
    readings = op["body"].get("readings") if isinstance(op["body"], dict) else None
    if not isinstance(readings, list):
        raise InvalidInput("readings must be a list", field="readings")
    return shard.check_readings(op["customer_id"], readings)


def _apply_usage(shard: Shard, op: dict, checked: list[tuple] | None):
    cid = op["customer_id"]
    if checked is None:
        checked = shard.check_readings(cid, op["body"]["readings"])
    for store, sp, month, idx, imp, exp, end in checked:
        row = store.row_of.get(sp)
        if row is None:
            row = int(store.add_service_points([sp], [False])[0])
        store.write_readings(row, month, np.array([idx]), np.array([imp], np.int32), np.array([exp], np.int32), end)
    return {"customer_id": cid, "written": len(checked)}, [cid]


def _prepare_bill_outcomes(shard: Shard, op: dict) -> None:
    body = op["body"]
    if not isinstance(body, dict) or not isinstance(body.get("table"), bytes):
        raise InvalidInput("bill outcomes need a period and a table", field="body")
    month_bounds(body["period"])


def _apply_bill_outcomes(shard: Shard, op: dict, _prepared):
    return shard.bill_outcomes.apply(op["body"]), []


def _prepare_classification(shard: Shard, op: dict) -> None:
    body = op["body"]
    if not isinstance(body, dict) or not isinstance(body.get("state"), bytes) or \
            not isinstance(body.get("records"), dict):
        raise InvalidInput("a classification needs the rules' state and the records' results", field="body")


def _apply_classification(shard: Shard, op: dict, _prepared):
    changed = apply_classification(shard, op["body"])
    return {"customers": len(changed)}, changed


def _apply_import(shard: Shard, op: dict, _prepared):
    return imports_op.apply(shard, op)


def _apply_identity(shard: Shard, op: dict, _prepared):
    return identity_ops.apply(shard, op)  # (result, the customers whose context it changed: merges, new ones)


def _apply_decision(shard: Shard, op: dict, _prepared):
    return decision_ops.apply(shard, op), [op["customer_id"]]


OPS: dict[str, OpKind] = {
    "patch": OpKind(_prepare_patch, _apply_patch),
    "replace": OpKind(_prepare_replace, _apply_replace),
    "usage": OpKind(_prepare_usage, _apply_usage),
    "bill_outcomes": OpKind(_prepare_bill_outcomes, _apply_bill_outcomes, customer=False, inputs=False),
    "classification": OpKind(_prepare_classification, _apply_classification, customer=False, inputs=False),
    imports_op.KIND: OpKind(imports_op.prepare, _apply_import, customer=False),  # rows of many customers
    **{k: OpKind(identity_ops.prepare, _apply_identity) for k in identity_ops.KINDS},
    # decisions change no classification input
    **{k: OpKind(decision_ops.prepare, _apply_decision, inputs=False) for k in decision_ops.KINDS},
    decision_ops.SCORES: OpKind(decision_ops.prepare_scores, decision_ops.apply_scores, customer=False,
                                inputs=False),  # decisions: a whole shard's churn scores
    # contacts: shard-wide outbox ops; no context changes, so no version bump
    **{k: OpKind(outbox_ops.shard_prepare, outbox_ops.shard_apply, customer=False, inputs=False)
       for k in outbox_ops.KINDS},
}


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
             "meta": msgpack.packb(meta, use_bin_type=True)}
    for name in CAPABILITIES:
        blobs[f"cap-{name}"] = getattr(shard, name).to_blob()
    return tables, blobs


def from_snapshot(tables: dict, blobs: dict) -> Shard:
    meta = msgpack.unpackb(blobs["meta"], raw=False, strict_map_key=False)
    shard = Shard(meta["shard_id"], meta["owned"], meta["timezone"])
    shard.records = msgpack.unpackb(blobs["records"], raw=False, strict_map_key=False)
    shard.applied = OrderedDict((k, v) for k, v in meta["applied"])
    shard.change_seq = meta["change_seq"]
    for iv in meta["intervals"]:
        prefix = f"u{iv}-"
        store_tables = {k[len(prefix):]: t for k, t in tables.items() if k.startswith(prefix)}
        shard.usage[iv] = UsageStore.from_tables(iv, shard.timezone, store_tables)
    for rec in shard.records.values():
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                shard.sp_owner[sp["service_point_id"]] = (rec["customer_id"], int(sp.get("interval_minutes", 60)))
    shard.bills = BillStore(tables["bills"])
    for name in CAPABILITIES:
        blob = blobs.get(f"cap-{name}")
        if blob is not None:  # snapshots from before the capability existed hold none
            setattr(shard, name, type(getattr(shard, name)).from_blob(blob))
    return shard
