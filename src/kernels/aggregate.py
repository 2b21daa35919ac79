"""Whole-base group-by as per-shard partials: sum, max, count and exact distinct counts per int64 key.

Each shard reduces its own rows with :func:`group_partials`; the caller gathers the partials and combines them
with :func:`merge_partials`. Sums, maxima and counts merge by adding and taking the maximum; distinct counts do
not (a value seen on two shards must count once), so a partial keeps each group's set of distinct values and the
merge unites the sets. Every result is exact: int64 sums that would overflow raise instead of wrapping.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kernels import errors
from kernels.validation import Status, raise_for_status, status_where
from kernels.validation import as_int64 as _as_int64
from kernels import _groupby

__all__ = ["GroupPartials", "group_partials", "merge_partials"]

INT64_MIN = np.iinfo(np.int64).min
INT64_MAX = np.iinfo(np.int64).max
# Keys whose range is at most (rows + this) get one accumulator slot per possible key (no sort, no hashing);
# wider ranges are ranked with np.unique first. Bounds the accumulators at 32 bytes x (rows + 64k).
_DENSE_SLACK = 1 << 16


@dataclass(frozen=True)
class GroupPartials:
    """Per-key reductions of some rows; arrays are aligned with ``keys`` (ascending, unique).

    ``sum`` and ``max`` are None when no values were given; ``distinct`` and ``distinct_offsets`` are None when no
    distinct column was given. The distinct values of group ``i`` are
    ``distinct[distinct_offsets[i]:distinct_offsets[i + 1]]``, ascending.
    """

    keys: np.ndarray                       # int64 (g,)
    sum: np.ndarray | None                 # int64 (g,)
    max: np.ndarray | None                 # int64 (g,)
    count: np.ndarray                      # int64 (g,) rows per key
    distinct: np.ndarray | None = None     # int64 (d,) distinct values, group after group
    distinct_offsets: np.ndarray | None = None  # int64 (g + 1,)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def distinct_count(self) -> np.ndarray:
        """Number of distinct values per key, int64 (g,); exact across merged shards."""
        if self.distinct_offsets is None:
            raise errors.InvalidInput("these partials were computed without a distinct column", field="distinct")
        return np.diff(self.distinct_offsets)


def _slot_plan(keys: np.ndarray) -> tuple[np.ndarray, int, int, np.ndarray | None]:
    """Dense accumulator slots for ``keys``: (kernel keys, key offset, number of slots, ranked keys or None)."""
    if keys.size == 0:
        return keys, 0, 0, None
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo + 1 <= keys.size + _DENSE_SLACK:
        return keys, lo, hi - lo + 1, None
    ranked, inverse = np.unique(keys, return_inverse=True)
    return inverse.astype(np.int64, copy=False), 0, int(ranked.size), ranked


def _used_slots(counts: np.ndarray, offset: int, ranked: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(group keys, slot indices to keep or None when every slot is a group)."""
    if ranked is not None:
        return ranked, None
    used = np.flatnonzero(counts)
    if used.size == counts.size:
        return used + offset, None
    return used + offset, used


def _accumulators(n_slots: int) -> np.ndarray:
    """Kernel accumulator rows (sum 0, max INT64_MIN, count 0, padding), int64 (n_slots, 4)."""
    acc = np.zeros((n_slots, 4), dtype=np.int64)
    acc[:, 1] = INT64_MIN
    return acc


def _compact(keep: np.ndarray | None, *columns: np.ndarray | None) -> list[np.ndarray | None]:
    """Each column as its own contiguous int64 array, restricted to the used slots when ``keep`` is given."""
    return [None if c is None else (c[keep] if keep is not None else np.ascontiguousarray(c)) for c in columns]


