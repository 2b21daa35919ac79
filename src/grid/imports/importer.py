"""Drive sources into the grid: read a batch, map it, link its rows, quarantine the bad, write the rest.

One :class:`Importer` per gateway (or CLI run) and data dir. Per batch:

1. map (``grid.imports.mapping``): rows whose values do not convert are bad;
2. link (``grid.imports.linking``): rows that find no customer are ``unresolved``, undecided ones ``review``;
3. quarantine the bad rows durably (before any shard moves past them);
4. route the rest by customer to their shards and write one ``import_rows`` op to *every* shard, carrying the
   shard's rows (maybe none) and the batch's position, so each shard's stored position is exact;
5. quarantine rows a shard refused (checks that need the state, e.g. a reading for another customer's meter).

Resume: a stream restarts after the lowest position the shards hold for it; a shard that is further on skips
the rows it has (``grid.imports.apply``). A shard that is down makes the batch wait and retry (the same op ids,
so a retry that the shard had applied answers its first result): no row is dropped and none applied twice.
"""
from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import ContextGridError, InvalidInput, ShardUnavailable
from grid.imports import linking, routing
from grid.imports.files import FileLedger, row_hashes
from grid.imports.mapping import EVIDENCE
from grid.imports.quarantine import Quarantine, raw_texts, recover
from grid.imports.readers import Batch, open_file
from grid.imports.sources import IMPLIED_EVIDENCE, Source, SourceRegistry
from grid.partitions import partitions_of

log = logging.getLogger(__name__)

# audit: the audit block of the HTTP push being written (grid.audit), stamped on each of its import_rows ops
PUSH_AUDIT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("push_audit", default=None)
RETRY_S = 120.0  # longest a batch waits for a restarting shard before the import fails (and can be resumed)


