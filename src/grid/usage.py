"""Interval usage of one shard, laid out for kernels.

# Design: for each (month, interval length) one dense, C-contiguous int32 Wh matrix, service point x interval
# (local-time month, DST aware: see grid.timegrid), so a bill kernel streams one month of the whole shard as
# contiguous memory and accumulates in int64. Export (generation) exists for few service points, so it is held
# as a second matrix over those rows only, with ``export_row[row] = -1`` for the others. Rows are assigned once
# per service point and shared by every month of the same interval length. Readings that have not arrived are
# zero; ``filled_through[row]`` (epoch seconds) says how far each service point's data reaches.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from grid.errors import InvalidInput
from grid.timegrid import DEFAULT_TIMEZONE, calendar, month_bounds, month_of, zone


def _grow(a: np.ndarray, rows: int) -> np.ndarray:
    if a.shape[0] >= rows:
        return a
    cap = max(rows, 2 * a.shape[0], 64)
    out = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a[rows]``, with zeros for rows past ``a``'s end: a month block grows only when written, so a service
    point added after its month was last written (or trimmed) has no row in it yet, and reads as no usage."""
    if not len(rows) or int(rows.max()) < a.shape[0]:
        return a[rows]
    out = np.zeros((len(rows),) + a.shape[1:], dtype=a.dtype)
    inside = rows < a.shape[0]
    out[inside] = a[rows[inside]]
    return out


@dataclass
class MonthBlock:
    """One month of one interval length: import for every row, export for rows that export."""

    month: str
    n_intervals: int
    imp: np.ndarray  # int32 (capacity, n_intervals)
    exp: np.ndarray  # int32 (export capacity, n_intervals)


