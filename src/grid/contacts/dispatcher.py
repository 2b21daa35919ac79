"""The delivery loop: takes due notifications from every shard's outbox and hands them to providers.

It runs in the gateway process (a ``cleanup_ctx`` task), not in the shard actors, for three reasons: sends
are network waits on SMTP servers and providers (seconds when one misbehaves) that must not sit on a shard's
event loop beside its reads and writes; receipts, replies and acknowledgement links arrive at the gateway
anyway; and the gateway holds no state that matters: what is durable is the outbox in each shard, so a
dispatcher that dies loses nothing. Its leases expire and the next dispatcher tries again with the same
idempotency keys: mail stores drop a copy by Message-ID, and the SMS/voice transport first looks an ambiguous
try up at the provider (Twilio does not de-duplicate; see ``grid.contacts.transports``).

Per shard and per round: take up to ``batch`` due notifications, choose each one's candidate (quiet hours,
transports available), write ONE ``outbox_attempt`` op (durable before anything is sent), send them all at
once (each transport bounded by its rate limit and concurrency), write ONE op of results. Retries back off
exponentially with jitter; a candidate that fails ``max_attempts`` times, or permanently, fails over to the
next (channel, then contact). Receipts from providers are batched into one op per shard every few ms, and the
callback is answered only once its op is durable (a provider retries a callback that was not answered).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import random
import time
import uuid
from collections import Counter, OrderedDict
from typing import Callable
from zoneinfo import ZoneInfo

from grid.contacts.config import ContactsConfig
from grid.contacts.templates import Templates
from grid.contacts.transports import Outcome, was_ambiguous
from grid.errors import ContextGridError, NotFound, ShardUnavailable

log = logging.getLogger(__name__)

ACK_WORDS = {"ACK", "YES", "Y", "1", "OK", "CONFIRM", "SI", "SÍ"}
RECEIPT_FLUSH_S = 0.05  # a provider waits seconds for a webhook's answer; fewer, larger ops cost the shard less
WHERE = 1_000_000  # nid -> shard remembered for receipts (~100 B each); older ones are looked up by a scatter


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="milliseconds")


def op(kind: str, body: dict, write_id: str | None = None) -> dict:
    """A shard-wide outbox op (no customer: it does not change any context's version)."""
    return {"kind": kind, "customer_id": None, "write_id": write_id or f"{kind}:{uuid.uuid4().hex}", "body": body}


def in_quiet_hours(quiet: dict | None, epoch: float, tz: ZoneInfo) -> float | None:
    """If ``epoch`` falls in ``quiet`` (local ``HH:MM`` start/end, may wrap midnight), when it ends; else None."""
    if not quiet:
        return None
    local = dt.datetime.fromtimestamp(epoch, tz)
    sh, sm = (int(x) for x in quiet["start"].split(":"))
    eh, em = (int(x) for x in quiet["end"].split(":"))
    now_m, start_m, end_m = local.hour * 60 + local.minute, sh * 60 + sm, eh * 60 + em
    inside = start_m <= now_m < end_m if start_m < end_m else (now_m >= start_m or now_m < end_m)
    if not inside:
        return None
    end = local.replace(hour=eh, minute=em, second=0, microsecond=0)
    if end <= local:
        end += dt.timedelta(days=1)
    return end.timestamp()


def ack_token(secret: str, nid: str) -> str:
    return f"{nid}.{hmac.new(secret.encode(), nid.encode(), hashlib.sha256).hexdigest()[:24]}"


def check_ack_token(secret: str, token: str) -> str | None:
    nid, _, _sig = token.partition(".")
    return nid if nid and hmac.compare_digest(ack_token(secret, nid), token) else None


class Dispatcher:
    """See the module docstring. ``clock`` returns epoch seconds (tests move it to 3 a.m.)."""

    def __init__(self, grid, config: ContactsConfig, transports: dict, templates: Templates | None = None,
                 clock: Callable[[], float] = time.time, metrics=None, seed: int | None = None):
        self.grid, self.config, self.transports = grid, config, transports
        self.templates = templates or Templates(config.timezone)
        self.clock, self.metrics = clock, metrics
        self.tz = ZoneInfo(config.timezone)
        self.rng = random.Random(seed)
        self.inflight: dict[str, int] = {}  # nid -> shard index, while this process sends it
        self.where: OrderedDict[str, int] = OrderedDict()  # nid -> shard of messages sent (receipts come later)
        self.wake = asyncio.Event()
        self._receipts: dict[int, list[tuple[dict, asyncio.Future]]] = {}
        self._flushers: dict[int, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self.handed_over: dict[str, float] = {}  # key -> clock when a provider first took it (benchmarks)

    # -- the loops ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        loops = [asyncio.create_task(self._escalation_loop()), asyncio.create_task(self._retention_loop())]
        shard_loops: dict[int, asyncio.Task] = {}
        try:
            while True:  # one loop per shard, also for shards a scale-up added (a removed one's loop ends)
                for i in range(len(self.grid.shards)):
                    if i not in shard_loops or shard_loops[i].done():
                        shard_loops[i] = asyncio.create_task(self._shard_loop(i))
                await asyncio.sleep(self.config.poll_s)
        finally:
            loops += shard_loops.values()
            for t in loops + list(self._tasks):
                t.cancel()
            await asyncio.gather(*loops, *self._tasks, return_exceptions=True)

    async def _retention_loop(self) -> None:
        """Compact finished messages older than ``retention_days`` out of every shard's outbox (a WAL op)."""
        import datetime as dt

        while True:
            before = dt.datetime.fromtimestamp(self.clock() - self.config.retention_days * 86400, dt.timezone.utc)
            for shard in range(len(self.grid.shards)):
                try:
                    await self._write(shard, op("outbox_compact", {"before": before.isoformat(timespec="seconds")}))
                except ContextGridError as exc:  # a restarting shard is compacted next time
                    log.info("dispatcher: compaction of shard %s skipped (%s)", shard, exc)
            await asyncio.sleep(self.config.compact_every_s)

    def notify(self) -> None:
        """New work was enqueued: look now rather than at the next poll."""
        self.wake.set()

    async def _sleep(self) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), self.config.poll_s)
        except asyncio.TimeoutError:
            pass
        self.wake.clear()

    async def _shard_loop(self, shard: int) -> None:
        slots = asyncio.Semaphore(self.config.batches_in_flight)
        while shard < len(self.grid.shards):
            await slots.acquire()
            try:
                started = await self._round(shard, slots)
            except (ShardUnavailable, ContextGridError) as exc:
                log.info("dispatcher: shard %s unavailable (%s); retrying", shard, exc)
                started = False
            except Exception:  # noqa: BLE001 - a bug must not stop every later delivery
                log.exception("dispatcher: round on shard %s failed", shard)
                started = False
            if not started:
                slots.release()
                await self._sleep()

    async def _round(self, shard: int, slots: asyncio.Semaphore) -> bool:
        now = self.clock()
        due = await self.grid.aoutbox_due(shard, now, self.config.batch)
        due = [n for n in due if n["nid"] not in self.inflight]
        if not due:
            return False
        # claimed before any await: while its partition moves, another shard's loop may list the same message
        for n in due:
            self.inflight[n["nid"]] = shard
        try:
            return await self._start(shard, slots, due, now)
        except BaseException:
            for n in due:
                self.inflight.pop(n["nid"], None)
            raise

    async def _start(self, shard: int, slots: asyncio.Semaphore, due: list[dict], now: float) -> bool:
        sends, others = [], []
        at = _iso(now)
        for n in due:
            choice = self._choose(n, now)
            if choice[0] == "send":
                sends.append((n, choice[1]))
            elif choice[0] == "defer":
                others.append({"nid": n["nid"], "key": None, "next": "defer", "not_before": choice[1],
                               "error": "quiet hours", "at": at})
            else:
                others.append({"nid": n["nid"], "key": None, "next": "exhausted", "error": choice[1], "at": at})
        if others:
            await self._write(shard, op("outbox_failed", {"items": others}))
            for item in others:
                self.inflight.pop(item["nid"], None)
        if not sends:
            slots.release()
            return True
        lease = now + self.config.lease_s
        await self._write(shard, op("outbox_attempt", {"items": [
            {"nid": n["nid"], "pos": pos, "lease_until": lease, "at": at} for n, pos in sends]}))
        for n, _ in sends:
            self.where[n["nid"]] = shard
        while len(self.where) > WHERE:
            self.where.popitem(last=False)
        task = asyncio.create_task(self._send_batch(shard, sends))
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._tasks.discard(t), slots.release()))
        return True

    def _choose(self, n: dict, now: float) -> tuple:
        """("send", pos) | ("defer", until) | ("exhausted", why): the first usable candidate from ``pos``."""
        override = n["critical"] and n["type"] in ("outage", "escalation")  # a critical load is woken at 3 a.m.
        quiet_until = None
        for j in range(n["pos"], len(n["route"])):
            c = n["route"][j]
            if c["channel"] not in self.transports:
                continue
            if not override:
                end = in_quiet_hours(c.get("quiet_hours"), now, self.tz)
                if end is not None:
                    quiet_until = end if quiet_until is None else min(quiet_until, end)
                    continue
            return ("send", j)
        if quiet_until is not None:
            return ("defer", quiet_until)
        return ("exhausted", "no candidate with a configured channel is left")

    async def _send_batch(self, shard: int, sends: list[tuple[dict, int]]) -> None:
        try:
            timed = await asyncio.gather(*(self._send_timed(n, pos) for n, pos in sends))
            outcomes = [o for o, _ in timed]
            now = self.clock()
            at = _iso(now)
            delivered, failed = [], []
            for (n, pos), (out, t) in zip(sends, timed):
                cand = n["route"][pos]
                if out.status in ("sent", "delivered"):
                    self.handed_over.setdefault(cand["key"], t)
                    delivered.append({"nid": n["nid"], "key": cand["key"], "status": out.status,
                                      "provider_id": out.provider_id, "sent_epoch": now, "at": at})
                    continue
                tries = n["attempts"].get(cand["key"], {}).get("n", 0) + 1
                # an ambiguous try (the provider may hold it) is retried rather than failed over: the next try
                # looks it up first, and past max_attempts only looks (``verify_only``), so that no second
                # channel reaches a recipient the first one did reach
                if out.status == "retry" and (tries < self.config.max_attempts or self._last_hope(n, pos, now)
                                              or (out.ambiguous and tries < 2 * self.config.max_attempts)):
                    delay = min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (tries - 1))
                    delay = delay / 2 + self.rng.random() * delay / 2  # "equal jitter": spread, but never 0
                    failed.append({"nid": n["nid"], "key": cand["key"], "next": "retry", "not_before": now + delay,
                                   "error": out.error, "at": at, "ambiguous": out.ambiguous})
                else:
                    failed.append({"nid": n["nid"], "key": cand["key"], "next": "failover", "pos": pos,
                                   "error": out.error, "at": at})
            if self.metrics is not None:  # counted per batch: a labelled counter's lock once per outcome kind
                counts = Counter((n["route"][pos]["channel"], out.status) for (n, pos), out in zip(sends, outcomes))
                for (channel, status), k in counts.items():
                    self.metrics.sends.labels(channel, status).inc(k)
            if delivered:
                await self._write(shard, op("outbox_delivered", {"items": delivered}), forever=True)
            if failed:
                await self._write(shard, op("outbox_failed", {"items": failed}), forever=True)
                self.wake.set()
        finally:
            for n, _ in sends:
                self.inflight.pop(n["nid"], None)

    def _last_hope(self, n: dict, pos: int, now: float) -> bool:
        """No usable candidate after ``pos``, and still young: keep retrying rather than give up."""
        if any(c["channel"] in self.transports for c in n["route"][pos + 1:]):
            return False
        created = dt.datetime.fromisoformat(n["created_at"].replace("Z", "+00:00")).timestamp()
        return now - created < self.config.give_up_after_s

    async def _send_timed(self, n: dict, pos: int) -> tuple[Outcome, float]:
        out = await self._send_one(n, pos)
        return out, self.clock()

    async def _send_one(self, n: dict, pos: int) -> Outcome:
        cand = n["route"][pos]
        variables = {**n["vars"], "contact_name": cand.get("name", ""), "customer_id": n["customer_id"],
                     "ack_link": f"{self.config.public_url}/v1/ack/{ack_token(self.config.ack_secret, n['nid'])}"}
        try:
            message = self.templates.render(n["type"], cand["channel"], cand.get("language", "en"), variables)
        except Exception as exc:  # noqa: BLE001 - a broken template fails this candidate, not the loop
            log.error("template %s/%s failed: %s", n["type"], cand["channel"], exc)
            return Outcome("permanent", error=f"template: {type(exc).__name__}")
        callback = (f"{self.config.public_url}/v1/providers/{cand['channel']}/status"
                    f"?message_id={n['nid']}&key={cand['key']}")
        previous = n["attempts"].get(cand["key"])  # as the outbox held it before this try (grid.contacts.transports)
        verify = (was_ambiguous(previous) and previous["n"] >= self.config.max_attempts  # before a failover
                  and any(c["channel"] in self.transports for c in n["route"][pos + 1:]))
        return await self.transports[cand["channel"]].send(cand["address"], message, cand["key"], callback,
                                                           previous=previous, verify_only=verify)

    async def _write(self, shard: int, o: dict, forever: bool = False) -> dict:
        """Write an op to one shard; with ``forever``, retry (same write id) while the shard restarts."""
        delay = 0.05
        while True:
            try:
                return await self.grid.aoutbox_write(shard, o)
            except ShardUnavailable:
                if not forever:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- receipts, replies, acknowledgements --------------------------------------------------------------
    async def _shard_of(self, nid: str) -> int:
        shard = self.inflight.get(nid, self.where.get(nid))
        if shard is None:
            shard = await self.grid.aoutbox_locate(nid)
        if shard is None:
            raise NotFound(f"no message {nid!r}", field="message_id")
        return shard

    async def receipt(self, nid: str, key: str, status: str) -> None:
        """A provider's status callback; returns once it is durable."""
        now = self.clock()
        if status == "delivered":
            item = {"nid": nid, "key": key, "status": "delivered", "at": _iso(now)}
            kind = "outbox_delivered"
        elif status in ("undelivered", "failed", "busy", "no-answer", "canceled"):
            item = {"nid": nid, "key": key, "next": "failover", "error": f"receipt: {status}", "at": _iso(now)}
            kind = "outbox_failed"
        else:
            return  # queued, sent, ringing, in-progress: nothing new
        shard = await self._shard_of(nid)
        fut = asyncio.get_running_loop().create_future()
        self._receipts.setdefault(shard, []).append(({"kind": kind, "item": item}, fut))
        if shard not in self._flushers or self._flushers[shard].done():
            self._flushers[shard] = asyncio.create_task(self._flush_receipts(shard))
        await fut
        if kind == "outbox_failed":
            self.wake.set()

    async def _flush_receipts(self, shard: int) -> None:
        # group commit: one op for every receipt of the last few ms; receipts that came while an op was being
        # written go in the next (this task is still running then, so nobody else would flush them)
        while self._receipts.get(shard):
            await asyncio.sleep(RECEIPT_FLUSH_S)
            pending, self._receipts[shard] = self._receipts.get(shard, []), []
            try:
                for kind in ("outbox_delivered", "outbox_failed"):
                    items = [r["item"] for r, _ in pending if r["kind"] == kind]
                    if items:
                        await self._write(shard, op(kind, {"items": items}), forever=True)
                for _, fut in pending:
                    if not fut.done():
                        fut.set_result(None)
            except BaseException as exc:
                for _, fut in pending:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else ShardUnavailable("cancelled"))
                raise

    async def acknowledge(self, nid: str, via: str) -> dict:
        shard = await self._shard_of(nid)
        out = await self._write(shard, op("outbox_acknowledged", {"items": [
            {"nid": nid, "via": via, "at": _iso(self.clock())}]}, write_id=f"ack:{nid}"), forever=True)
        return {"message_id": nid, "acknowledged": True, "changed": out.get("changed", 0)}

    async def reply(self, from_number: str, body: str) -> int:
        """An incoming text: an acknowledgement keyword acknowledges what was sent to that number."""
        if body.strip().upper().rstrip(".!") not in ACK_WORDS:
            return 0
        found = await self.grid.aoutbox_awaiting_reply(from_number)
        for shard, nid in found:
            await self._write(shard, op("outbox_acknowledged", {"items": [
                {"nid": nid, "via": f"reply from {from_number}", "at": _iso(self.clock())}]},
                write_id=f"ack:{nid}"), forever=True)
        return len(found)

    async def _escalation_loop(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, min(self.config.poll_s, self.config.ack_within_s / 4)))
            try:
                n = await self.grid.aescalate(self.clock(), self.config.escalation)
            except ContextGridError as exc:
                log.info("dispatcher: escalation check failed (%s); retrying", exc)
                continue
            if n:
                self.wake.set()
