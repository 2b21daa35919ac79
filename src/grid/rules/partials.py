"""Per-shard partials keyed by string ids (portfolios), merged on the caller with the group-by kernel.

# Design: each shard numbers the portfolio ids it holds locally (Arrow dictionary encoding, no hashing) and
# reduces its accounts with :func:`kernels.aggregate.group_partials` on those local numbers; a partial carries
# its ids as an Arrow string array, entry ``i`` naming local key ``i``. The caller unites the ids of every part
# (sorted, so merged keys ascend in id order), maps each part's local keys to positions in the union with one
# ``index_in``, and merges column by column with :func:`kernels.aggregate.merge_partials`. Strings a partial
# counts distinctly across shards (program codes, kinds) travel as 64-bit digests of the few distinct values
# plus a digest -> text map.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput
from grid.rules.features import key64
from kernels.aggregate import GroupPartials, merge_partials

__all__ = ["KeyedPartials", "merge_keyed", "aligned", "local_keys", "label_digests"]


@dataclass(frozen=True)
class KeyedPartials:
    """Named :class:`~kernels.aggregate.GroupPartials` whose keys index ``ids`` (a string array of ids).

    ``labels`` maps digests of counted strings (program codes...) to their text; ``meta`` says how the partials
    were made (rule-set version...) and must agree between the parts of one merge. After :func:`merge_keyed`,
    ``ids`` is sorted and every column's keys ascend.
    """

    columns: dict[str, GroupPartials]
    ids: pa.Array
    labels: dict[int, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def id_of(self, keys: np.ndarray) -> list[str]:
        return self.ids.take(pa.array(np.asarray(keys, dtype=np.int64))).to_pylist()


def local_keys(ids: Sequence[str] | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(int64 local key of each row, the distinct ids: key ``i`` is ``ids[i]``)."""
    arr = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
    enc = pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary


def label_digests(values: pa.Array) -> tuple[np.ndarray, dict[int, str]]:
    """(:func:`~grid.rules.features.key64` of each value, digest -> text); only distinct values are hashed."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64), {}
    keys, uniq = local_keys(values)
    texts = uniq.to_pylist()
    digests = np.array([key64(t) for t in texts], dtype=np.int64)
    return digests[keys], dict(zip(digests.tolist(), texts))


def _union(maps: Iterable[dict[int, str]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for m in maps:
        for k, v in m.items():
            old = out.setdefault(k, v)
            if old != v:  # two distinct labels with one 64-bit digest: practically never, but never silently
                raise InvalidInput(f"labels {old!r} and {v!r} share a 64-bit digest; rename one", field="labels")
    return out


def merge_keyed(parts: Iterable[KeyedPartials]) -> KeyedPartials:
    """Merge per-shard partials of disjoint accounts into partials over all of them.

    Raises
    ------
    InvalidInput
        If the parts hold different columns or were made differently (``meta`` differs, e.g. two rule-set
        versions).
    """
    parts = list(parts)
    for i, p in enumerate(parts):
        if not isinstance(p, KeyedPartials):
            raise InvalidInput(f"parts[{i}] must be KeyedPartials, got {type(p).__name__}", field="parts")
    if not parts:
        return KeyedPartials({}, pa.array([], pa.string()))
    names = set(parts[0].columns)
    for i, p in enumerate(parts):
        if set(p.columns) != names:
            raise InvalidInput(f"parts[{i}] holds columns {sorted(p.columns)}, parts[0] {sorted(names)}",
                               field="parts")
        if p.meta != parts[0].meta:
            raise InvalidInput(f"parts[{i}] was made with {p.meta}, parts[0] with {parts[0].meta}", field="parts")
    every = pa.concat_arrays([p.ids.cast(pa.string()) for p in parts])
    union = pc.unique(every)
    union = union.take(pc.sort_indices(union))
    remapped = []
    for p in parts:
        to_global = pc.index_in(p.ids.cast(pa.string()), value_set=union).to_numpy(zero_copy_only=False)
        remapped.append({name: dataclasses.replace(gp, keys=to_global.astype(np.int64)[gp.keys])
                         for name, gp in p.columns.items()})
    columns = {name: merge_partials(r[name] for r in remapped) for name in sorted(names)}
    return KeyedPartials(columns, union, _union(p.labels for p in parts), dict(parts[0].meta))


def aligned(part: GroupPartials, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``part.keys`` and a mask of the keys it holds (keys of ``part`` ascend)."""
    if len(part) == 0:
        return np.zeros(keys.shape[0], dtype=np.int64), np.zeros(keys.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(part.keys, keys), len(part) - 1)
    return pos, part.keys[pos] == keys
