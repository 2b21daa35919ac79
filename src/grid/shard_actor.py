"""The Ray actor around :class:`grid.shard.Shard`: names, options, durability and the write path.

A shard actor is an asyncio actor. A write is checked and applied on the actor's event loop (so log order is
apply order and no lock is needed), submitted to the write-ahead log in the same step, and acknowledged only
once the log says it is durable. Ray restarts a dead actor by running its constructor again; the constructor
rebuilds the state from the newest valid snapshot plus the log after it, so an acknowledged write survives.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import ray

from grid.errors import ContextGridError, ShardUnavailable
from grid.identity import reads as identity_reads
from grid.shard import Shard, from_snapshot, to_snapshot
from grid.snapshots import SnapshotStore
from grid.wal import WriteAheadLog

log = logging.getLogger(__name__)

ACTOR_PREFIX = "contextgrid-shard-"
READ_METHODS = ("accounts", "customer_bills", "customer_usage", "list", "checksum", "stats", "changes_since",
                "sp_owners")


def actor_name(shard_id: int) -> str:
    return f"{ACTOR_PREFIX}{shard_id}"


class ShardServer:
    """Methods the grid calls on a shard (the body of the Ray actor)."""

    def __init__(self, shard_id: int, partitions: list[int], data_dir: str, timezone: str,
                 fsync: str = "batch", snapshot_every: int = 50_000):
        t0 = time.perf_counter()
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshots = SnapshotStore(self.dir / "snapshots")
        self.snapshot_every = snapshot_every
        self.writes_since_snapshot = 0
        self._snapshotting: asyncio.Lock | None = None
        snap = self.snapshots.latest()
        if snap is not None:
            self.shard = from_snapshot(snap.tables, snap.blobs)
            base_seq = snap.seq
        else:
            self.shard = Shard(shard_id, partitions, timezone)
            base_seq = 0
        self._owned_file = self.dir / "owned.json"  # moves rewrite it; it beats the constructor's (stale) argument
        if self._owned_file.exists():
            self.shard.owned[:] = False
            self.shard.owned[json.loads(self._owned_file.read_text())] = True
        else:
            self._save_owned()
        self.wal = WriteAheadLog(self.dir / "wal", fsync=fsync)
        replayed = 0
        for _, op in self.wal.replay(after_seq=base_seq):
            try:
                self.shard.apply(op)
            except ContextGridError as exc:  # checked before it was logged; a failure here is a bug to see
                log.error("shard %s: replay of write %s failed: %s", shard_id, op.get("write_id"), exc)
            replayed += 1
        self.wal.skip_to(base_seq)
        self.shard.drop_unowned()
        self.recovery = {"snapshot_seq": base_seq, "replayed": replayed,
                         "seconds": round(time.perf_counter() - t0, 3)}
        self.started = time.time()
        log.info("shard %s ready: %s", shard_id, self.recovery)

    # -- status -------------------------------------------------------------------------------------------
    async def ready(self) -> dict:
        return self.stats()

    def stats(self) -> dict:
        s = self.shard.stats()
        s["node_id"] = ray.get_runtime_context().get_node_id()
        s["pid"] = os.getpid()
        s["uptime_s"] = round(time.time() - self.started, 3)
        s["wal_seq"] = self.wal.last_seq
        s["recovery"] = self.recovery
        s["data_dir"] = str(self.dir)
        return s

    # -- loading ------------------------------------------------------------------------------------------
    async def load_chunk(self, base_dir: str, chunk: int) -> int:
        # Parquet decoding releases the GIL: read in a thread so reads keep being served, but apply on the
        # event loop, one chunk at a time (concurrent chunks once raced on the usage stores' rows).
        part = await asyncio.get_running_loop().run_in_executor(None, self.shard.read_chunk, base_dir, chunk)
        return self.shard.apply_chunk(part)

    async def finish_load(self) -> dict:
        """End a bulk load: bulk loads bypass the log, so the loaded state is made durable as a snapshot."""
        self.shard.finish_load()
        await self.snapshot()
        return self.stats()

    # -- reads --------------------------------------------------------------------------------------------
    async def get(self, customer_id: str) -> dict:
        return self.shard.get(customer_id)

    async def get_many(self, customer_ids: list[str]) -> list[dict | None]:
        return self.shard.get_many(customer_ids)

    # imports: the key lookups rows are linked by, and a source's progress on this shard
    async def import_keys(self, keys: dict) -> dict:
        return self.shard.imports.lookup(self.shard, keys)

    async def import_view(self, source: str) -> dict:
        return self.shard.imports.view(source)

    async def call(self, method: str, *args) -> Any:
        """Read-only views by name."""
        if method not in READ_METHODS:
            raise AttributeError(method)
        return getattr(self.shard, method)(*args)

    async def run(self, fn: Callable, *args) -> Any:
        """Scatter-gather: ``fn(shard, *args)`` on this shard's state."""
        return fn(self.shard, *args)

    # -- identity (grid.identity: lookups and reads; its writes go through write()) ------------------------
    async def identity_lookup(self, queries: list[tuple[str, list]], deterministic: tuple, max_block: int) -> list:
        return identity_reads.lookup(self.shard, queries, deterministic, max_block)

    async def identity_view(self, customer_id: str) -> dict:
        return identity_reads.view(self.shard, customer_id)

    async def identity_reviews(self, state: str | None, after: str | None, limit: int) -> list[dict]:
        return identity_reads.reviews(self.shard, state, after, limit)

    async def identity_review(self, review_id: str) -> dict | None:
        return identity_reads.review(self.shard, review_id)

    # -- writes -------------------------------------------------------------------------------------------
    async def write(self, op: dict) -> dict:
        op = self.shard.prepare(op)
        if op["write_id"] in self.shard.applied:
            # a retry: make sure the first attempt is durable before acknowledging again
            await asyncio.get_running_loop().run_in_executor(None, self.wal.sync)
            out = dict(self.shard.applied[op["write_id"]])
        else:
            _, durable = self.wal.submit_awaitable(op)  # raises ShardUnavailable if the log is unwritable
            out = dict(self.shard.apply(op))
            try:
                await durable
            except ShardUnavailable:
                # applied in memory but not durable: fail-stop so Ray restarts us from disk
                log.critical("shard %s: WAL failed after apply; restarting from disk", self.shard.shard_id)
                os._exit(70)
            self.writes_since_snapshot += 1
            if self.writes_since_snapshot >= self.snapshot_every:
                asyncio.ensure_future(self.snapshot())
        if op["kind"] in ("patch", "replace"):
            out["record"] = self.shard.records[op["customer_id"]]
        return out

    # -- decisions: events, next best action, responses, audit (logic in grid.decisions) ----------------------
    async def append_events(self, ops: list[dict], decide: dict | None = None) -> dict:
        """Write event ops (all checked before any is logged); with ``decide``, decide for their customers."""
        from grid.decisions import service

        return await service.append_events(self, ops, decide)

    async def next_best_action(self, customer_id: str, decide: dict) -> dict:
        from grid.decisions import service

        return (await service.decide_and_record(self, [customer_id], decide, {}))[0]

    async def customer_events(self, customer_id: str, limit: int) -> dict:
        from grid.decisions import service

        return service.events_view(self.shard, customer_id, limit)

    async def customer_decisions(self, customer_id: str, limit: int) -> list[dict]:
        from grid.decisions import service

        return service.decisions_view(self.shard, customer_id, limit)

    # -- moving partitions ------------------------------------------------------------------------------------
    def _save_owned(self) -> None:
        tmp = self._owned_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([int(p) for p in self.shard.owned.nonzero()[0]]))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self._owned_file)

    async def export_partitions(self, partitions: list[int]) -> dict:
        payload = self.shard.export_partitions(partitions)
        self._save_owned()
        return payload

    async def import_partitions(self, payload: dict) -> int:
        """Take partitions over and make them durable here (a snapshot) before the table points at us."""
        n = self.shard.import_partitions(payload)
        self._save_owned()
        await self.snapshot()
        return n

    async def drop_partitions(self, partitions: list[int]) -> int:
        n = self.shard.drop_partitions(partitions)
        self._save_owned()
        await self.snapshot()
        return n

    async def reown_partitions(self, partitions: list[int]) -> None:
        """Undo an export whose import failed."""
        self.shard.owned[partitions] = True
        self._save_owned()

    async def snapshot(self) -> dict:
        """Write a snapshot of the current state and truncate the log behind the oldest kept snapshot."""
        if self._snapshotting is None:
            self._snapshotting = asyncio.Lock()
        async with self._snapshotting:
            seq = self.wal.last_seq  # every submitted write is already applied (same event-loop step)
            tables, blobs = to_snapshot(self.shard)
            self.writes_since_snapshot = 0
            loop = asyncio.get_running_loop()

            def persist():
                self.wal.sync()  # a snapshot through seq S needs the log durable through S
                snap = self.snapshots.write(seq, tables, blobs)
                self.wal.truncate_through(self.snapshots.oldest_kept_seq())
                return snap

            t0 = time.perf_counter()
            snap = await loop.run_in_executor(None, persist)
            return {"shard": self.shard.shard_id, "seq": snap.seq, "path": str(snap.path),
                    "seconds": round(time.perf_counter() - t0, 3)}


ShardActor = ray.remote(ShardServer)


def actor_options(shard_id: int, namespace: str) -> dict:
    return dict(
        name=actor_name(shard_id),
        namespace=namespace,
        get_if_exists=True,
        # an actor mostly waits, so it reserves almost no CPU; not zero: Ray's SPREAD ignores zero-CPU actors
        # (both shards landed on one node of a two-node cluster)
        num_cpus=0.01,
        max_restarts=-1,
        max_task_retries=-1,  # at-least-once delivery; write ids make every write apply once
        max_concurrency=1000,
        scheduling_strategy="SPREAD",
    )
