"""The Ray actor around :class:`grid.shard.Shard`: names, options, and the write path.

A shard actor is an asyncio actor: a write is checked and applied on the actor's event loop (so log order is
apply order, and no lock is needed), then awaits durability before it is acknowledged.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import ray

from grid.shard import Shard

log = logging.getLogger(__name__)

ACTOR_PREFIX = "contextgrid-shard-"


def actor_name(shard_id: int) -> str:
    return f"{ACTOR_PREFIX}{shard_id}"


class ShardServer:
    """Methods the grid calls on a shard (the body of the Ray actor)."""

    def __init__(self, shard_id: int, partitions: list[int], data_dir: str, timezone: str):
        self.shard = Shard(shard_id, partitions, timezone)
        self.data_dir = data_dir
        self.started = time.time()

    async def ready(self) -> dict:
        return self.stats()

    def stats(self) -> dict:
        s = self.shard.stats()
        s["node_id"] = ray.get_runtime_context().get_node_id()
        s["uptime_s"] = round(time.time() - self.started, 3)
        return s

    async def load_chunk(self, base_dir: str, chunk: int) -> int:
        # Parquet decoding releases the GIL; run it off the event loop so reads keep being served.
        return await asyncio.get_running_loop().run_in_executor(None, self.shard.load_chunk, base_dir, chunk)

    async def finish_load(self) -> dict:
        self.shard.finish_load()
        return self.stats()

    async def get(self, customer_id: str) -> dict:
        return self.shard.get(customer_id)

    async def get_many(self, customer_ids: list[str]) -> list[dict | None]:
        return self.shard.get_many(customer_ids)

    async def call(self, method: str, *args) -> Any:
        """Read-only views (accounts, bills, usage, list, checksum) by name."""
        if method not in ("accounts", "customer_bills", "customer_usage", "list", "checksum", "stats",
                          "changes_since"):
            raise AttributeError(method)
        return getattr(self.shard, method)(*args)

    async def write(self, op: dict) -> dict:
        op = self.shard.prepare(op)
        out = dict(self.shard.apply(op))
        if op["kind"] in ("patch", "replace"):
            out["record"] = self.shard.records[op["customer_id"]]
        return out

    async def run(self, fn: Callable, *args) -> Any:
        """Scatter-gather: ``fn(shard, *args)`` on this shard's state."""
        return fn(self.shard, *args)


ShardActor = ray.remote(ShardServer)


def actor_options(shard_id: int, namespace: str) -> dict:
    return dict(
        name=actor_name(shard_id),
        namespace=namespace,
        get_if_exists=True,
        num_cpus=0,  # an actor mostly waits; CPU goes to tasks and kernels, which release the GIL
        max_restarts=-1,
        max_task_retries=-1,
        max_concurrency=1000,
        scheduling_strategy="SPREAD",
    )
