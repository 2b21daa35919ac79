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

This module reads (files, pushes, quarantine replays), maps and counts progress; steps 2-5 of a batch are
``grid.imports.batch_writer``.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import ContextGridError, InvalidInput
from grid.imports.batch_writer import PUSH_AUDIT, BatchWriter, Receipt
from grid.imports.files import FileLedger, row_hashes
from grid.imports.quarantine import Quarantine, recover
from grid.imports.readers import Batch, open_file
from grid.imports.sources import Source, SourceRegistry


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



class Importer:
    """See the module docstring."""

    def __init__(self, grid, data_dir: str | Path):
        self.grid = grid
        self.data_dir = Path(data_dir)
        self.registry = SourceRegistry(self.data_dir / "sources")
        self.quarantine = Quarantine(self.data_dir / "imports" / "quarantine")
        self.files = FileLedger(self.data_dir / "imports" / "files.json")
        self.writer = BatchWriter(grid, self.quarantine)  # link, quarantine, write one batch
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
            rcpt = await self.writer.write(src, batch, prep.mapped, principal, per_row, known,
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