@dataclass
class UsageStore:
    """All usage of a shard for service points of one interval length."""

    interval_minutes: int = 60
    timezone: str = DEFAULT_TIMEZONE
    row_of: dict[str, int] = field(default_factory=dict)
    sp_ids: list[str] = field(default_factory=list)
    export_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    n_export: int = 0
    filled_through: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    months: dict[str, MonthBlock] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.sp_ids)

    def add_service_points(self, sp_ids, exports) -> np.ndarray:
        """Give each new service point a row (existing ones keep theirs); returns the rows."""
        rows = np.empty(len(sp_ids), dtype=np.int64)
        for i, (sp, has_export) in enumerate(zip(sp_ids, exports)):
            r = self.row_of.get(sp)
            if r is None:
                r = len(self.sp_ids)
                self.row_of[sp] = r
                self.sp_ids.append(sp)
                self.export_row = _grow(self.export_row, r + 1)
                self.filled_through = _grow(self.filled_through, r + 1)
                self.export_row[r] = -1
            if has_export and self.export_row[r] < 0:
                self.export_row[r] = self.n_export
                self.n_export += 1
            rows[i] = r
        return rows

    def block(self, month: str) -> MonthBlock:
        b = self.months.get(month)
        if b is None:
            start, end = month_bounds(month)
            n = calendar(start, end, self.interval_minutes, self.timezone).n
            b = MonthBlock(month, n, np.zeros((max(self.n_rows, 1), n), np.int32),
                           np.zeros((max(self.n_export, 1), n), np.int32))
            self.months[month] = b
        b.imp = _grow(b.imp, self.n_rows)
        b.exp = _grow(b.exp, self.n_export)
        return b

    def trim(self) -> int:
        """Give back the spare rows that growing by doubling left (after a bulk load: up to half of every month
        block); later writes grow the blocks again as needed. Returns the bytes freed."""
        freed = 0
        for b in self.months.values():
            for name, rows in (("imp", max(self.n_rows, 1)), ("exp", max(self.n_export, 1))):
                a = getattr(b, name)
                if a.shape[0] > rows:
                    freed += a.nbytes
                    setattr(b, name, a[:rows].copy())
                    freed -= getattr(b, name).nbytes
        return freed

    def put_month(self, month: str, rows: np.ndarray, imp: np.ndarray, exp: np.ndarray | None,
                  exp_mask: np.ndarray | None = None) -> None:
        """Bulk load a month for ``rows`` (imp shaped (len(rows), n_intervals))."""
        b = self.block(month)
        if imp.shape[1] != b.n_intervals:
            raise InvalidInput(f"{month} needs {b.n_intervals} intervals per row, got {imp.shape[1]}",
                               field="import_wh")
        b.imp[rows] = imp
        if exp is not None:
            mask = np.ones(len(rows), bool) if exp_mask is None else exp_mask
            er = self.export_row[rows[mask]]
            if (er < 0).any():
                raise InvalidInput("export given for a service point without export", field="export_wh")
            b.exp[er] = exp[mask]
        end = calendar(*month_bounds(month), self.interval_minutes, self.timezone)
        through = int(end.utc_start[-1]) + self.interval_minutes * 60
        self.filled_through[rows] = np.maximum(self.filled_through[rows], through)

    def locate(self, ts: int) -> tuple[str, int]:
        """(month, interval index) of the interval starting at epoch second ``ts``."""
        local_day = dt.datetime.fromtimestamp(ts, zone(self.timezone)).date()
        month = month_of(local_day)
        cal = calendar(*month_bounds(month), self.interval_minutes, self.timezone)
        step = self.interval_minutes * 60
        off = ts - int(cal.utc_start[0])
        if off % step:
            raise InvalidInput(f"reading start must align to {self.interval_minutes}-minute intervals",
                               field="start")
        return month, off // step

    def write_readings(self, row: int, month: str, idx: np.ndarray, imp: np.ndarray, exp: np.ndarray | None,
                       through: int) -> None:
        b = self.block(month)
        b.imp[row, idx] = imp
        if exp is not None and exp.any():
            if self.export_row[row] < 0:
                self.export_row[row] = self.n_export
                self.n_export += 1
                b = self.block(month)
            b.exp[self.export_row[row], idx] = exp
        self.filled_through[row] = max(int(self.filled_through[row]), through)

    def series(self, row: int, month: str) -> tuple[np.ndarray, np.ndarray]:
        """(import, export) Wh of one row for one month (zeros where nothing arrived)."""
        b = self.months.get(month)
        if b is None:
            start, end = month_bounds(month)
            n = calendar(start, end, self.interval_minutes, self.timezone).n
            return np.zeros(n, np.int32), np.zeros(n, np.int32)
        imp = b.imp[row] if row < b.imp.shape[0] else np.zeros(b.n_intervals, np.int32)
        er = int(self.export_row[row])
        exp = b.exp[er] if 0 <= er < b.exp.shape[0] else np.zeros(b.n_intervals, np.int32)
        return imp, exp

    def matrix(self, month: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Import matrix of ``rows`` for ``month`` and the export matrix (None when no row exports)."""
        b = self.block(month)
        imp = b.imp[rows]
        er = self.export_row[rows]
        if (er < 0).all():
            return imp, None
        exp = np.zeros_like(imp)
        has = er >= 0
        exp[has] = b.exp[er[has]]
        return imp, exp

    # -- snapshots ---------------------------------------------------------------------------------------
    def to_tables(self) -> dict[str, pa.Table]:
        """Arrow tables for a snapshot: one for the row index, one per month."""
        n = self.n_rows
        tables = {"rows": pa.table({"service_point_id": pa.array(self.sp_ids, pa.string()),
                                    "export_row": pa.array(self.export_row[:n].copy()),
                                    "filled_through": pa.array(self.filled_through[:n].copy())})}
        for month, b in self.months.items():
            imp = b.imp[:n].copy()  # copies: the live matrices keep taking writes while a snapshot is written
            exp = b.exp[: self.n_export].copy()
            tables[f"m{month}"] = pa.table({
                "imp": pa.FixedSizeListArray.from_arrays(pa.array(imp.reshape(-1)), b.n_intervals)})
            tables[f"x{month}"] = pa.table({
                "exp": pa.FixedSizeListArray.from_arrays(pa.array(exp.reshape(-1)), b.n_intervals)})
        return tables

    @classmethod
    def from_tables(cls, interval_minutes: int, timezone: str, tables: dict[str, pa.Table]) -> "UsageStore":
        s = cls(interval_minutes=interval_minutes, timezone=timezone)
        rows = tables["rows"]
        s.sp_ids = rows.column("service_point_id").to_pylist()
        s.row_of = {sp: i for i, sp in enumerate(s.sp_ids)}
        s.export_row = rows.column("export_row").to_numpy().astype(np.int32).copy()
        s.filled_through = rows.column("filled_through").to_numpy().astype(np.int64).copy()
        s.n_export = int((s.export_row >= 0).sum())
        for name, t in tables.items():
            if name.startswith("m"):
                month = name[1:]
                imp = _fixed_list_matrix(t.column("imp"))
                exp = _fixed_list_matrix(tables["x" + month].column("exp"))
                n = imp.shape[1] if imp.size else calendar(*month_bounds(month), interval_minutes, timezone).n
                s.months[month] = MonthBlock(month, n, imp, exp)
        return s


def _fixed_list_matrix(col) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    width = arr.type.list_size
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(len(arr), width)).astype(np.int32, copy=True)


def extract_rows(store: UsageStore, sp_ids: list[str]) -> dict:
    """Copies of these service points' rows (every month), to move them to another shard."""
    sp_ids = [s for s in sp_ids if s in store.row_of]
    rows = np.array([store.row_of[s] for s in sp_ids], dtype=np.int64)
    er = store.export_row[rows] if len(rows) else np.zeros(0, np.int32)
    months = {}
    for month, b in store.months.items():
        imp = _take(b.imp, rows).copy()
        exp = np.zeros_like(imp)
        has = er >= 0
        if has.any():
            exp[has] = _take(b.exp, er[has])
        months[month] = (imp, exp)
    return {"interval_minutes": store.interval_minutes, "sp_ids": sp_ids, "has_export": (er >= 0).tolist(),
            "filled_through": store.filled_through[rows].copy() if len(rows) else np.zeros(0, np.int64),
            "months": months}


def insert_rows(store: UsageStore, part: dict) -> None:
    """Add rows taken by :func:`extract_rows` from another shard."""
    if not part["sp_ids"]:
        return
    rows = store.add_service_points(part["sp_ids"], part["has_export"])
    mask = np.array(part["has_export"], dtype=bool)
    for month, (imp, exp) in part["months"].items():
        store.put_month(month, rows, imp, exp, mask)
    store.filled_through[rows] = part["filled_through"]


def drop_rows(store: UsageStore, sp_ids: set[str]) -> None:
    """Remove these service points and compact every matrix (rows keep their relative order)."""
    gone = {store.row_of[s] for s in sp_ids if s in store.row_of}
    if not gone:
        return
    n = store.n_rows
    keep = np.array([r for r in range(n) if r not in gone], dtype=np.int64)
    old_er = store.export_row[:n]
    keep_exp = old_er[keep]
    exp_keep = keep_exp[keep_exp >= 0]
    new_er = np.full(len(keep), -1, dtype=np.int32)
    new_er[keep_exp >= 0] = np.arange(len(exp_keep), dtype=np.int32)
    for b in store.months.values():
        b.imp = np.ascontiguousarray(_take(b.imp, keep))
        b.exp = np.ascontiguousarray(_take(b.exp, exp_keep)) if len(exp_keep) else np.zeros((1, b.n_intervals), np.int32)
    store.sp_ids = [store.sp_ids[r] for r in keep]
    store.row_of = {s: i for i, s in enumerate(store.sp_ids)}
    store.filled_through = store.filled_through[keep].copy()
    store.export_row = new_er
    store.n_export = len(exp_keep)
