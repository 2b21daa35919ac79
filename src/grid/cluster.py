"""``grid.Grid``: start or join a Ray cluster, own the shard actors, route calls to the owning shard.

The grid client owns orchestration: one async method per operation (``a*``: reads, writes, what-ifs, bill
runs, classification, snapshots, scaling), used in-process by the gateway, whose handlers make one call each;
the sync methods are a thin facade over them for the CLI, tests and notebooks. Ray's errors are translated
here (:meth:`Grid._aget`), and every call routed to a customer's shard is retried once when the partition moved
under it (:class:`~grid.errors.WrongShard`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from grid import billrun
from grid.base import read_manifest
from grid.errors import ContextGridError, InvalidInput, NotFound, ShardUnavailable, WrongShard
from grid.partitions import PartitionTable, partition_of
from grid.rules import classify_portfolios, merge_keyed, rank_profitability, resolve_portfolios
from grid.settings import Settings
from grid.shard_actor import ShardActor, actor_name, actor_options

log = logging.getLogger(__name__)

BILL_RUN_CHUNKS = 4  # bill-run calls per shard: progress steps, and a shard's loop is free between them

try:  # ray >= 2.10 raises this while an actor restarts
    from ray.exceptions import ActorUnavailableError
except ImportError:  # pragma: no cover
    ActorUnavailableError = RayActorError


GridConfig = Settings  # settings: one object for the grid and its gateway (grid.settings)


def _unwrap(exc: BaseException) -> BaseException:
    """The contextgrid error inside a Ray task error, if there is one."""
    if isinstance(exc, RayTaskError):
        cause = exc.as_instanceof_cause()
        if isinstance(cause, ContextGridError):
            return cause
        inner = getattr(exc, "cause", None)
        if isinstance(inner, ContextGridError):
            return inner
    return exc


class Grid:
    """Handle on a running grid; see the module docstring."""

    def __init__(self, config: GridConfig):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(namespace=config.namespace, include_dashboard=False,
                                          log_to_driver=False, configure_logging=False)
            if config.address:
                kwargs["address"] = config.address
            else:
                kwargs["num_cpus"] = config.num_cpus or max(2, config.shards)
                # Ray starts workers at nice 15; the shard actors are the database, and on a machine shared with
                # other work they got a thirtieth of the gateway's CPU share (measured in bench/bench_outages.py)
                os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(**kwargs)
        self.table = PartitionTable.load_or_create(self.data_dir / "partition_table.json", config.shards)
        self.shards = [self._actor(i) for i in range(self.table.shards)]
        self.moving: dict[int, asyncio.Event] = {}
        # contacts: alert scatters (declare, restore, notices, escalations) and partition moves exclude each
        # other, so no scatter misses a customer whose partition is between two shards (see _alerting)
        self._alerts_running = 0
        self._alerts_paused = False
        self._scale_lock = asyncio.Lock()  # one scale at a time; bill runs wait for a scale to finish
        self._classify_lock = asyncio.Lock()  # classification rounds share scratch state on the shards
        self.classifying = False  # a classification is running (portfolio reads answer 503 meanwhile)
        self.classified: dict | None = None  # the latest full classification's result
        self.classify_failures = 0
        ray.get([s.ready.remote() for s in self.shards], timeout=120)

    @classmethod
    def start(cls, data_dir: str = "data/grid", shards: int = 2, address: str | None = None, **kw) -> "Grid":
        return cls(GridConfig(data_dir=data_dir, shards=shards, address=address, **kw))

    def _actor(self, shard_id: int):
        shard_dir = self.data_dir / "shards" / f"shard-{shard_id}"
        return ShardActor.options(**actor_options(shard_id, self.config.namespace)).remote(
            shard_id, self.table.partitions_of_shard(shard_id), str(shard_dir), self.config.timezone,
            self.config.fsync, wal_segment_bytes=self.config.wal_segment_bytes)

    # -- routing ------------------------------------------------------------------------------------------
    def shard_index(self, customer_id: str) -> int:
        return self.table.shard_of(customer_id)

    def owner(self, customer_id: str):
        return self.shards[self.shard_index(customer_id)]

    def _get(self, ref, timeout: float | None = None):
        try:
            return ray.get(ref, timeout=timeout or self.config.call_timeout_s)
        except (RayActorError, ActorUnavailableError, GetTimeoutError) as exc:
            raise ShardUnavailable("shard is unavailable; retry shortly", retry_after=1) from exc
        except RayTaskError as exc:
            raise _unwrap(exc) from None

    async def _aget(self, ref, timeout: float | None = None):
        try:
            return await asyncio.wait_for(ref, timeout or self.config.call_timeout_s)
        except (RayActorError, ActorUnavailableError, asyncio.TimeoutError) as exc:
            raise ShardUnavailable("shard is unavailable; retry shortly", retry_after=1) from exc
        except RayTaskError as exc:
            raise _unwrap(exc) from None

    # -- loading ------------------------------------------------------------------------------------------
    def load(self, base_dir: str | Path, progress: Callable[[int], None] | None = None) -> int:
        """Load a generated base into the shards, every shard reading every chunk in parallel.

        ``progress(n)`` is called with the number of customers loaded as each chunk finishes.
        """
        base_dir = str(Path(base_dir).resolve())
        manifest = read_manifest(base_dir)
        pending = {}
        for chunk in range(int(manifest["chunks"])):
            for s in self.shards:
                pending[s.load_chunk.remote(base_dir, chunk)] = chunk
        total = 0
        refs = list(pending)
        while refs:
            done, refs = ray.wait(refs, num_returns=1, timeout=self.config.call_timeout_s * 10)
            if not done:
                raise ShardUnavailable("loading stalled: a shard does not answer", retry_after=5)
            n = self._get(done[0], timeout=1)
            total += n
            if progress:
                progress(n)
        self._get([s.finish_load.remote() for s in self.shards])
        return total

    # -- sync facade (CLI, tests, notebooks) ---------------------------------------------------------------
    @staticmethod
    def _sync(coro):
        """Run one async operation to its end from synchronous code (in a thread of its own when this thread
        already runs an event loop: a notebook, an async test)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()

    def get(self, customer_id: str) -> dict:
        return self._get(self.owner(customer_id).get.remote(customer_id))

    def write(self, kind: str, customer_id: str, body: dict, write_id: str | None = None,
              if_match: str | None = None) -> dict:
        op = make_op(kind, customer_id, body, write_id, if_match)
        return self._get(self.owner(customer_id).write.remote(op))

    def patch(self, customer_id: str, body: dict, write_id: str | None = None) -> dict:
        return self.write("patch", customer_id, body, write_id)

    def replace(self, customer_id: str, body: dict, write_id: str | None = None) -> dict:
        return self.write("replace", customer_id, body, write_id)

    def append_usage(self, customer_id: str, readings: list[dict], write_id: str | None = None) -> dict:
        return self.write("usage", customer_id, {"readings": readings}, write_id)

    def customer_bills(self, customer_id: str, period: str | None = None, account_id: str | None = None):
        return self._get(self.owner(customer_id).customer_bills.remote(customer_id, period, account_id))

    def customer_usage(self, customer_id: str, month: str, service_point_id: str | None = None,
                       resolution: str = "interval") -> dict:
        return self._get(self.owner(customer_id).customer_usage.remote(customer_id, month, service_point_id,
                                                                        resolution))

    def customer_period(self, customer_id: str, period: str, tariff_dir: str = billrun.DEFAULT_TARIFF_DIR):
        return self._get(self.owner(customer_id).customer_period.remote(customer_id, period, tariff_dir))

    def membership(self) -> list[dict]:
        """Per shard: the customer ids it holds and the partitions it owns."""
        return self._get([s.membership.remote() for s in self.shards])

    def stats(self) -> list[dict]:
        return self._get([s.ready.remote() for s in self.shards])

    def checksum(self) -> str:
        import hashlib
        parts = self._get([s.checksum.remote() for s in self.shards])
        return hashlib.sha256("".join(parts).encode()).hexdigest()

    def list_customers(self, filters: dict | None = None, after: str | None = None, limit: int = 50) -> list[dict]:
        pages = self._get([s.list.remote(filters or {}, after, limit) for s in self.shards])
        return merge_pages(pages, limit)

    def bill_run(self, period: str, tariff_dir: str = billrun.DEFAULT_TARIFF_DIR, tolerance_cents: int = 0) -> dict:
        return self._sync(self.abill_run(period, tariff_dir, tolerance_cents))

    def classify(self, rules) -> dict:
        return self._sync(self.aclassify(rules))

    def snapshot(self) -> list[dict]:
        return self._sync(self.asnapshot())

    def scale(self, count: int) -> dict:
        return self._sync(self.ascale(count))

    # -- async API (gateway) ------------------------------------------------------------------------------
    async def route(self, customer_id: str) -> int:
        """The owning shard's index, waiting (bounded) while the customer's partition moves."""
        ev = self.moving.get(partition_of(customer_id))
        if ev is not None:
            try:
                await asyncio.wait_for(ev.wait(), self.config.move_wait_s)
            except asyncio.TimeoutError:
                raise ShardUnavailable("the customer's partition is moving; retry shortly", retry_after=1) from None
        return self.table.shard_of(customer_id)

    async def _routed(self, customer_id: str, method: str, *args, timeout: float | None = None):
        """Call ``method`` on the owning shard; re-route once if the partition moved under the call."""
        for attempt in (0, 1):
            shard = self.shards[await self.route(customer_id)]
            try:
                return await self._aget(getattr(shard, method).remote(*args),
                                        timeout or self.config.request_timeout_s)
            except WrongShard:
                if attempt:
                    raise

    async def aget(self, customer_id: str) -> dict:
        return await self._routed(customer_id, "get", customer_id)

    async def aget_many(self, shard_index: int, customer_ids: list[str]) -> list[dict | None]:
        """Contexts of customers routed to one shard (None: no such customer); a customer whose partition
        moved away meanwhile is read again from its new shard."""
        out = await self._aget(self.shards[shard_index].get_many.remote(customer_ids),
                               self.config.request_timeout_s)
        for i, (cid, rec) in enumerate(zip(customer_ids, out)):
            if rec is None and self.table.shard_of(cid) != shard_index:
                try:
                    out[i] = await self.aget(cid)
                except NotFound:
                    pass
        return out

    async def aaccounts(self, customer_id: str) -> list[dict]:
        return await self._routed(customer_id, "accounts", customer_id)

    async def acustomer_bills(self, customer_id: str, period: str | None = None,
                              account_id: str | None = None) -> list[dict]:
        return await self._routed(customer_id, "customer_bills", customer_id, period, account_id)

    async def abill_statement(self, customer_id: str, account_id: str | None = None,
                              as_of: str | None = None) -> dict:
        """Legacy bills newest first, each account's rate plan and the amount due (``grid.balances``)."""
        return await self._routed(customer_id, "bill_statement", customer_id, account_id, as_of)

    async def acustomer_usage(self, customer_id: str, month: str, service_point_id: str | None = None,
                              resolution: str = "interval") -> dict:
        return await self._routed(customer_id, "customer_usage", customer_id, month, service_point_id, resolution)

    async def acustomer_period(self, customer_id: str, period: str,
                               tariff_dir: str = billrun.DEFAULT_TARIFF_DIR) -> list[dict]:
        """Each account's computed bill for ``period`` beside its legacy bill, compared."""
        return await self._routed(customer_id, "customer_period", customer_id, period, tariff_dir)

    async def acurrent_bill(self, customer_id: str, as_of, catalogue) -> dict:
        return await self._routed(customer_id, "current_bill", customer_id, as_of, catalogue)

    async def aplan_choices(self, customer_id: str, catalogue) -> dict:
        return await self._routed(customer_id, "plan_choices", customer_id, catalogue)

    async def ascenarios(self, customer_id: str, request: dict, catalogue, as_of) -> dict:
        return await self._routed(customer_id, "scenarios", customer_id, request, catalogue, as_of)

    async def aforecast(self, customer_id: str, months: int, catalogue, as_of) -> dict:
        return await self._routed(customer_id, "forecast", customer_id, months, catalogue, as_of)

    async def agreen(self, customer_id: str, factors: dict, as_of, months: int) -> dict:
        return await self._routed(customer_id, "green", customer_id, factors, as_of, months)

    async def aping(self, customer_id: str) -> None:
        """One round trip to the customer's shard doing nothing (what a call costs, for benchmarks)."""
        return await self._routed(customer_id, "ping")

    async def awrite(self, op: dict) -> dict:
        return await self._routed(op["customer_id"], "write", op)

    # -- whole-grid operations ------------------------------------------------------------------------------
    async def abill_run(self, period: str, tariff_dir: str = billrun.DEFAULT_TARIFF_DIR, tolerance_cents: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> dict:
        """Bill every active account for ``period`` and reconcile against the legacy bills; the merged report.

        Each shard bills its accounts in :data:`BILL_RUN_CHUNKS` contiguous chunks (in order; shards in parallel:
        a chunk's usage is one view of the month matrix, so the kernel streams it) and records every account's
        outcome as a logged write. Waits for a scale in progress to finish.
        """
        from grid.timegrid import month_bounds

        month_bounds(period)  # InvalidInput (field period) before anything runs
        async with self._scale_lock:
            calls = {i: [(c, BILL_RUN_CHUNKS) for c in range(BILL_RUN_CHUNKS)] for i in range(len(self.shards))}
            total = sum(len(v) for v in calls.values())
            done = 0
            if progress:
                progress(0, total)
            long = self.config.call_timeout_s * 20

            async def shard_calls(i: int) -> list[dict]:
                nonlocal done
                out = []
                for chunk in calls[i]:
                    out.append(await self._aget(self.shards[i].bill_run.remote(period, tariff_dir, tolerance_cents,
                                                                              chunk), long))
                    done += 1
                    if progress:
                        progress(done, total)
                return out

            per_shard = await asyncio.gather(*(shard_calls(i) for i in calls))
        return billrun.merge_reports([p for parts in per_shard for p in parts])

    async def aclassify(self, rules, progress: Callable[[int, int], None] | None = None) -> dict:
        """Classify the whole base under ``rules`` (three rounds, see grid.classification); one at a time.

        Returns portfolios, members and the profitability ranking, and keeps them as :attr:`classified`.
        """
        step = (lambda d: progress(d, 4)) if progress else (lambda d: None)
        async with self._classify_lock:
            self.classifying = True
            try:
                result = await self._classify(rules, step)
            except BaseException:
                self.classify_failures += 1
                raise
            finally:
                self.classifying = False
            self.classified = result
            return result

    async def _classify(self, rules, step) -> dict:
        long = self.config.call_timeout_s * 20
        step(0)
        shards = list(self.shards)
        rounds = await asyncio.gather(*(self._aget(s.classify_links.remote(rules), long) for s in shards))
        step(1)
        accounts = [a for _, _, accts in rounds for a in accts]
        portfolio_of = resolve_portfolios([(a, b) for a, b, _ in rounds], accounts)
        per_shard = [{a: portfolio_of[a] for a in accts} for _, _, accts in rounds]
        parts = await asyncio.gather(*(self._aget(s.classify_accounts.remote(m, rules), long)
                                       for s, m in zip(shards, per_shard)))
        step(2)
        portfolios = classify_portfolios(merge_keyed([p for p, _ in parts]), rules)
        ranking = rank_profitability(merge_keyed([q for _, q in parts]))
        mine = [{pid: portfolios[pid] for pid in set(m.values()) if pid in portfolios} for m in per_shard]
        await asyncio.gather(*(self._aget(s.classify_store.remote(m, ps, rules), long)
                               for s, m, ps in zip(shards, per_shard, mine)))
        step(3)
        members: dict[str, list[str]] = {}
        for a, pid in portfolio_of.items():
            members.setdefault(pid, []).append(a)
        for pid in portfolios:
            members.setdefault(pid, [])
        step(4)
        from grid.identity.portfolios import explain_portfolios, name_roots  # identity: why each account is in

        explain = explain_portfolios([(a, b) for a, b, _ in rounds], portfolio_of)
        roots = sorted({p["root_entity_id"] for p in explain.values() if p.get("root_entity_id")})
        names: dict[str, str] = {}
        if roots:  # the root entities' legal names, from whichever shard holds a context they own
            for part in await asyncio.gather(*(self._aget(s.identity_entity_names.remote(roots), long)
                                               for s in shards)):
                for k, v in part.items():
                    names.setdefault(k, v)
        return {"rules_version": rules.version, "portfolio_of": portfolio_of, "portfolios": portfolios,
                "members": {k: sorted(v) for k, v in members.items()}, "profitability": ranking,
                "explain": name_roots(explain, names)}

    async def asnapshot(self) -> list[dict]:
        """Snapshot every shard now (each then truncates its log behind its oldest kept snapshot)."""
        return list(await asyncio.gather(*(self._aget(s.snapshot.remote(), self.config.call_timeout_s * 10)
                                           for s in self.shards)))

    # -- decisions (grid.decisions; the gateway's decisions routes call these) ------------------------------
    async def apost_events(self, ops: list[dict], decide: dict | None = None) -> list[dict]:
        """Event ops (one per customer, see grid.decisions.service.event_ops) to their owning shards at once;
        with ``decide``, each answer carries the customer's decision. Results in ``ops`` order.

        Each customer's events are one write. A batch naming several customers is checked for unknown
        customers first (404 before anything is written), so a typo does not leave half a batch behind."""
        if len(ops) > 1:
            await asyncio.gather(*(self._routed(op["customer_id"], "customer_events", op["customer_id"], 0)
                                   for op in ops))
        return list(await asyncio.gather(*(self._routed(op["customer_id"], "append_events", [op], decide)
                                           for op in ops)))

    async def anext_best_action(self, customer_id: str, decide: dict) -> dict:
        return await self._routed(customer_id, "next_best_action", customer_id, decide)

    async def arespond(self, customer_id: str, body: dict, write_id: str | None = None,
                       audit: dict | None = None) -> dict:
        op = make_op("response", customer_id, body, write_id)
        if audit is not None:
            op["audit"] = audit
        return await self.awrite(op)

    async def ascore_churn(self, path: str) -> list[dict]:
        """Score the whole base with the churn model in ``path`` (a file or a data dir): the model is put in the
        object store once and every shard scores its own customers next to their data; later events re-score."""
        from grid.decisions.churn import load, model_file

        file = str(model_file(path))
        model = load(file)
        ref = ray.put(model)
        write_id = f"churn:{model.version}:{uuid.uuid4().hex}"
        return list(await asyncio.gather(*(self._aget(s.score_churn.remote(ref, file, write_id),
                                                      self.config.call_timeout_s * 20) for s in self.shards)))

    async def acustomer_events(self, customer_id: str, limit: int = 100) -> dict:
        return await self._routed(customer_id, "customer_events", customer_id, limit)

    async def apropensities(self) -> dict[str, list[float]]:
        """Accepted and rejected counts per "action|segment", summed over every shard's own learning."""
        out: dict[str, list[float]] = {}
        for part in await asyncio.gather(*(self._aget(s.propensities.remote()) for s in self.shards)):
            for key, (acc, rej) in part.items():
                tot = out.setdefault(key, [0.0, 0.0])
                tot[0] += acc
                tot[1] += rej
        return out

    async def acustomer_audit(self, customer_id: str, limit: int = 100) -> list[dict]:
        return await self._routed(customer_id, "customer_audit", customer_id, limit)

    async def acustomer_decisions(self, customer_id: str, limit: int = 50) -> list[dict]:
        return await self._routed(customer_id, "customer_decisions", customer_id, limit)

    # -- imports (grid.imports): rows + position per shard, key lookups, progress -------------------------
    async def aimport_rows(self, shard_index: int, op: dict) -> dict:
        """Write one shard's part of an import batch (an ``import_rows`` op, see grid.imports.apply)."""
        return await self._aget(self.shards[shard_index].write.remote(op), self.config.call_timeout_s)

    async def aimport_keys(self, keys: dict[str, list[str]]) -> dict[str, dict[str, list]]:
        """Customers holding these keys (kind -> values), over all shards (see grid.imports.linking)."""
        parts = await asyncio.gather(*(self._aget(s.import_keys.remote(keys)) for s in self.shards))
        out: dict[str, dict[str, list]] = {}
        for p in parts:
            for kind, hits in p.items():
                out.setdefault(kind, {}).update(hits)
        return out

    async def aimport_view(self, source: str) -> list[dict]:
        """Each shard's positions, applied count and refused rows for ``source``, in shard order."""
        return list(await asyncio.gather(*(self._aget(s.import_view.remote(source)) for s in self.shards)))

    # -- elastic scaling ----------------------------------------------------------------------------------
    async def ascale(self, count: int, progress: Callable[[int, int], None] | None = None) -> dict:
        """Move whole partitions so that ``count`` shards share them; reads and writes go on meanwhile.

        Per batch of partitions: mark them moving (their requests wait), export from the old shard (which
        stops owning them), import into the new one (durable there by a snapshot), switch the table (saved),
        drop them at the old shard, release the waiting requests. Only moved partitions' data travels.
        """
        if count < 1:
            raise InvalidInput(f"shard count must be >= 1, got {count}", field="count")
        async with self._scale_lock:
            target = self.table.rebalanced(count)
            for i in range(len(self.shards), count):
                self.shards.append(self._actor(i))
            await asyncio.gather(*(self._aget(s.ready.remote(), 120) for s in self.shards))
            moves: dict[tuple[int, int], list[int]] = {}
            for p, (a, b) in enumerate(zip(self.table.owner, target.owner)):
                if a != b:
                    moves.setdefault((a, b), []).append(p)
            total = sum(len(v) for v in moves.values())
            done = 0
            long = self.config.call_timeout_s * 10
            for (src, dst), parts in sorted(moves.items()):
                for i in range(0, len(parts), self.config.move_batch):
                    batch = parts[i:i + self.config.move_batch]
                    for p in batch:
                        self.moving[p] = asyncio.Event()
                    try:
                        await self._pause_alerts()  # contacts: no alert scatter sees the batch half moved
                        payload = await self._aget(self.shards[src].export_partitions.remote(batch), long)
                        try:
                            await self._aget(self.shards[dst].import_partitions.remote(payload), long)
                        except BaseException:
                            await self._aget(self.shards[src].reown_partitions.remote(batch), long)
                            raise
                        for p in batch:
                            self.table.owner[p] = dst
                        self.table.shards = max(self.table.shards, count)
                        self.table.version += 1
                        self.table.save(self.data_dir / "partition_table.json")
                        await self._aget(self.shards[src].drop_partitions.remote(batch), long)
                    finally:
                        self._alerts_paused = False
                        for p in batch:
                            self.moving.pop(p).set()
                    done += len(batch)
                    if progress:
                        progress(done, total)
            for k, gone in enumerate(self.shards[count:], start=count):
                # contacts: what is left in a removed shard's outbox belongs to no partition; a survivor takes
                # it through its WAL (an id per removal: a retried scale absorbs it once)
                rest = await self._aget(gone.outbox_handover.remote(), long)
                if any(rest.values()):
                    await self._aget(self.shards[0].write.remote({
                        "kind": "outbox_absorb", "customer_id": None, "body": rest,
                        "write_id": f"outbox-handover:{k}:{self.table.version}"}), long)
                    await self._aget(gone.outbox_forget.remote(), long)
            for s in self.shards[count:]:
                ray.kill(s, no_restart=True)
            del self.shards[count:]
            self.table.shards = count
            self.table.version += 1
            self.table.save(self.data_dir / "partition_table.json")
            return {"shards": count, "moved_partitions": total, "version": self.table.version}

    async def achanges(self, shard_index: int, seq: int) -> tuple[int, list[str] | None]:
        return await self._aget(self.shards[shard_index].changes_since.remote(seq), timeout=2)

    async def asp_owners(self, sp_ids: list[str]) -> dict[str, str]:
        """Owners of service points across the whole grid (ids are unique grid-wide, not per shard)."""
        parts = await asyncio.gather(*(self._aget(s.sp_owners.remote(sp_ids)) for s in self.shards))
        return {k: v for p in parts for k, v in p.items()}

    async def alist(self, filters: dict, after: str | None, limit: int) -> list[dict]:
        pages = await asyncio.gather(*(self._aget(s.list.remote(filters, after, limit))
                                       for s in self.shards))
        return merge_pages(pages, limit)

    # -- contacts: events that alert and the outbox of each shard (grid.contacts) ---------------------------
    async def _everywhere(self, method: str, *args) -> list:
        return await asyncio.gather(*(self._aget(getattr(s, method).remote(*args), self.config.call_timeout_s)
                                      for s in self.shards))

    async def _alerting(self, method: str, *args) -> list:
        """An alert scatter: waits while a batch of partitions moves (and holds the next batch back), so each
        customer is planned by exactly one shard, the one that owns it (grid.contacts.moves)."""
        async with self._alert_scatter():
            return await self._everywhere(method, *args)

    @contextlib.asynccontextmanager
    async def _alert_scatter(self):
        while self._alerts_paused:
            await asyncio.sleep(0.02)
        self._alerts_running += 1
        try:
            yield
        finally:
            self._alerts_running -= 1

    async def _pause_alerts(self) -> None:
        self._alerts_paused = True
        while self._alerts_running:
            await asyncio.sleep(0.02)

    async def adeclare_outage(self, event: dict, ack_within_s: float) -> dict:
        """Find the outage's customers on every shard at once and enqueue their alerts durably; totals, with
        ``unmatched`` (the requested ids no active service point has, bounded) and ``unmatched_total``.

        Two scatters in one alert section (no partition moves in between): every shard plans and reports what
        it matched; if nothing matched anywhere the declaration is refused (InvalidInput naming the field) and
        nothing is written, else every shard writes its plan, the unmatched ids kept with the event.
        """
        from grid.contacts.targets import unmatched

        ref = ray.put(event)  # a 100k-id selector serialized once for both scatters, not once per shard and call
        async with self._alert_scatter():
            plans = await self._everywhere("plan_event", ref, ack_within_s)
            missing, count, any_matched = unmatched(event["selector"], [p["matched"] for p in plans])
            if not any_matched:
                await self._everywhere("drop_event", event["id"])
                field = next(iter(missing))
                shown = ", ".join(str(v) for v in missing[field][:5]) + (", ..." if count > 5 else "")
                raise InvalidInput(f"no customer has any of the {field} named: {shown}", field=field,
                                   unmatched=missing, unmatched_total=count)
            extra = {"unmatched": missing, "unmatched_total": count}
            parts = await self._everywhere("commit_event", ref, ack_within_s, extra)
        return {**{k: sum(p[k] for p in parts) for k in parts[0]}, **extra}

    async def arestore_outage(self, outage_id: str, restored_at: str, audit: dict | None = None) -> dict:
        """Restoration messages to everyone alerted; ``audit`` (who restored it) is kept with the outage."""
        parts = [p for p in await self._alerting("declare_restoration", outage_id, restored_at, audit)
                 if p is not None]
        if not parts:
            from grid.errors import NotFound
            raise NotFound(f"no outage {outage_id!r}", field="id")
        return {"notifications": sum(p["notifications"] for p in parts)}

    async def anotify(self, notice: dict) -> int:
        return sum(await self._alerting("declare_notice", notice))

    async def aoutage(self, outage_id: str, state: str | None = None, limit: int = 500) -> dict | None:
        """Counts and recipients of an outage (or notice) over every shard; None if no shard knows it."""
        from grid.contacts.moves import merge_event

        for ev in list(self.moving.values()):  # a batch of partitions moving: its messages are in transit
            try:
                await asyncio.wait_for(ev.wait(), self.config.move_wait_s)
            except asyncio.TimeoutError:
                break
        parts = [p for p in await self._everywhere("outbox_group", outage_id, state, limit) if p is not None]
        if not parts:
            return None
        counts: dict[str, int] = {}
        for p in parts:
            for k, v in p["counts"].items():
                counts[k] = counts.get(k, 0) + v
        recipients = sorted((r for p in parts for r in p["recipients"]), key=lambda r: r["message_id"])
        event = None
        for p in parts:  # every shard's copy (restoration updates each); merged as partition moves merge them
            event = merge_event(event, p["event"])
        return {"event": event, "unmatched": event.get("unmatched") or {}, "counts": counts,
                "total": sum(p["total"] for p in parts),
                "attempts": sum(p["attempts"] for p in parts), "recipients": recipients[:limit]}

    async def aoutage_audit(self, outage_id: str, limit: int = 100) -> list[dict]:
        """Who declared, restored or re-declared an outage, newest first."""
        out = await self.aoutage(outage_id, limit=1)
        if out is None:
            raise NotFound(f"no outage {outage_id!r}", field="id")
        return list(reversed(out["event"].get("audit") or []))[:limit]

    async def acustomer_messages(self, customer_id: str) -> list[dict]:
        """Messages of one customer: its owning shard first; any shard it lived on before as well."""
        parts = await self._everywhere("outbox_customer", customer_id)
        return sorted((m for p in parts for m in p), key=lambda m: m["created_at"], reverse=True)

    async def aoutbox_due(self, shard_index: int, now: float, limit: int) -> list[dict]:
        return await self._aget(self.shards[shard_index].outbox_due.remote(now, limit), self.config.call_timeout_s)

    async def aoutbox_write(self, shard_index: int, op: dict) -> dict:
        """A shard-wide outbox op through that shard's write path (WAL, apply, acknowledgement).

        An op on messages that moved with their customers' partitions (a scale since the caller read them)
        is written where each message is now: one op per shard holding some, write ids derived from the
        op's, so a retry of the whole op applies each part once.
        """
        if shard_index < len(self.shards):
            try:
                return await self._aget(self.shards[shard_index].write.remote(op), self.config.call_timeout_s)
            except (WrongShard, NotFound):
                if not op["body"].get("items"):
                    raise
        return await self._outbox_relocated(op)

    async def _outbox_relocated(self, op: dict) -> dict:
        items, changed = list(op["body"]["items"]), 0
        for attempt in range(5):
            while self.moving:  # wait out the batch in transit
                await asyncio.sleep(0.05)
            held = await self._everywhere("outbox_held", [it["nid"] for it in items])
            found: set[str] = set()
            moved_again = []
            for i, nids in enumerate(held):
                mine = [it for it in items if it["nid"] in set(nids) and it["nid"] not in found]
                if not mine:
                    continue
                found.update(it["nid"] for it in mine)
                sub = {**op, "write_id": f"{op['write_id']}@{i}", "body": {**op["body"], "items": mine}}
                try:
                    out = await self._aget(self.shards[i].write.remote(sub), self.config.call_timeout_s)
                    changed += out.get("changed", 0)
                except WrongShard:  # moved again under us
                    moved_again += mine
            missing = [it for it in items if it["nid"] not in found]
            if not moved_again and not missing:
                return {"kind": op["kind"], "changed": changed}
            if missing and not moved_again and attempt and not self.moving:
                raise NotFound(f"no message {missing[0]['nid']!r} on any shard", field="items[0].nid")
            items = moved_again + missing
        raise ShardUnavailable("messages are moving between shards; retry shortly", retry_after=1)

    async def aoutbox_locate(self, nid: str) -> int | None:
        found = await self._everywhere("outbox_has", nid)
        return next((i for i, f in enumerate(found) if f), None)

    async def aoutbox_awaiting_reply(self, address: str) -> list[tuple[int, str]]:
        parts = await self._everywhere("outbox_awaiting_reply", address)
        return [(i, nid) for i, p in enumerate(parts) for nid in p]

    async def asearch(self, query: str, limit: int) -> list[dict]:
        """Customers matching a console search, over every shard at once, in customer id order."""
        parts = await self._everywhere("search", query, limit)
        return merge_pages(parts, limit)

    async def aescalate(self, now: float, fallback: dict | None) -> int:
        """Escalate, on every shard, critical alerts not acknowledged in time; how many escalations."""
        return sum(await self._alerting("escalate_overdue", now, fallback))

    async def astats(self) -> list[dict]:
        out = []
        for i, s in enumerate(self.shards):
            try:
                out.append(await self._aget(s.ready.remote(), timeout=2))
            except ShardUnavailable:
                out.append({"shard": i, "status": "unavailable"})
        return out

    # -- identity (grid.identity.client does the work) -----------------------------------------------------
    @property
    def identity_rules(self):
        """The identity rules in force (``rules/identity.yaml``), loaded on first use; reloadable."""
        if getattr(self, "_identity_rules", None) is None:
            from grid.identity.rules import ActiveIdentityRules, DEFAULT_RULES_DIR

            self._identity_rules = ActiveIdentityRules(DEFAULT_RULES_DIR)
        return self._identity_rules

    @identity_rules.setter
    def identity_rules(self, active) -> None:
        self._identity_rules = active

    async def aresolve(self, records, write: bool = False) -> list:
        """Whose each record is (``grid.identity.Evidence`` or dicts): a ``Resolution`` per record, in order."""
        from grid.identity import client

        return await client.resolve(self, records, write)

    async def aidentity(self, customer_id: str) -> dict:
        from grid.identity import client

        return await client.identity(self, customer_id)

    async def aidentity_reviews(self, state: str | None = None, after: str | None = None, limit: int = 50) -> list:
        from grid.identity import client

        return await client.reviews(self, state, after, limit)

    async def adecide_review(self, review_id: str, decision: str, by: str = "", audit: dict | None = None) -> dict:
        from grid.identity import client

        return await client.decide_review(self, review_id, decision, by, audit)

    async def amerge(self, survivor: str, merged: str) -> dict:
        """Merge customer ``merged`` into ``survivor`` (durable across shards; a retry finishes it)."""
        from grid.identity import client

        return await client.merge(self, survivor, merged)

    async def aunmerge(self, merged: str) -> dict:
        from grid.identity import client

        return await client.unmerge(self, merged)

    async def aresume_merges(self) -> list[dict]:
        from grid.identity import client

        return await client.resume_merges(self)

    def shutdown(self, wait_s: float = 10.0) -> None:
        """Kill the shard actors and wait (bounded) until their names are free.

        ``ray.kill`` returns before the actor is dead; a ``Grid.start`` right after, in the same process (the
        CLI's import then a read, a test's restart), could otherwise look the names up, get the dying actors
        and fail with "the actor is dead" (regression: test_importer_killed_mid_file_resumes_exactly).
        """
        import time

        for s in self.shards:
            try:
                ray.kill(s, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        deadline = time.monotonic() + wait_s
        for i in range(len(self.shards)):
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(actor_name(i), namespace=self.config.namespace)
                except ValueError:  # the name is free: that actor is gone
                    break
                except Exception:  # noqa: BLE001 - Ray itself going away at exit
                    break
                time.sleep(0.05)


def make_op(kind: str, customer_id: str, body: dict, write_id: str | None = None,
            if_match: str | None = None) -> dict:
    if not isinstance(body, dict):
        raise InvalidInput("body must be an object", field="body")
    return {"kind": kind, "customer_id": customer_id, "body": body, "write_id": write_id or uuid.uuid4().hex,
            "if_match": if_match}


def merge_pages(pages: Iterable[list[dict]], limit: int) -> list[dict]:
    """k-way merge of per-shard pages (each sorted by customer_id) into one page."""
    import heapq
    return list(heapq.merge(*pages, key=lambda s: s["customer_id"]))[:limit]
