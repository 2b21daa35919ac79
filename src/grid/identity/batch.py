"""Batch resolution for bulk loads: the same rules, the same decision, the same writes, in one process.

A bulk load resolves many records against a base at once. Rather than a second algorithm (all pairs, then
connected components) that would answer differently from the incremental path whenever the order of records
matters, the batch path runs the incremental one without the round trips: one plain :class:`grid.shard.Shard`
owning every partition holds the base, and each record is looked up in its index, decided by
:func:`grid.identity.resolver.decide` and written by the same op functions (:mod:`grid.identity.ops`) the live
shards apply. So ``batch == incremental`` holds by construction, and the test holds it to that.
"""
from __future__ import annotations

from typing import Iterable

from grid.identity.evidence import Resolution, decode_records, record_key
from grid.identity.resolver import decide, outcome_op, query
from grid.partitions import PARTITIONS

__all__ = ["BatchResolver"]


class BatchResolver:
    """Resolve records one after another against an in-process base (contexts given as dicts)."""

    def __init__(self, rules, contexts: Iterable[dict] = ()):
        from grid.shard import Shard

        self.rules = rules
        self.shard = Shard(0, list(range(PARTITIONS)))
        for rec in contexts:
            self.shard.records[rec["customer_id"]] = rec
        self.shard.identity.invalidate()

    def resolve(self, records, write: bool = True) -> list[Resolution]:
        from grid.identity import reads

        rules = self.rules
        out = []
        for ev in decode_records(records):
            m, keys = query(rules, ev)
            found = reads.lookup(self.shard, [(record_key(ev), keys)], rules.deterministic, rules.max_block)
            res = decide(rules, ev, m, found)
            op = outcome_op(ev, m, res) if write else None
            if op is not None:
                self.shard.write(op)
            out.append(res)
        return out
