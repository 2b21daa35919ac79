"""Near cache and read coalescing in front of the shards.

A Ray actor call costs ~0.5-1 ms, more than encoding a context, so the gateway (1) keeps recently read contexts
for a short TTL and (2) folds concurrent reads for one shard into one ``get_many`` call.

Consistency: a write through this gateway raises ``floor[customer]`` to the acknowledged version and drops the
cached entry *before* the write's response is sent; a read result older than the floor is never cached, so a
read never returns a context older than an acknowledged write made through the same gateway. Writes made
elsewhere (other gateways, the Python client, bill runs) are invalidated by the owning shard: the gateway polls
each shard's change log every ``invalidate_interval_s`` (see ``Reads.watch``), and the TTL bounds staleness
should a shard be unreachable.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Awaitable, Callable


class NearCache:
    def __init__(self, capacity: int = 100_000, ttl_s: float = 1.0):
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._floor: dict[str, int] = {}
        self.hits = 0
        self.misses = 0

    def get(self, customer_id: str) -> dict | None:
        if self.ttl_s <= 0:
            return None
        item = self._items.get(customer_id)
        if item is None or item[0] < time.monotonic():
            self.misses += 1
            return None
        self.hits += 1
        return item[1]

    def put(self, customer_id: str, record: dict) -> None:
        if self.ttl_s <= 0 or record.get("version", 0) < self._floor.get(customer_id, 0):
            return
        self._items[customer_id] = (time.monotonic() + self.ttl_s, record)
        self._items.move_to_end(customer_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def written(self, customer_id: str, version: int) -> None:
        """A write to ``customer_id`` was acknowledged at ``version``."""
        if version > self._floor.get(customer_id, 0):
            self._floor[customer_id] = version
        self._items.pop(customer_id, None)
        if len(self._floor) > 4 * self.capacity:  # old floors matter only while entries can be stale
            self._floor.clear()
            self._items.clear()

    def invalidate(self, customer_ids) -> None:
        for c in customer_ids:
            self._items.pop(c, None)

    def clear(self) -> None:
        self._items.clear()


class Coalescer:
    """Batches reads for the same shard that arrive in the same event-loop turn into one call."""

    def __init__(self, fetch: Callable[[int, list[str]], Awaitable[list[dict | None]]], max_batch: int = 256):
        self._fetch = fetch
        self._max_batch = max_batch
        self._pending: dict[int, dict[str, list[asyncio.Future]]] = {}

    def get(self, shard: int, customer_id: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        batch = self._pending.get(shard)
        if batch is None:
            batch = self._pending[shard] = {}
            loop.call_soon(self._flush, shard)
        batch.setdefault(customer_id, []).append(fut)
        if len(batch) >= self._max_batch:
            self._flush(shard)
        return fut

    def _flush(self, shard: int) -> None:
        batch = self._pending.pop(shard, None)
        if batch:
            asyncio.ensure_future(self._run(shard, batch))

    async def _run(self, shard: int, batch: dict[str, list[asyncio.Future]]) -> None:
        ids = list(batch)
        try:
            records = await self._fetch(shard, ids)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting reader
            for futs in batch.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for cid, rec in zip(ids, records):
            for f in batch[cid]:
                if not f.done():
                    f.set_result(rec)
