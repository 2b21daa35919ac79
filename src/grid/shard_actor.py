"""The Ray actor around :class:`grid.shard.Shard`: names, options, durability and the write path.

A shard actor is an asyncio actor reached only through the named methods of :class:`ShardServer`. Every state
change goes through :meth:`ShardServer._commit`: checked (``Shard.prepare``), submitted to the write-ahead log
and applied in the same event-loop step (so log order is apply order and no lock is needed), and acknowledged
only once the log says it is durable. Ray restarts a dead actor by running its constructor again; the
constructor rebuilds the state from the newest valid snapshot plus the log after it, so an acknowledged write
survives.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import time
from pathlib import Path
import uuid

import ray

from grid import balances, billrun, classification, whatif
from grid.durable import durable_write
from grid.errors import DataCorrupt, ShardUnavailable
from grid.identity import portfolios as identity_portfolios, reads as identity_reads
from grid.shard import Shard, from_snapshot, to_snapshot
from grid.snapshots import SnapshotStore
from grid.wal import WriteAheadLog

log = logging.getLogger(__name__)

ACTOR_PREFIX = "contextgrid-shard-"


def actor_name(shard_id: int) -> str:
    return f"{ACTOR_PREFIX}{shard_id}"


class ShardServer:
    """Methods the grid calls on a shard (the body of the Ray actor)."""

    def __init__(self, shard_id: int, partitions: list[int], data_dir: str, timezone: str,
                 fsync: str = "batch", snapshot_every: int = 50_000, wal_segment_bytes: int = 64 << 20):
        t0 = time.perf_counter()
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard_id = shard_id
        self.snapshots = SnapshotStore(self.dir / "snapshots")
        self.snapshot_every = snapshot_every
        self.writes_since_snapshot = 0
        self._snapshotting: asyncio.Lock | None = None
        self._owned_file = self.dir / "owned.json"  # moves rewrite it; it beats the constructor's (stale) argument
        self.apply_failures = 0
        self.wal: WriteAheadLog | None = None
        self.stopped: DataCorrupt | None = None
        self.started = time.time()
        self._identity_build: asyncio.Future | None = None  # identity: the index being built in slices
        # contacts: outages planned (plan_event) and not yet committed or dropped, by event id -> (ops, summary);
        # transient (a restart in between re-plans at commit), a handful at most (see plan_event)
        self._planned_events: dict[str, tuple[list[dict], dict]] = {}
        # What-ifs run in these threads, not on the event loop: a heavy scenario must not delay every other
        # customer of the shard (writes, reads, alerts). They only read (records are replaced, never mutated;
        # usage cells are written in place, so a what-if sees each cell old or new); the bill kernel releases
        # the GIL. Two threads: the gateway already caps heavy calls per key.
        self._whatif_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="whatif")
        try:
            self.shard: Shard = self._recover(shard_id, partitions, timezone, fsync, wal_segment_bytes)
        except DataCorrupt as exc:
            # Damaged durable state: stay up but serve nothing (every call answers 503 naming the file) rather
            # than start from partial state; Ray would only run this constructor again.
            self.stopped = exc
            self.shard = _Stopped(exc)
            self.recovery = {"stopped": exc.detail, "file": exc.file}
            log.critical("shard %s stopped: %s", shard_id, exc.detail)
            return
        self.recovery["seconds"] = round(time.perf_counter() - t0, 3)
        log.info("shard %s ready: %s", shard_id, self.recovery)

    def _recover(self, shard_id: int, partitions: list[int], timezone: str, fsync: str,
                 segment_bytes: int) -> Shard:
        """The state as of the last acknowledged write: newest verifiable snapshot + the log after it.

        Raises DataCorrupt when that cannot be had in full: snapshots exist but none verifies, the log does
        not reach back to the snapshot (or to seq 1 without one), or a closed log segment is damaged.
        """
        snap = self.snapshots.latest()
        if snap is None and self.snapshots.count():
            raise DataCorrupt(f"no snapshot in {self.snapshots.directory} verifies ({self.snapshots.count()} found; "
                              "see the log for why): restore one from a backup, then restart the shard",
                              file=str(self.snapshots.directory))
        shard = from_snapshot(snap.tables, snap.blobs) if snap is not None else Shard(shard_id, partitions, timezone)
        base_seq = snap.seq if snap is not None else 0
        if self._owned_file.exists():
            shard.owned[:] = False
            shard.owned[json.loads(self._owned_file.read_text())] = True
        self.wal = WriteAheadLog(self.dir / "wal", fsync=fsync, segment_bytes=segment_bytes)
        first = self.wal.first_seq
        if first > base_seq + 1:
            raise DataCorrupt(f"the WAL in {self.wal.directory} starts at seq {first} but "
                              + (f"the newest verifiable snapshot ends at seq {base_seq}" if snap is not None
                                 else "there is no snapshot")
                              + f": writes {base_seq + 1}..{first - 1} are in neither; restore the missing "
                              "snapshot or WAL segments from a backup, then restart the shard",
                              file=str(self.wal.directory))
        replayed = failed = 0
        for _, op in self.wal.replay(after_seq=base_seq):
            try:
                shard.apply(op)
            except Exception as exc:  # noqa: BLE001 - checked before it was logged; a failure is a bug to see
                failed += 1
                log.error("shard %s: replay of write %s failed: %r", shard_id, op.get("write_id"), exc)
                # remember the id, so that a client retrying the write is not applied again after a restart
                shard.applied[op["write_id"]] = {"customer_id": op.get("customer_id"), "replay_failed": True}
            replayed += 1
        self.wal.skip_to(base_seq)
        self.shard = shard
        if not self._owned_file.exists():
            self._save_owned()
        shard.drop_unowned()
        self.apply_failures = failed
        self.recovery = {"snapshot_seq": base_seq, "replayed": replayed, "replay_failures": failed}
        return shard

    # -- status -------------------------------------------------------------------------------------------
    async def ready(self) -> dict:
        if self.stopped is None:
            self._build_identity()
        return self.stats()

    def stats(self) -> dict:
        if self.stopped is not None:
            return {"shard": self.shard_id, "status": "stopped", "error": self.stopped.detail,
                    "file": self.stopped.file, "wal_seq": self.wal.last_seq if self.wal is not None else None,
                    "data_dir": str(self.dir), "pid": os.getpid()}
        s = self.shard.stats()
        s["status"] = "ok"
        s["node_id"] = ray.get_runtime_context().get_node_id()
        s["pid"] = os.getpid()
        s["uptime_s"] = round(time.time() - self.started, 3)
        s["wal_seq"] = self.wal.last_seq
        s["apply_failures"] = self.apply_failures
        s["classification_failures"] = self.shard.classification.failures
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
        self._build_identity()
        return self.stats()

    # -- reads --------------------------------------------------------------------------------------------
    async def get(self, customer_id: str) -> dict:
        return self.shard.get(customer_id)

    async def get_many(self, customer_ids: list[str]) -> list[dict | None]:
        return self.shard.get_many(customer_ids)

    async def accounts(self, customer_id: str) -> list[dict]:
        return self.shard.accounts(customer_id)

    async def customer_bills(self, customer_id: str, period: str | None, account_id: str | None) -> list[dict]:
        return self.shard.customer_bills(customer_id, period, account_id)

    async def bill_statement(self, customer_id: str, account_id: str | None, as_of: str | None) -> dict:
        # portal: bills, each account's plan and the amount due in one read (grid.balances)
        return balances.bill_statement(self.shard, customer_id, account_id, as_of)

    async def customer_usage(self, customer_id: str, month: str, service_point_id: str | None,
                             resolution: str) -> dict:
        return self.shard.customer_usage(customer_id, month, service_point_id, resolution)

    async def customer_period(self, customer_id: str, period: str, tariff_dir: str) -> list[dict]:
        return billrun.customer_period(self.shard, customer_id, period, tariff_dir)

    async def list(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        return self.shard.list(filters, after, limit)

    async def sp_owners(self, sp_ids: list[str]) -> dict[str, str]:
        return self.shard.sp_owners(sp_ids)

    # imports: the key lookups rows are linked by, and a source's progress on this shard
    async def import_keys(self, keys: dict) -> dict:
        return self.shard.imports.lookup(self.shard, keys)

    async def import_view(self, source: str) -> dict:
        return self.shard.imports.view(source)

    async def changes_since(self, seq: int) -> tuple[int, list[str] | None]:
        return self.shard.changes_since(seq)

    async def checksum(self) -> str:
        return self.shard.checksum()

    async def membership(self) -> dict:
        """Customer ids held and partitions owned (for checks that every customer is on its own shard)."""
        return {"customers": sorted(self.shard.records),
                "partitions": [int(p) for p in self.shard.owned.nonzero()[0]]}

    async def ping(self) -> None:
        """A no-op: the cost of one call to a shard (benchmarks)."""

    # -- what-ifs on one customer's live data (grid.whatif), off the event loop --------------------------------
    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._whatif_pool, fn, self.shard, *args)

    async def current_bill(self, customer_id: str, as_of, catalogue) -> dict:
        return await self._off_loop(whatif.current_bill, customer_id, as_of, catalogue)

    async def plan_choices(self, customer_id: str, catalogue) -> dict:
        """Catalogue plans this customer may take (grid.whatif.eligibility)."""
        from grid.whatif.eligibility import plan_choices

        return await self._off_loop(plan_choices, customer_id, catalogue)

    async def scenarios(self, customer_id: str, request: dict, catalogue, as_of) -> dict:
        return await self._off_loop(whatif.scenarios, customer_id, request, catalogue, as_of)

    async def forecast(self, customer_id: str, months: int, catalogue, as_of) -> dict:
        return await self._off_loop(whatif.forecast, customer_id, months, catalogue, as_of)

    async def green(self, customer_id: str, factors: dict, as_of, months: int) -> dict:
        return await self._off_loop(whatif.green, customer_id, factors, as_of, months)

    # -- whole-shard computations ------------------------------------------------------------------------------
    async def bill_run(self, period: str, tariff_dir: str, tolerance_cents: int,
                       chunk: tuple[int, int] | None = None) -> dict:
        """Bill and reconcile this shard's accounts (chunk ``(i, k)`` of them) for ``period``; the outcomes are
        one logged write."""
        report, outcomes = billrun.compute_period(self.shard, period, tariff_dir, tolerance_cents,
                                                  tuple(chunk) if chunk is not None else None)
        await self._commit({"kind": "bill_outcomes", "customer_id": None, "write_id": uuid.uuid4().hex,
                            "body": outcomes})
        return report

    async def classify_links(self, rules) -> tuple[list[str], list[str], list[str]]:
        """Classification round 1 (see grid.classification)."""
        return classification.features_and_links(self.shard, rules)

    async def classify_accounts(self, portfolio_of: dict, rules):
        """Classification round 2."""
        return classification.account_round(self.shard, portfolio_of, rules)

    async def classify_store(self, portfolio_of: dict, portfolios: dict, rules) -> int:
        """Classification round 3: the results become one logged write; returns the contexts changed."""
        body = classification.store_round(self.shard, portfolio_of, portfolios, rules)
        out = await self._commit({"kind": "classification", "customer_id": None, "write_id": uuid.uuid4().hex,
                                  "body": body})
        return out["customers"]

    # -- identity (grid.identity: lookups and reads; its writes go through write()) ------------------------
    def _build_identity(self) -> asyncio.Future:
        """Index the customers in slices (after a recovery or a load), serving requests in between."""
        idx = self.shard.identity
        if self._identity_build is None or (self._identity_build.done() and not idx.built):
            async def build():
                while not idx.build_step(self.shard.records, 500):
                    await asyncio.sleep(0)

            self._identity_build = asyncio.ensure_future(build())
        return self._identity_build

    async def identity_lookup(self, queries: list[tuple[str, list]], deterministic: tuple, max_block: int) -> list:
        if not self.shard.identity.built:
            await asyncio.shield(self._build_identity())
        return identity_reads.lookup(self.shard, queries, deterministic, max_block)

    async def identity_entity_names(self, entity_ids: list[str]) -> dict[str, str]:
        """Legal names of these ownership entities as this shard's contexts hold them (portfolio roots)."""
        return identity_portfolios.entity_names(self.shard.records, entity_ids)

    async def identity_view(self, customer_id: str) -> dict:
        return identity_reads.view(self.shard, customer_id)

    async def identity_reviews(self, state: str | None, after: str | None, limit: int) -> list[dict]:
        return identity_reads.reviews(self.shard, state, after, limit)

    async def identity_review(self, review_id: str) -> dict | None:
        return identity_reads.review(self.shard, review_id)

    async def identity_pending_merges(self) -> list[dict]:
        return identity_reads.pending_merges(self.shard)

    # -- writes -------------------------------------------------------------------------------------------
    async def write(self, op: dict) -> dict:
        """A write from a client; a context write's result carries the new ``record``."""
        out = await self._commit(op)
        if op["kind"] in ("patch", "replace") and op["customer_id"] in self.shard.records:
            out["record"] = self.shard.records[op["customer_id"]]
        return out

    async def _commit(self, op: dict) -> dict:
        """The one apply path: prepare -> WAL append -> apply -> (version bump, change log) -> durable -> ack.

        A write that fails its check raises and commits nothing. Once the op is in the log it is answered as
        committed: an exception in apply (a bug: prepare checked the op) is logged, the customer's cached
        context is invalidated, and the actor stops so that Ray restarts it from disk (replay skips the op).
        """
        op = self.shard.prepare(op)
        if op["write_id"] in self.shard.applied:
            # a retry: make sure the first attempt is durable before acknowledging again
            await asyncio.get_running_loop().run_in_executor(None, self.wal.sync)
            return dict(self.shard.applied[op["write_id"]])
        _, durable = self.wal.submit_awaitable(op)  # raises ShardUnavailable if the log is unwritable
        try:
            out = dict(self.shard.apply(op))
        except Exception:  # noqa: BLE001 - see the docstring
            self.apply_failures += 1
            log.critical("shard %s: apply of logged write %s failed; restarting from disk", self.shard.shard_id,
                         op["write_id"], exc_info=True)
            if op.get("customer_id") is not None:
                self.shard.changed(op["customer_id"])
            await asyncio.shield(durable)
            os._exit(70)
        try:
            await durable
        except ShardUnavailable:
            # applied in memory but not durable: fail-stop so Ray restarts us from disk
            log.critical("shard %s: WAL failed after apply; restarting from disk", self.shard.shard_id)
            os._exit(70)
        self.writes_since_snapshot += 1
        if self.writes_since_snapshot >= self.snapshot_every:
            asyncio.ensure_future(self.snapshot())
        return out

    # -- contacts: events that alert and the outbox (logic in grid.contacts) -----------------------------
    async def declare_event(self, event: dict, ack_within_s: float) -> dict:
        """An outage on this shard's customers: plan its notifications and make them durable."""
        await self.plan_event(event, ack_within_s)
        return await self.commit_event(event, ack_within_s)

    async def plan_event(self, event: dict, ack_within_s: float) -> dict:
        """First half of a declaration: plan the outage here, write nothing; its summary with ``matched`` (what
        of the selector this shard's service points matched). The grid commits it only if some shard matched
        (an outage naming only unknown ids is refused with nothing written)."""
        from grid.contacts.events import outage_ops

        ops, summary = outage_ops(self.shard, event, ack_within_s)
        while len(self._planned_events) >= 8:  # abandoned plans (a gateway died between the halves)
            self._planned_events.pop(next(iter(self._planned_events)))
        self._planned_events[event["id"]] = (ops, summary)
        return summary

    async def commit_event(self, event: dict, ack_within_s: float, extra: dict | None = None) -> dict:
        """Second half: write what :meth:`plan_event` planned (planned again if this actor restarted since);
        ``extra`` (the grid-wide ``unmatched``) is kept with the event. Returns the summary without ``matched``."""
        from grid.contacts.events import outage_ops

        planned = self._planned_events.pop(event["id"], None)
        ops, summary = planned or outage_ops(self.shard, event, ack_within_s)
        if extra:
            for o in ops:
                o["body"]["event"] = {**o["body"]["event"], **extra}  # the write ids hang on the nids, unchanged
        await self._enqueue_chunks(ops)
        return {k: v for k, v in summary.items() if k != "matched"}

    async def drop_event(self, event_id: str) -> None:
        """A planned outage the grid refused: forget the plan."""
        self._planned_events.pop(event_id, None)

    async def declare_restoration(self, outage_id: str, restored_at: str, audit: dict | None = None) -> dict | None:
        from grid.contacts.events import restoration_ops

        ops, n = restoration_ops(self.shard, outage_id, restored_at, audit)
        if ops is None:
            return None
        await self._enqueue_chunks(ops)
        return {"notifications": n}

    async def declare_notice(self, notice: dict) -> int:
        from grid.contacts.events import notice_ops

        ops, n = notice_ops(self.shard, notice)
        await self._enqueue_chunks(ops)
        return n

    async def _enqueue_chunks(self, ops: list[dict]) -> None:
        """An event's enqueue ops (``grid.contacts.events.enqueue_ops``) in order, each applied before the next is
        logged and the dispatcher's claims served between them; returns once all are durable."""
        writes = []
        for o in ops:
            writes.append(asyncio.ensure_future(self.write(o)))
            await asyncio.sleep(0)  # this chunk is applied (WAL order = chunk order); let waiting reads in
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result  # not acknowledged: a retried declaration writes what is missing

    async def escalate_overdue(self, now: float, fallback: dict | None) -> int:
        from grid.contacts.events import escalation_op

        o = escalation_op(self.shard, now, fallback)
        if o is None:
            return 0
        await self.write(o)
        return len(o["body"]["notifications"])

    async def outbox_due(self, now: float, limit: int) -> list[dict]:
        return self.shard.outbox.due(now, limit)

    async def outbox_group(self, group: str, state: str | None, limit: int) -> dict | None:
        return self.shard.outbox.group_status(group, state, limit)

    async def outbox_customer(self, customer_id: str) -> list[dict]:
        return self.shard.outbox.for_customer(customer_id)

    async def outbox_has(self, nid: str) -> bool:
        return nid in self.shard.outbox.items

    async def outbox_held(self, nids: list[str]) -> list[str]:
        """Which of these messages this shard serves (a partition move may have taken the others)."""
        return [nid for nid in nids if nid in self.shard.outbox.items]

    async def outbox_handover(self) -> dict:
        """This shard's whole outbox, for a survivor to absorb before the shard is removed (scale-down)."""
        from grid.contacts.moves import handover

        return handover(self.shard.outbox)

    async def outbox_forget(self) -> None:
        """After a survivor absorbed :meth:`outbox_handover` durably: hold none of it (a shard started again
        later in this directory must not count it twice). Durable by a snapshot, as a partition drop is."""
        from grid.contacts.outbox import Outbox

        self.shard.outbox = Outbox()
        await self.snapshot()

    async def outbox_awaiting_reply(self, address: str) -> list[str]:
        return self.shard.outbox.awaiting_reply(address)

    async def search(self, query: str, limit: int) -> list[dict]:
        """Console search over this shard's contexts (grid.contacts.search)."""
        from grid.contacts.search import search

        return search(self.shard.records, query, limit)

    # -- decisions: events, next best action, responses, audit (logic in grid.decisions) ----------------------
    async def append_events(self, ops: list[dict], decide: dict | None = None) -> dict:
        """Write event ops (all checked before any is logged); with ``decide``, decide for their customers."""
        from grid.decisions import service

        return await service.append_events(self, ops, decide)

    async def next_best_action(self, customer_id: str, decide: dict) -> dict:
        from grid.decisions import service

        return (await service.decide_and_record(self, [customer_id], decide, {}))[0]

    async def score_churn(self, model, path: str, write_id: str) -> dict:
        """Score every customer here with ``model`` (handed over once per run as an ObjectRef) and log it."""
        from grid.decisions import service

        return await service.score_base(self, model, path, write_id)

    async def customer_events(self, customer_id: str, limit: int) -> dict:
        from grid.decisions import service

        return service.events_view(self.shard, customer_id, limit)

    async def propensities(self) -> dict[str, list[float]]:
        """Responses counted per "action|segment" on this shard (on top of the catalogue's prior)."""
        return dict(self.shard.decisions.propensity)

    async def customer_audit(self, customer_id: str, limit: int) -> list[dict]:
        return self.shard.audit.of(customer_id, limit)

    async def customer_decisions(self, customer_id: str, limit: int) -> list[dict]:
        from grid.decisions import service

        return service.decisions_view(self.shard, customer_id, limit)

    # -- moving partitions ------------------------------------------------------------------------------------
    def _save_owned(self) -> None:
        durable_write(self._owned_file, json.dumps([int(p) for p in self.shard.owned.nonzero()[0]]).encode())

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
        self.shard.reown_partitions(partitions)
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


class _Stopped:
    """Stands in for the state of a shard that refused to start: every use raises its DataCorrupt again."""

    def __init__(self, error: DataCorrupt):
        self._error = error

    def __getattr__(self, name):
        raise DataCorrupt(self._error.detail, file=self._error.file)


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
