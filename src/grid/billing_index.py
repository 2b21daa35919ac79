"""What a bill run needs from a shard's records and usage, built once per state of the shard.

The billing index groups a shard's active accounts (with a service point) by (rate plan, interval length),
in record order - after a load, usage row order - so a group's usage is one ascending run of rows and the bill
kernel can stream a view of the month matrix instead of a copy. It is cached on the shard
(``Shard.billing_index``) while the records and owned partitions do not change (``change_seq``); a run bills
each shard in contiguous chunks (:func:`billing_index` with ``chunk=(i, k)``), slices of the same index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from grid.timegrid import calendar, month_bounds


@dataclass
class Group:
    """Active accounts of one (rate plan, interval length) on a shard, in usage-row order."""

    plan: str
    interval_minutes: int
    customers: list[str]
    accounts: list[str]
    sp_lists: list[list[str]]
    rows: np.ndarray | None = None  # usage rows of the flattened service points (set on first use)
    parent: "Group | None" = None  # a chunk's group: the full index's group it is a slice of
    span: tuple[int, int] = (0, 0)  # the slice of ``parent``'s accounts
    sp_starts: np.ndarray | None = None  # offsets of each account's service points in ``rows`` (full only)


@dataclass
class BillingIndex:
    """What a bill run needs from the context records, built once per state of the shard."""

    groups: list[Group]
    accounts: pa.Array  # every grouped account id, in bill order (groups concatenated)

    @property
    def n(self) -> int:
        return len(self.accounts)


@dataclass
class BillingIndexes:
    """The shard's billing index, its chunks and the legacy lines per period, valid while ``key`` holds."""

    key: tuple
    full: BillingIndex
    chunks: dict[tuple[int, int], tuple[BillingIndex, int]]
    legacy: dict[tuple, "LegacyLines"]


def _full_index(shard) -> BillingIndex:
    """The one Python pass over the records a bill run needs: accounts grouped by (plan, interval), in record
    (= usage row) order, so that a group's rows are one ascending run after a load."""
    by: dict[tuple[str, int], Group] = {}
    for cid, rec in shard.records.items():
        for a in rec["accounts"]:
            sps = a["service_points"]
            if a.get("status", "active") != "active" or not sps:
                continue
            k = (a["rate_plan_id"], int(sps[0].get("interval_minutes", 60)))
            g = by.get(k)
            if g is None:
                g = by[k] = Group(k[0], k[1], [], [], [])
            g.customers.append(cid)
            g.accounts.append(a["account_id"])
            g.sp_lists.append([sp["service_point_id"] for sp in sps])
    groups = [by[k] for k in sorted(by)]
    return BillingIndex(groups, pa.array([a for g in groups for a in g.accounts], pa.string()))


def _chunk_index(full: BillingIndex, i: int, k: int) -> tuple[BillingIndex, int]:
    """Chunk ``i`` of ``k`` (contiguous account positions ``[lo, hi)``) and its ``lo``: slices, so each group's
    usage stays one contiguous view of the month matrix."""
    lo, hi = full.n * i // k, full.n * (i + 1) // k
    groups, off = [], 0
    for g in full.groups:
        a, b = max(lo - off, 0), min(hi - off, len(g.accounts))
        if a < b:
            groups.append(Group(g.plan, g.interval_minutes, g.customers[a:b], g.accounts[a:b], g.sp_lists[a:b],
                                parent=g, span=(a, b)))
        off += len(g.accounts)
    return BillingIndex(groups, full.accounts.slice(lo, hi - lo)), lo


def indexes(shard) -> BillingIndexes:
    """The shard's cached indexes, rebuilt when its records or partitions changed."""
    key = (shard.change_seq, len(shard.records), shard.owned.tobytes())
    cached = shard.billing_index
    if cached is None or cached.key != key:
        cached = shard.billing_index = BillingIndexes(key, _full_index(shard), {}, {})
    return cached


def billing_index(shard, chunk: tuple[int, int] | None = None) -> tuple[BillingIndex, int]:
    """(index, position of its first account in the full index): the whole shard, or chunk ``(i, k)`` of it.

    One pass over the records serves every chunk of a run (a run calls once per chunk) and every later run.
    """
    cached = indexes(shard)
    if chunk is None:
        return cached.full, 0
    out = cached.chunks.get(chunk)
    if out is None:
        out = cached.chunks[chunk] = _chunk_index(cached.full, *chunk)
    return out


def _rows(store, sp_lists: list[list[str]]) -> np.ndarray:
    """Usage rows of the service points, flattened (-1 where the store holds no row)."""
    return np.array([store.row_of.get(sp, -1) for sps in sp_lists for sp in sps], dtype=np.int64)


def group_rows(store, g: Group) -> np.ndarray:
    """:func:`_rows` of a group, computed once per index (rows change only with the records' change_seq)."""
    if g.parent is not None:
        rows = group_rows(store, g.parent)
        starts = g.parent.sp_starts
        return rows[starts[g.span[0]]:starts[g.span[1]]]
    if g.rows is None:
        g.rows = _rows(store, g.sp_lists)
        g.sp_starts = np.concatenate([[0], np.cumsum([len(s) for s in g.sp_lists])]).astype(np.int64)
    return g.rows


def has_usage(store, month: str, sp_lists: list[list[str]], rows: np.ndarray | None = None) -> np.ndarray:
    """Per account: whether the store holds ``month`` for every one of its service points.

    A service point holds a month when its row exists in the month matrix and its data reaches into the month
    (``filled_through`` past the month's first interval): a meter added after the month was loaded, or data
    that stops before the month, is *no usage*, not a zero bill.
    """
    out = np.zeros(len(sp_lists), dtype=bool)
    block = store.months.get(month) if store is not None else None
    if block is None or not sp_lists:
        return out
    rows = _rows(store, sp_lists) if rows is None else rows
    first = int(calendar(*month_bounds(month), store.interval_minutes, store.timezone).utc_start[0])
    ok = (rows >= 0) & (rows < block.imp.shape[0])
    ok[ok] = store.filled_through[rows[ok]] > first
    if len(rows) == len(sp_lists):
        return ok
    starts = np.cumsum([0] + [len(s) for s in sp_lists[:-1]])
    return np.logical_and.reduceat(ok, starts)


def usage_matrix(store, month: str, sp_lists: list[list[str]],
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Import/export matrices, one row per account (service points summed interval by interval).

    When the rows are one ascending run (the usual case after a load) the import matrix is a view of the
    shard's month matrix, not a copy: the kernel streams the shard's memory directly. Returns (None, None)
    when some service point has no row for the month (see :func:`has_usage`).
    """
    rows = _rows(store, sp_lists) if rows is None else rows
    block = store.months.get(month)
    if block is None or (rows < 0).any() or (len(rows) and rows.max() >= block.imp.shape[0]):
        return None, None
    n = len(rows)
    if n and rows[-1] - rows[0] == n - 1 and (np.diff(rows) == 1).all() and (store.export_row[rows] < 0).all():
        imp, exp = block.imp[rows[0]:rows[0] + n], None
    else:
        imp, exp = store.matrix(month, rows)
    if n != len(sp_lists):  # totalize accounts with several service points
        starts = np.cumsum([0] + [len(s) for s in sp_lists[:-1]])
        imp = np.add.reduceat(imp.astype(np.int64), starts, axis=0)
        exp = None if exp is None else np.add.reduceat(exp.astype(np.int64), starts, axis=0)
    return imp, exp
