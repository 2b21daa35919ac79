"""Following a database source: read its changes as they commit, write them, then let the database forget them.

One task per ``kind: postgres`` source (started and stopped with the folder watchers, :mod:`grid.imports.watch`,
so editing the source file restarts it). Source options::

    location: "env:BILLING_DSN"           # the DSN, or env:NAME to read it from the environment
    options:
      table: accounts                     # the table this source maps
      mode: logical                       # logical (slot + snapshot, the default) | poll
      slot: contextgrid_billing_accounts  # logical: the replication slot (default: from the source name)
      change_column: updated_at           # poll: the change column; key: the primary key (poll needs it)
      on_delete: {status: C}              # logical: values a deleted row takes before it is mapped
      interval_ms: 200                    # how often to look for new commits when caught up

The loop: resume from the lowest position the shards hold (the changes stream, else the snapshot stream),
read a batch in a worker thread, write it through :meth:`Importer.write_batch` (durable on every shard when it
returns), then :meth:`PostgresReader.confirm` it, so the slot never moves past what the grid holds. A lost
connection or a shard that stays down makes the loop back off and resume from the shards' position.
"""
from __future__ import annotations

import asyncio
import logging
import os

from grid.errors import InvalidInput
from grid.imports.readers.postgres import PollingReader, PostgresReader, slot_name

log = logging.getLogger(__name__)
BACKOFF_S = (0.5, 1, 2, 5, 10)


def dsn_of(src) -> str:
    """The source's DSN: ``location`` itself, or ``env:NAME`` read from the environment (no secret in a file)."""
    loc = src.location or ""
    if loc.startswith("env:"):
        value = os.environ.get(loc[4:])
        if not value:
            raise InvalidInput(f"source {src.name!r}: environment variable {loc[4:]} (its DSN) is not set",
                               field=f"{src.file}:location")
        return value
    if not loc:
        raise InvalidInput(f"source {src.name!r} needs location (a DSN)", field=f"{src.file}:location")
    return loc


def open_reader(src):
    """The reader a postgres source's options ask for."""
    o = src.options
    table = o.get("table")
    if not table:
        raise InvalidInput(f"source {src.name!r} needs options.table", field=f"{src.file}:options.table")
    dsn = dsn_of(src)
    batch_rows = int(o.get("batch_rows", 10_000))
    if o.get("mode", "logical") == "poll":
        return PollingReader(dsn, table, change_column=o.get("change_column", "updated_at"),
                             key=o.get("key", "id"), schema=o.get("schema", "public"), batch_rows=batch_rows)
    return PostgresReader(dsn, table, o.get("slot") or slot_name(src.name), schema=o.get("schema", "public"),
                          key=o.get("key"), batch_rows=batch_rows, on_delete=o.get("on_delete"))


async def resume_at(importer, src, reader) -> dict | None:
    if isinstance(reader, PollingReader):
        return await importer.resume_position(src.name, reader.stream)
    changes = await importer.resume_position(src.name, reader.changes_stream)
    if changes is not None:
        return changes
    return await importer.resume_position(src.name, reader.snapshot_stream)


async def follow_database(importer, src, stop: asyncio.Event) -> None:
    """Import ``src``'s committed changes until ``stop`` is set (see the module docstring)."""
    interval = int(src.options.get("interval_ms", 200)) / 1000
    loop = asyncio.get_running_loop()
    failures = 0
    reader = None
    done = object()
    while not stop.is_set():
        try:
            if reader is None:
                reader = await loop.run_in_executor(None, open_reader, src)
                after = await resume_at(importer, src, reader)
            gen = reader.batches(after)
            moved = False
            while not stop.is_set():
                batch = await loop.run_in_executor(None, next, gen, done)
                if batch is done:
                    break
                async with importer.lock(src.name):
                    await importer.write_batch(src, batch)
                if hasattr(reader, "confirm"):
                    await loop.run_in_executor(None, reader.confirm, batch.position)
                after, moved = batch.position, True
            gen.close()
            failures = 0
            if not moved:
                try:
                    await asyncio.wait_for(stop.wait(), interval)
                except asyncio.TimeoutError:
                    pass
        except Exception as exc:  # noqa: BLE001 - a follower outlives a bad spell (database or shards down)
            prog = importer._progress(src.name)
            prog.state, prog.last_error = "retrying", getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
            log.warning("database source %s: %s; retrying", src.name, prog.last_error)
            if reader is not None:
                await loop.run_in_executor(None, getattr(reader, "close", lambda: None))
                reader = None
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                pass
    if reader is not None:
        await loop.run_in_executor(None, getattr(reader, "close", lambda: None))
