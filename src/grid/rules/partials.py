"""Per-shard partials keyed by string ids (portfolios), merged on the caller with the group-by kernel.

Each shard reduces its own accounts with :func:`kernels.aggregate.group_partials`, keyed by the 64-bit digest of
the portfolio id (:func:`grid.rules.features.key64`: the same on every shard without any shared dictionary);
the caller merges the shards' partials column by column with :func:`kernels.aggregate.merge_partials`. Strings
that a partial counts distinctly (program codes, kinds) travel as digests with a small digest -> text map.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from grid.errors import InvalidInput
from grid.rules.features import key64
from kernels.aggregate import GroupPartials, merge_partials

__all__ = ["KeyedPartials", "merge_keyed", "aligned", "digests"]


@dataclass(frozen=True)
class KeyedPartials:
    """Named :class:`~kernels.aggregate.GroupPartials` over digests of ids, with the maps back to text.

    ``ids`` maps each key digest to its id (``"P..."``); ``labels`` maps digests of counted strings (program
    codes...) to their text; ``meta`` says how the partials were made (rule-set version...), and must agree
    between the parts of one merge.
    """

    columns: dict[str, GroupPartials]
    ids: dict[int, str]
    labels: dict[int, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def _union(maps: Iterable[dict[int, str]], what: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for m in maps:
        for k, v in m.items():
            old = out.setdefault(k, v)
            if old != v:  # 64-bit digests of distinct strings collide once in ~4e9 pairs at 2**16 ids
                raise InvalidInput(f"{what} {old!r} and {v!r} share a 64-bit digest; rename one", field=what)
    return out


def merge_keyed(parts: Iterable[KeyedPartials]) -> KeyedPartials:
    """Merge per-shard partials of disjoint accounts into partials over all of them.

    Raises
    ------
    InvalidInput
        If the parts hold different columns or were made differently (``meta`` differs, e.g. two rule-set
        versions), or two ids share a digest.
    """
    parts = list(parts)
    if not parts:
        return KeyedPartials({}, {}, {}, {})
    names = set(parts[0].columns)
    for i, p in enumerate(parts):
        if not isinstance(p, KeyedPartials):
            raise InvalidInput(f"parts[{i}] must be KeyedPartials, got {type(p).__name__}", field="parts")
        if set(p.columns) != names:
            raise InvalidInput(f"parts[{i}] holds columns {sorted(p.columns)}, parts[0] {sorted(names)}",
                               field="parts")
        if p.meta != parts[0].meta:
            raise InvalidInput(f"parts[{i}] was made with {p.meta}, parts[0] with {parts[0].meta}", field="parts")
    columns = {name: merge_partials(p.columns[name] for p in parts) for name in sorted(names)}
    return KeyedPartials(columns, _union((p.ids for p in parts), "id"),
                         _union((p.labels for p in parts), "label"), dict(parts[0].meta))


def aligned(part: GroupPartials, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``part.keys`` and a mask of the keys it holds (keys of ``part`` ascend)."""
    pos = np.searchsorted(part.keys, keys)
    pos_c = np.minimum(pos, max(len(part) - 1, 0))
    held = (pos < len(part)) & (part.keys[pos_c] == keys) if len(part) else np.zeros(keys.shape[0], dtype=bool)
    return pos_c, held


def digests(values: list[str], cache: dict[str, int]) -> np.ndarray:
    """:func:`~grid.rules.features.key64` of each value, int64; ``cache`` (text -> digest) is filled as it goes."""
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        d = cache.get(v)
        if d is None:
            d = cache[v] = key64(v)
        out[i] = d
    return out
