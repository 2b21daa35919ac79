"""Context reads through the near cache and the per-shard coalescer."""
from __future__ import annotations

from grid.errors import NotFound
from grid.gateway.cache import Coalescer, NearCache


class Reads:
    def __init__(self, grid, ttl_s: float = 1.0, capacity: int = 100_000, metrics=None):
        self.grid = grid
        self.cache = NearCache(capacity=capacity, ttl_s=ttl_s)
        self.coalescer = Coalescer(grid.aget_many)
        self.metrics = metrics

    async def read(self, customer_id: str) -> dict:
        rec = self.cache.get(customer_id)
        if self.metrics is not None:
            self.metrics.cache.labels("hit" if rec is not None else "miss").inc()
        if rec is not None:
            return rec
        rec = await self.coalescer.get(self.grid.shard_index(customer_id), customer_id)
        if rec is None:
            raise NotFound(f"no customer {customer_id!r}", field="id")
        self.cache.put(customer_id, rec)
        return rec
