"""Customers -> partitions -> shards.

A customer's partition is fixed forever (``crc32(customer_id) % PARTITIONS``: stable across processes, unlike
Python's salted ``hash``). Partitions map to shards through a versioned :class:`PartitionTable`, so rebalancing
moves whole partitions and never rehashes customers.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grid.durable import durable_write
from grid.errors import InvalidInput

PARTITIONS = 271  # prime, as Hazelcast's default: spreads sequential ids evenly


def partition_of(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode("utf-8")) % PARTITIONS


def partitions_of(customer_ids) -> np.ndarray:
    """Vectorized :func:`partition_of` for a sequence of ids (int16 array)."""
    return np.fromiter((zlib.crc32(c.encode("utf-8")) % PARTITIONS for c in customer_ids),
                       dtype=np.int16, count=len(customer_ids))


@dataclass
class PartitionTable:
    """Which shard owns each partition; ``version`` grows with every move."""

    shards: int
    owner: list[int] = field(default_factory=list)
    version: int = 1

    def __post_init__(self):
        if self.shards < 1:
            raise InvalidInput(f"shard count must be >= 1, got {self.shards}", field="shards")
        if not self.owner:
            self.owner = [p % self.shards for p in range(PARTITIONS)]
        if len(self.owner) != PARTITIONS:
            raise InvalidInput(f"partition table must have {PARTITIONS} entries", field="owner")

    def shard_of(self, customer_id: str) -> int:
        return self.owner[partition_of(customer_id)]

    def partitions_of_shard(self, shard: int) -> list[int]:
        return [p for p, s in enumerate(self.owner) if s == shard]

    def rebalanced(self, shards: int) -> "PartitionTable":
        """A table for ``shards`` shards that moves as few partitions as possible.

        Partitions on shards that remain stay put unless their shard holds more than its fair share; partitions
        of removed shards and the surplus go to the shards with the fewest.
        """
        if shards < 1:
            raise InvalidInput(f"shard count must be >= 1, got {shards}", field="count")
        owner = list(self.owner)
        base, extra = divmod(PARTITIONS, shards)
        quota = [base + (1 if s < extra else 0) for s in range(shards)]
        held: dict[int, list[int]] = {s: [] for s in range(shards)}
        homeless: list[int] = []
        for p, s in enumerate(owner):
            (held[s] if s < shards else homeless).append(p)
        for s in range(shards):
            while len(held[s]) > quota[s]:
                homeless.append(held[s].pop())
        for p in sorted(homeless):
            s = min(range(shards), key=lambda k: (len(held[k]) - quota[k], k))
            held[s].append(p)
        for s, ps in held.items():
            for p in ps:
                owner[p] = s
        return PartitionTable(shards=shards, owner=owner, version=self.version + 1)

    def to_json(self) -> dict:
        return {"version": self.version, "partitions": PARTITIONS, "shards": self.shards, "owner": self.owner}

    @classmethod
    def from_json(cls, data: dict) -> "PartitionTable":
        if data.get("partitions") != PARTITIONS:
            raise InvalidInput("partition table was written for another partition count", field="partitions")
        return cls(shards=int(data["shards"]), owner=[int(s) for s in data["owner"]], version=int(data["version"]))

    def save(self, path: Path) -> None:
        durable_write(path, json.dumps(self.to_json()).encode())

    @classmethod
    def load_or_create(cls, path: Path, shards: int) -> "PartitionTable":
        if path.exists():
            return cls.from_json(json.loads(path.read_text()))
        table = cls(shards=shards)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
        return table