def _distinct_sets(slot_keys: np.ndarray, offset: int, n_slots: int, n_groups: int,
                   values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values per slot: (values group after group, ascending within a group; offsets (n_groups + 1,)).

    ``slot_keys - offset`` are the rows' slots in ``[0, n_slots)`` (as planned by :func:`_slot_plan`) and
    ``n_groups`` the number of slots that hold rows.
    """
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    if slot_keys.size == 0:
        return np.empty(0, dtype=np.int64), offsets
    lo, hi = int(values.min()), int(values.max())
    span, ranked, ranks = hi - lo + 1, None, values
    if n_slots * span > INT64_MAX:
        # Values too spread to pack beside the slot: pack their rank instead (at most one per row).
        ranked, ranks = np.unique(values, return_inverse=True)
        ranks, span, lo = ranks.astype(np.int64, copy=False), int(ranked.size), 0
        if n_slots * span > INT64_MAX:
            raise errors.InvalidInput(f"too many rows ({values.size}) to count distinct values in one call",
                               field="distinct")
    codes = np.empty(slot_keys.size, dtype=np.int64)
    _groupby.pack_codes(slot_keys, ranks, codes, offset, lo, span)
    codes.sort()
    out_counts = np.empty(n_groups, dtype=np.int64)
    written = _groupby.distinct_sorted_codes(codes, span, out_counts)
    np.cumsum(out_counts, out=offsets[1:])
    if ranked is not None:
        return ranked[codes[:written]], offsets
    distinct = codes[:written].copy()  # the scratch array is up to one code per row: keep only what is used
    distinct += lo
    return distinct, offsets

def group_partials(keys: np.ndarray, values: np.ndarray | None = None, *,
                   distinct: np.ndarray | None = None) -> GroupPartials:
    """Reduce rows by key: sum, max and count of ``values``, and the distinct ``distinct`` values per key.

    Parameters
    ----------
    keys : ndarray of int64, shape (n,)
        Group key of each row, any order (account index, portfolio id...).
    values : ndarray of int64, shape (n,), optional
        Value of each row (cents, Wh, W). Without it only counts (and distinct sets) are computed.
    distinct : ndarray of int64, shape (n,), optional
        A column whose distinct values are counted per key (e.g. service-point ids for "number of sites").

    Returns
    -------
    GroupPartials
        One entry per key present, keys ascending. Merge partials of disjoint row sets with
        :func:`merge_partials`; the result equals reducing all rows at once.

    Raises
    ------
    InvalidInput
        If an array is not a 1-D integer array castable to int64, lengths differ, or a key's sum overflows int64.
    """
    keys = _as_int64(keys, "keys")
    n = keys.shape[0]
    columns = {}
    for name, column in (("values", values), ("distinct", distinct)):
        if column is not None:
            column = _as_int64(column, name)
            if column.shape[0] != n:
                raise errors.InvalidInput(f"{name} must have the same length as keys ({n}), got {column.shape[0]}",
                                   field=name)
        columns[name] = column
    values, distinct = columns["values"], columns["distinct"]

    slot_keys, offset, n_slots, ranked = _slot_plan(keys)
    if values is None:
        counts = np.zeros(n_slots, dtype=np.int64)
        _groupby.group_count(slot_keys, counts, offset)
        sums = maxes = None
    else:
        acc = _accumulators(n_slots)
        where = status_where()
        status = _groupby.group_sum_max_count(slot_keys, values, acc, where, offset)
        raise_for_status(status, where, {Status.OVERFLOW: lambda row: errors.InvalidInput(
            f"sum of values for key {int(keys[row])} overflows int64", field="values")})
        sums, maxes, counts = acc[:, 0], acc[:, 1], acc[:, 2]

    group_keys, keep = _used_slots(counts, offset, ranked)
    counts, sums, maxes = _compact(keep, counts, sums, maxes)
    dvalues = doffsets = None
    if distinct is not None:
        dvalues, doffsets = _distinct_sets(slot_keys, offset, n_slots, group_keys.size, distinct)
    return GroupPartials(group_keys, sums, maxes, counts, dvalues, doffsets)


def merge_partials(parts: Iterable[GroupPartials]) -> GroupPartials:
    """Combine partials of disjoint row sets (one per shard) into the partials of all their rows.

    Parameters
    ----------
    parts : iterable of GroupPartials
        All computed alike: with or without values, with or without a distinct column.

    Returns
    -------
    GroupPartials
        Sums added, maxima and counts combined, distinct sets united. No parts give an empty result that
        carries counts only.

    Raises
    ------
    InvalidInput
        If the parts were computed differently, are malformed, or a merged sum overflows int64.
    """
    parts = list(parts)
    for i, part in enumerate(parts):
        if not isinstance(part, GroupPartials):
            raise errors.InvalidInput(f"parts[{i}] must be GroupPartials, got {type(part).__name__}", field="parts")
    if not parts:
        return GroupPartials(np.empty(0, np.int64), None, None, np.empty(0, np.int64))
    if len({p.sum is None for p in parts}) > 1:
        raise errors.InvalidInput("cannot merge partials with values and partials without", field="values")
    if len({p.distinct is None for p in parts}) > 1:
        raise errors.InvalidInput("cannot merge partials with a distinct column and partials without", field="distinct")
    with_values = parts[0].sum is not None
    with_distinct = parts[0].distinct is not None

    def column(name: str) -> np.ndarray:
        arrays = [_as_int64(getattr(p, name), name) for p in parts]
        for p, arr in zip(parts, arrays):
            if arr.shape[0] != p.keys.shape[0]:
                raise errors.InvalidInput(f"partial {name} has {arr.shape[0]} entries for {p.keys.shape[0]} keys",
                                   field=name)
        return np.concatenate(arrays)

    keys = np.concatenate([_as_int64(p.keys, "keys") for p in parts])
    counts_in = column("count")
    slot_keys, offset, n_slots, ranked = _slot_plan(keys)
    acc = _accumulators(n_slots)
    where = status_where()
    if with_values:
        status = _groupby.merge_sum_max_count(slot_keys, column("sum"), column("max"), counts_in, acc, where, offset)
    else:
        empty = np.empty(0, dtype=np.int64)
        status = _groupby.merge_sum_max_count(slot_keys, empty, empty, counts_in, acc, where, offset)
    raise_for_status(status, where, {Status.OVERFLOW: lambda row: errors.InvalidInput(
        f"merged sum for key {int(keys[row])} overflows int64", field="values")})
    counts = acc[:, 2]
    sums, maxes = (acc[:, 0], acc[:, 1]) if with_values else (None, None)

    group_keys, keep = _used_slots(counts, offset, ranked)
    counts, sums, maxes = _compact(keep, counts, sums, maxes)
    dvalues = doffsets = None
    if with_distinct:
        pair_slots, pair_values = [], []
        start = 0
        for p in parts:
            offsets = _as_int64(p.distinct_offsets, "distinct_offsets")
            dvals = _as_int64(p.distinct, "distinct")
            if offsets.shape[0] != p.keys.shape[0] + 1 or int(offsets[-1]) != dvals.shape[0]:
                raise errors.InvalidInput("partial distinct_offsets do not match its keys and distinct values",
                                   field="distinct_offsets")
            # Each partial's keys are rows start..start+len of the concatenation: reuse their planned slots.
            pair_slots.append(np.repeat(slot_keys[start:start + p.keys.shape[0]], np.diff(offsets)))
            pair_values.append(dvals)
            start += p.keys.shape[0]
        dvalues, doffsets = _distinct_sets(np.concatenate(pair_slots).astype(np.int64, copy=False), offset,
                                           n_slots, group_keys.size, np.concatenate(pair_values))
    return GroupPartials(group_keys, sums, maxes, counts, dvalues, doffsets)
