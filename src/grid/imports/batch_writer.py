"""One batch into the grid: link its rows, quarantine the bad, write the rest to every shard, settle the answers.

:class:`BatchWriter` is steps 2-5 of ``grid.imports.importer`` (which reads, maps and counts progress) for one
batch: rows that find no customer are quarantined (``unresolved`` / ``review``) durably before any shard moves
past them; the rest are routed by customer and one ``import_rows`` op goes to *every* shard (its rows, maybe
none, and the batch's position: each shard's stored position is exact; pushes skip shards without rows); rows a
shard refused are quarantined with the shard's reason. A shard that is down or a moved partition makes the
batch wait and go again with the same write ids, so no row is dropped and none applied twice.
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import polars as pl

from grid.errors import ShardUnavailable
from grid.imports import linking, routing
from grid.imports.mapping import EVIDENCE
from grid.imports.quarantine import Quarantine, raw_texts
from grid.imports.readers import Batch
from grid.imports.sources import IMPLIED_EVIDENCE, Source
from grid.partitions import partitions_of

log = logging.getLogger(__name__)

PUSH_AUDIT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("push_audit", default=None)
RETRY_S = 120.0  # longest a batch waits for a restarting shard before the import fails (and can be resumed)


@dataclass
class Receipt:
    """Totals of one import (file or push), and per-row outcomes when asked for."""

    accepted: int = 0
    applied: int = 0
    unchanged: int = 0
    skipped: int = 0
    quarantined: int = 0
    rejected: int = 0
    position: dict | None = None
    rows: list[dict] = field(default_factory=list)
    # pushes: customer -> the version the push gave it (the gateway's near cache; not part of the receipt)
    versions: dict[str, int] = field(default_factory=dict)

    def add(self, other: "Receipt") -> None:
        for k in ("accepted", "applied", "unchanged", "skipped", "quarantined", "rejected"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.position = other.position or self.position
        self.rows += other.rows
        self.versions.update(other.versions)

    def view(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "versions"}


def _raw_rows(rows, idx: list[int]) -> list[dict]:
    """Rows ``idx`` of a batch as dicts, in one take (a badly mapped batch can quarantine all of it)."""
    if not idx:
        return []
    if hasattr(rows, "take") and hasattr(rows, "to_pylist"):
        return rows.take(idx).to_pylist()
    return [_raw_row(rows, i) for i in idx]


def _raw_row(rows, i: int) -> dict:
    if hasattr(rows, "slice") and hasattr(rows, "to_pylist"):
        return rows.slice(i, 1).to_pylist()[0]
    if hasattr(rows, "row"):
        return rows.row(i, named=True)
    return rows[i]


def _held_bad(batch: Batch, mapped, offsets: np.ndarray, outcome: dict) -> list[dict]:
    """Quarantine entries for a batch's malformed records and the rows its mapping marked bad."""
    stream = str(batch.position["stream"])
    held: list[dict] = []
    for k, rej in enumerate(batch.rejected):
        held.append({"id": f"{stream}:r{batch.position['offset']}.{k}", "stream": stream, "offset": None,
                     "row": {"text": rej.get("text")}, "field": "row", "reason": "malformed",
                     "detail": rej.get("detail", "")})
    for b, raw in zip(mapped.bad, _raw_rows(batch.rows, [b["i"] for b in mapped.bad])):
        held.append({"stream": stream, "offset": int(offsets[b["i"]]), "row": raw,
                     "field": b["field"], "column": b["column"], "reason": "invalid", "detail": b["reason"]})
        outcome[b["i"]] = {"outcome": "quarantined", "field": b["field"], "reason": b["reason"]}
    return held


def _reject_others(rows: list[int], outcome: dict, rcpt: "Receipt") -> None:
    for i in rows:
        outcome[i] = {"outcome": "rejected", "reason": "the row names a customer this key may not write"}
    rcpt.rejected += len(rows)


