"""Context reads through the near cache and the per-shard coalescer, kept coherent by the shards."""
from __future__ import annotations

import asyncio
import logging

from grid.errors import ContextGridError, NotFound
from grid.gateway.cache import Coalescer, NearCache

log = logging.getLogger(__name__)


class Reads:
    def __init__(self, grid, ttl_s: float = 30.0, capacity: int = 100_000, metrics=None,
                 invalidate_interval_s: float = 0.1):
        self.grid = grid
        self.cache = NearCache(capacity=capacity, ttl_s=ttl_s)
        self.coalescer = Coalescer(grid.aget_many)
        self.metrics = metrics
        self.invalidate_interval_s = invalidate_interval_s
        self._seen: dict[int, int] = {}

    async def read(self, customer_id: str) -> dict:
        rec = self.cache.get(customer_id)
        if self.metrics is not None:
            self.metrics.cache.labels("hit" if rec is not None else "miss").inc()
        if rec is not None:
            return rec
        rec = await self.coalescer.get(await self.grid.route(customer_id), customer_id)
        if rec is None:  # the shard's own answer: NotFound, or Merged naming the survivor (grid.identity.merge)
            rec = await self.grid.aget(customer_id)
        self.cache.put(customer_id, rec)
        return rec

    async def sync_once(self) -> None:
        """Drop cached contexts that changed on their shard since the last look."""
        for i in range(len(self.grid.shards)):
            try:
                seq, changed = await self.grid.achanges(i, self._seen.get(i, 0))
            except ContextGridError:
                continue  # a recovering shard serves nothing; its entries expire by TTL
            if changed is None or seq < self._seen.get(i, 0):
                self.cache.clear()  # fell too far behind, or the shard restarted: start afresh
            else:
                self.cache.invalidate(changed)
            self._seen[i] = seq

    async def watch(self) -> None:
        if self.cache.ttl_s <= 0:
            return
        while True:
            try:
                await self.sync_once()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                log.exception("near-cache invalidation round failed")
                self.cache.clear()
            await asyncio.sleep(self.invalidate_interval_s)