@dataclass
class Progress:
    """What ``GET /v1/imports`` shows for one source."""

    state: str = "idle"  # idle | running | failed
    rows_read: int = 0
    rows_applied: int = 0
    rows_unchanged: int = 0
    rows_quarantined: int = 0
    rows_skipped: int = 0
    batches: int = 0
    last_position: dict | None = None
    last_error: str | None = None
    lag_s: float = 0.0  # read -> durable on every shard, for the last batch
    last_applied_at: float | None = None

    def view(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Prepared:
    """A batch read and mapped, waiting to be linked and written."""

    batch: Batch
    mapped: Any
    hashes: np.ndarray
    dropped: int = 0
    from_file: bool = False  # its rows can be read again at their position (a refusal needs no copy of them)


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


class Importer:
    """See the module docstring."""

    def __init__(self, grid, data_dir: str | Path):
        self.grid = grid
        self.data_dir = Path(data_dir)
        self.registry = SourceRegistry(self.data_dir / "sources")
        self.quarantine = Quarantine(self.data_dir / "imports" / "quarantine")
        self.files = FileLedger(self.data_dir / "imports" / "files.json")
        self.progress: dict[str, Progress] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._push_seq: dict[str, int] = {}  # source -> last unkeyed push offset
        # the first pyarrow.compute call of a process imports pandas (0.3 s): at start, not in the first batch
        pc.dictionary_encode(pa.array([""]))

    def _progress(self, name: str) -> Progress:
        return self.progress.setdefault(name, Progress())

    def lock(self, name: str) -> asyncio.Lock:
        """One batch at a time per source: positions of a stream advance in order."""
        return self._locks.setdefault(name, asyncio.Lock())

    # -- resume -------------------------------------------------------------------------------------------
    async def resume_position(self, source: str, stream: str) -> dict | None:
        """The lowest position any shard holds for ``stream`` (None: some shard has none: from the start)."""
        views = await self.grid.aimport_view(source)
        got = [v["streams"].get(stream) for v in views]
        if not got or any(p is None for p in got):
            return None
        return min(got, key=lambda p: int(p["offset"]))

    # -- files ----------------------------------------------------------------------------------------------
    async def import_file(self, source: str | Source, path: str | Path,
                          progress: Callable[[int, int], None] | None = None, complete_lines: bool = False) -> Receipt:
        """Import one file of a file source from where it stands; ``progress(rows, bytes)`` per batch.
        ``complete_lines``: the file is being appended to; a last line without its line break waits."""
        src = self.registry.get(source) if isinstance(source, str) else source
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"no file {path}", field="file")
        async with self.lock(src.name):
            loop = asyncio.get_running_loop()
            stream, previous = await loop.run_in_executor(None, self.files.stream_for, src.name, path)
            after = await self.resume_position(src.name, stream)
            reader = await loop.run_in_executor(
                None, lambda: open_file(path, src.format, src.options, stream=stream,
                                        batch_rows=int(src.options.get("batch_rows", 50_000)),
                                        complete_lines=complete_lines))
            skip = await loop.run_in_executor(None, self.files.old_digests, src.name, path, previous)
            total = Receipt(position=after)
            gen = reader.batches(after)
            done = object()
            ready: asyncio.Queue = asyncio.Queue(maxsize=2)

            def prepare(batch: Batch) -> Prepared:
                prep = self.prepare(src, batch, skip)
                prep.from_file = True
                return prep

            async def produce():
                # read the next batches in a thread and prepare (digest, map) each in its own (pyarrow and
                # polars release the GIL: the next block is parsed while the last is mapped) while the current
                # one is linked and written; batches are still written one at a time, in order
                try:
                    while True:
                        batch = await loop.run_in_executor(None, next, gen, done)
                        if batch is done:
                            break
                        await ready.put(loop.run_in_executor(None, prepare, batch))
                    await ready.put(done)
                except BaseException as exc:  # handed to the writer, which raises it
                    await ready.put(exc)

            producer = asyncio.ensure_future(produce())
            known: dict = {}  # service points / meters resolved by earlier batches of this file
            try:
                while True:
                    prep = await ready.get()
                    if prep is done:
                        break
                    if isinstance(prep, BaseException):
                        raise prep
                    prep = await prep
                    rcpt = await self.commit(src, prep, known=known)
                    self.files.add_digests(src.name, path, stream, prep.hashes)
                    total.add(rcpt)
                    if progress:
                        progress(len(prep.batch), int(prep.batch.position.get("byte", 0)))
            finally:
                producer.cancel()
                while not ready.empty():  # prepared batches not written: their errors are not this one's
                    left = ready.get_nowait()
                    if isinstance(left, asyncio.Future):
                        left.cancel()
                        left.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.files.finish(src.name, path, stream)
            return total

    # -- push -----------------------------------------------------------------------------------------------
    async def push(self, source: str, rows: list[dict], principal=None, key: str | None = None,
                   audit: dict | None = None) -> Receipt:
        """Rows pushed over HTTP. With an idempotency ``key`` the push is its own stream (a retry is a no-op).

        ``audit``: the request's audit block (``grid.gateway.audit.audit_of``); each shard records it, with the
        source, the batch id and that customer's rows accepted and quarantined, on every customer the push
        names (``grid.audit``), in the same WAL record as the rows."""
        src = self.registry.get(source)
        if src.kind not in ("push", "folder"):
            raise InvalidInput(f"source {source!r} is a {src.kind} source and takes no pushed rows", field="source")
        customer = principal is not None and principal.role == "customer"
        if customer and not src.spec.get("customer_entry"):
            from grid.errors import Forbidden

            raise Forbidden(f"source {source!r} does not take customer entry", field="source")
        async with self.lock(src.name):
            if key:
                stream, first = f"push:{principal.key_id if principal else '-'}:{key}", 1
            else:
                # push batches are numbered by time (ns), after the last one; after a restart, past the highest
                # offset any shard holds: a clock stepped back must not make a push look applied (and skipped)
                if src.name not in self._push_seq:
                    views = await self.grid.aimport_view(src.name)
                    held = max((int(v["streams"]["push"]["offset"]) for v in views if "push" in v["streams"]),
                               default=0)
                    self._push_seq[src.name] = held
                # in microseconds: below 2^53, so a JSON client (the console's JavaScript) reads positions and
                # audit batch ids exactly (a nanosecond id came back rounded: ...580879 shown as ...581000)
                first = max(time.time_ns() // 1000, self._push_seq[src.name] + 1)
                stream = "push"
            if not key:
                self._push_seq[src.name] = first + len(rows) - 1
            pos = {"stream": stream, "offset": first + len(rows) - 1, "batch": first}
            batch = Batch(pos, rows, offsets=list(range(first, first + len(rows))))
            if audit is not None:
                changes = {**(audit.get("changes") or {}), "source": src.name, "stream": stream, "batch": first,
                           "push_rows": len(rows)}
                token = PUSH_AUDIT.set({**audit, "changes": changes})
            try:
                return await self.write_batch(src, batch, principal=principal if customer else None, per_row=True)
            finally:
                if audit is not None:
                    PUSH_AUDIT.reset(token)

    # -- one batch --------------------------------------------------------------------------------------------
    def prepare(self, src: Source, batch: Batch, unchanged_digests: np.ndarray | None = None) -> "Prepared":
        """The CPU part of a batch (row digests, rows a rewritten file already held, mapping): no I/O."""
        hashes = row_hashes(batch.rows) if len(batch) else np.zeros(0, np.uint64)
        dropped = 0
        if unchanged_digests is not None and len(batch):
            same = np.isin(hashes, unchanged_digests)
            if same.any():  # a rewritten file: rows its old version held are not written again
                dropped = int(same.sum())
                keep = np.flatnonzero(~same)
                rows = batch.rows.take(keep) if hasattr(batch.rows, "take") else [batch.rows[i] for i in keep]
                offs = batch.offset_array()[keep]
                batch = Batch(batch.position, rows, offsets=offs, rejected=batch.rejected)
        return Prepared(batch, src.mapping.apply(batch.rows), hashes, dropped)

    async def write_batch(self, src: Source, batch: Batch, principal=None, per_row: bool = False) -> Receipt:
        return await self.commit(src, self.prepare(src, batch), principal, per_row)

    async def commit(self, src: Source, prep: "Prepared", principal=None, per_row: bool = False,
                     known: dict | None = None) -> Receipt:
        """Link, quarantine and write a prepared batch; progress is counted here. ``known``: keys resolved by
        earlier batches of the same file (see grid.imports.routing)."""
        prog = self._progress(src.name)
        prog.state = "running"
        t0 = time.perf_counter()
        batch = prep.batch
        try:
            rcpt = await self._write_batch(src, batch, prep.mapped, principal, per_row, known,
                                           keep_raw=not prep.from_file)
        except ContextGridError as exc:
            prog.state, prog.last_error = "failed", exc.detail
            raise
        rcpt.unchanged += prep.dropped
        prog.state = "idle"
        prog.batches += 1
        prog.rows_read += len(batch) + len(batch.rejected) + prep.dropped
        prog.rows_applied += rcpt.applied
        prog.rows_unchanged += rcpt.unchanged
        prog.rows_skipped += rcpt.skipped
        prog.rows_quarantined += rcpt.quarantined
        prog.last_position = batch.position
        prog.lag_s = round(time.perf_counter() - t0, 4)
        prog.last_applied_at = time.time()
        return rcpt

    async def _write_batch(self, src: Source, batch: Batch, mapped, principal, per_row: bool,
                           known: dict | None = None, keep_raw: bool = True) -> Receipt:
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

    # -- quarantine -------------------------------------------------------------------------------------------
    async def quarantined(self, source: str) -> list[dict]:
        """The source's quarantine, plus rows a shard refused whose entry was lost (the importer died between
        the shard's acknowledgement and its own quarantine write), recovered with their row
        (``grid.imports.quarantine.recover``)."""
        src = self.registry.get(source)
        views = await self.grid.aimport_view(source)
        return await asyncio.get_running_loop().run_in_executor(None, recover, self.quarantine, self.files, src,
                                                                views)

    async def replay(self, source: str) -> Receipt:
        """Run a source's quarantined rows through its current mapping; rows that go through leave quarantine."""
        src = self.registry.get(source)
        await self.quarantined(source)  # refusals whose entry was lost come back first
        entries = [e for e in self.quarantine.entries(source) if e.get("row") is not None
                   and e.get("reason") != "malformed"]
        malformed = [e for e in self.quarantine.entries(source) if e.get("reason") == "malformed"]
        if not entries:
            return Receipt()
        gen = int(time.time_ns())
        stream = f"replay:{gen}"
        self.quarantine.resolve(source, [e["id"] for e in entries])
        self.quarantine.replace(source, malformed)  # entries that fail again are re-added by the batch
        try:
            batch = Batch({"stream": stream, "offset": len(entries)}, [e["row"] for e in entries])
            async with self.lock(src.name):
                return await self.write_batch(src, batch)
        except BaseException:
            self.quarantine.add(source, entries)  # not replayed: back as they were
            raise