def _digest(values: tuple) -> str:
    return hashlib.sha1(json.dumps(values, default=str, separators=(",", ":")).encode()).hexdigest()



class BatchWriter:
    """Writes batches of one importer to its grid, quarantining into its quarantine (see the module docstring)."""

    def __init__(self, grid, quarantine: Quarantine):
        self.grid = grid
        self.quarantine = quarantine

    async def write(self, src: Source, batch: Batch, mapped, principal=None, per_row: bool = False,
                    known: dict | None = None, keep_raw: bool = True) -> Receipt:
        """Link a mapped batch, quarantine its bad rows, write the rest to every shard and settle the answers.

        Parameters
        ----------
        src : Source
        batch : Batch
            The rows as read, with their position.
        mapped : grid.imports.mapping.Mapped
            The batch through the source's mapping (its ``frame`` and ``bad`` rows).
        principal : grid.gateway.auth.Principal, optional
            A customer key (customer entry): rows naming anyone else are rejected.
        per_row : bool
            Fill ``Receipt.rows`` with each row's outcome (pushes).
        known : dict, optional
            Service points / meters resolved by earlier batches of the same file (``grid.imports.routing``).
        keep_raw : bool
            The ops carry the rows' raw text (see :meth:`_send`).

        Returns
        -------
        Receipt
        """
        if src.does == "usage":
            return await self._write_usage(src, batch, mapped, principal, per_row, known, keep_raw)
        stream = str(batch.position["stream"])
        offsets = batch.offset_array()
        rcpt = Receipt(position=batch.position)
        outcome: dict[int, dict] = {}
        held = _held_bad(batch, mapped, offsets, outcome)
        frame = mapped.frame.with_columns(pl.Series("_off", offsets[mapped.frame.get_column("_i").to_numpy()]))
        records = self._evidence(src, frame)
        creates = src.does == "upsert" and principal is None and src.spec.get("unmatched") != "quarantine"
        res = await linking.resolve(self.grid, records, creates=creates) if records else []
        frame = frame.with_columns(
            pl.Series("_outcome", [r["outcome"] for r in res], dtype=pl.String),
            pl.Series("_cid", [r.get("customer_id") for r in res], dtype=pl.String),
            pl.Series("_sp", [r.get("service_point_id") for r in res], dtype=pl.String),
            pl.Series("_evidence", [json.dumps(r.get("evidence"), default=str) for r in res], dtype=pl.String))
        linked = frame.get_column("_outcome").is_in(["link", "new"]) & frame.get_column("_cid").is_not_null()
        if principal is not None:
            # customer entry: a row for anyone else is refused the same way whether or not they exist
            mine = frame.get_column("_cid").is_in(sorted(principal.customers)).fill_null(False)
            _reject_others(frame.filter(~mine).get_column("_i").to_list(), outcome, rcpt)
            linked = linked & mine
        else:
            mine = pl.Series([True] * frame.height, dtype=pl.Boolean)
        unlinked = list(frame.filter(~linked & mine).select("_i", "_off", "_outcome", "_evidence").iter_rows())
        for (i, off, out, ev), raw in zip(unlinked, _raw_rows(batch.rows, [u[0] for u in unlinked])):
            reason = "review" if out == "review" else "unresolved"
            held.append({"stream": stream, "offset": int(off), "row": raw, "field": "identity",
                         "reason": reason, "detail": ev})
            outcome[i] = {"outcome": "quarantined", "reason": reason}
        self.quarantine.add(src.name, held)  # durable before any shard moves past these rows
        rcpt.quarantined += len(held)
        good = frame.filter(linked)
        rcpt.accepted = good.height
        if per_row:
            for i, out, cid in good.select("_i", "_outcome", "_cid").iter_rows():
                outcome[i] = {"outcome": "linked" if out == "link" else "new", "customer_id": cid}
        results = await self._send(src, batch, good, keep_raw)
        return self._settle(src, batch, offsets, results, outcome, rcpt, per_row)

    async def _write_usage(self, src: Source, batch: Batch, mapped, principal, per_row: bool,
                           known: dict | None, keep_raw: bool) -> Receipt:
        """A usage batch (``grid.imports.routing``): rows linked by their distinct service points or meters,
        routed and packed per shard with numpy; the same outcomes and quarantine as any other batch
        (``keep_raw`` as in :meth:`_send`)."""
        stream = str(batch.position["stream"])
        offsets = batch.offset_array()
        rcpt = Receipt(position=batch.position)
        outcome: dict[int, dict] = {}
        held = _held_bad(batch, mapped, offsets, outcome)
        frame = mapped.frame
        at = frame.get_column("_i").to_numpy()
        points = await routing.link(self.grid, frame, known)
        cids, row_cid = points.customer_codes()
        linked = row_cid >= 0
        mine = np.ones(frame.height, bool)
        if principal is not None:
            # customer entry: a row for anyone else is refused the same way whether or not they exist
            allowed = np.array([c in principal.customers for c in cids] + [False], bool)
            mine = allowed[row_cid]
            _reject_others(at[~mine].tolist(), outcome, rcpt)
            linked &= mine
        unlinked = np.flatnonzero(~linked & mine)
        evidence = json.dumps({"tried": [points.key]})
        for i, raw in zip(unlinked.tolist(), _raw_rows(batch.rows, at[unlinked].tolist())):
            held.append({"stream": stream, "offset": int(offsets[at[i]]), "row": raw, "field": "identity",
                         "reason": "unresolved", "detail": evidence})
            outcome[int(at[i])] = {"outcome": "quarantined", "reason": "unresolved"}
        self.quarantine.add(src.name, held)  # durable before any shard moves past these rows
        rcpt.quarantined += len(held)
        good = np.flatnonzero(linked)
        rcpt.accepted = int(good.size)
        if per_row:
            for i in good.tolist():
                outcome[int(at[i])] = {"outcome": "linked", "customer_id": cids[row_cid[i]]}
        first = int(offsets[0]) if offsets.size else 0
        row_off = offsets[at]
        raw = raw_texts(_raw_rows(batch.rows, at[good].tolist())) if keep_raw else None
        results = await self._retried(src, lambda: routing.usage_ops(
            self.grid, src.name, batch.position, first, frame, row_off, good, points, cids, row_cid, raw))
        return self._settle(src, batch, offsets, results, outcome, rcpt, per_row)

    def _settle(self, src: Source, batch: Batch, offsets: np.ndarray, results: list[dict], outcome: dict,
                rcpt: "Receipt", per_row: bool) -> "Receipt":
        """Count the shards' answers and quarantine the rows they refused."""
        stream = str(batch.position["stream"])
        refused = []
        for res_ in results:
            rcpt.applied += res_["applied"]
            rcpt.unchanged += res_["unchanged"]
            rcpt.skipped += res_["skipped"]
            rcpt.versions.update(res_.get("versions") or {})
            for r in res_.get("refused", ()):
                k = int(np.searchsorted(offsets, r["offset"]))  # offsets ascend within a batch
                i = k if k < offsets.size and offsets[k] == r["offset"] else None
                refused.append({"stream": stream, "offset": r["offset"],
                                "row": _raw_row(batch.rows, i) if i is not None else json.loads(r["row"] or "null"),
                                "field": r["field"], "reason": "refused", "detail": r["reason"]})
                if i is not None:
                    outcome[i] = {"outcome": "quarantined", "field": r["field"], "reason": r["reason"]}
        self.quarantine.add(src.name, refused)
        rcpt.quarantined += len(refused)
        rcpt.accepted -= len(refused)
        if per_row:
            rcpt.rows = [{"row": i, **outcome.get(i, {"outcome": "applied"})} for i in range(len(batch))]
        return rcpt

    def _evidence(self, src: Source, frame) -> list[dict]:
        cols = {}
        for name in EVIDENCE:
            col = "id." + name
            if col in frame.columns:
                cols[name] = frame.get_column(col)
            else:
                for implied in IMPLIED_EVIDENCE.get(name, ()):
                    if implied in frame.columns and name in ("customer_id", "service_point_id", "account_id",
                                                             "meter_id"):
                        cols.setdefault(name, frame.get_column(implied))
        if src.does == "upsert" and "service_point_id" in cols and "customer_id" not in cols:
            pass  # a new service point's id finds no owner: the account or customer id links the row
        n = frame.height
        names = list(cols)
        lists = [cols[k].cast(str).to_list() for k in names]
        out = [{"source": src.name} for _ in range(n)]
        for k, vals in zip(names, lists):
            for r, v in zip(out, vals):
                if v is not None:
                    r[k] = v
        return out

    async def _send(self, src: Source, batch: Batch, good: pl.DataFrame, keep_raw: bool = True) -> list[dict]:
        """One ``import_rows`` op per shard (rows or none, and the batch's position); retried through restarts.

        ``keep_raw``: the op carries the rows' raw text too, so a refused row keeps it (grid.imports.quarantine);
        batches read from a file need not (the file is read again)."""
        grid = self.grid
        fields = [c for c in good.columns if not c.startswith(("_", "id."))]
        if good.height:
            good = good.with_columns(pl.Series("_digest", [_digest(r) for r in good.select(fields).iter_rows()]))
        first = int(batch.offset_array()[0]) if len(batch) else 0
        last = int(batch.position["offset"])
        raw_of = {}
        if keep_raw and good.height:
            idx = good.get_column("_i").to_list()
            raw_of = dict(zip(idx, raw_texts(_raw_rows(batch.rows, idx))))

        def ops():
            table = grid.table
            cids = good.get_column("_cid").unique().to_list()
            owner = np.asarray(table.owner, dtype=np.int64)
            shard_of = dict(zip(cids, owner[partitions_of(cids)].tolist())) if cids else {}
            part_of = good.get_column("_cid").replace_strict(shard_of, default=-1, return_dtype=pl.Int64)
            out = []
            pushed = str(batch.position["stream"]).startswith("push")
            for s in range(len(grid.shards)):
                sub = good.filter(part_of == s)
                if pushed and sub.height == 0:
                    continue  # a push is never resumed by position: shards without its rows need not hear of it
                wid = hashlib.sha1(f"{src.name}|{batch.position['stream']}|{first}|{last}|{s}|{table.version}"
                                   .encode()).hexdigest()
                body = {"source": src.name, "position": batch.position, "action": src.does,
                        "offsets": sub.get_column("_off").cast(pl.Int64).to_numpy().tobytes(),
                        "customer_id": sub.get_column("_cid").to_list(),
                        "digest": sub.get_column("_digest").to_list() if sub.height else [],
                        "columns": {c: sub.get_column(c).to_list() for c in fields}}
                if keep_raw:
                    body["raw"] = [raw_of[i] for i in sub.get_column("_i").to_list()]
                out.append((s, {"kind": "import_rows", "customer_id": None, "write_id": wid, "body": body}))
            return out

        return await self._retried(src, ops)

    async def _retried(self, src: Source, ops: Callable[[], list[tuple[int, dict]]]) -> list[dict]:
        """Write the ops ``ops()`` builds (one per shard); a shard that is restarting or a moved partition makes
        the batch wait and go again, re-routed (same write ids: a shard that had applied it answers again)."""
        deadline = time.monotonic() + RETRY_S
        audit = PUSH_AUDIT.get()
        while True:
            built = ops()
            for _, op in built if audit is not None else ():
                op["audit"] = audit  # audit: not in the write id, so a retried push is recorded once
            try:
                return list(await asyncio.gather(*(self.grid.aimport_rows(s, op) for s, op in built)))
            except ShardUnavailable as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("import %s: %s; retrying the batch", src.name, exc.detail)
                await asyncio.sleep(0.5)
