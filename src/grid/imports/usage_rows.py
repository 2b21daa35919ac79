"""Usage rows of an ``import_rows`` op into a shard's interval stores, vectorized per (interval length, month).

Called by ``grid.imports.apply`` for a batch whose action is ``usage``; each row is checked (its service point
is on its customer, Wh in range, the start on an interval boundary) and written, or refused whole.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.imports.columns import ints, text
from grid.timegrid import local_midnight_utc, month_of, next_month, zone

MAX_WH = 100_000_000  # as the usage route: one interval's energy above this is a unit error, not a reading


def apply_usage(shard, cids, offs, cols, touched) -> list[dict]:
    """Write a batch's new usage rows into the shard's interval stores; return the rows refused.

    Parameters
    ----------
    shard : grid.shard.Shard
    cids : column
        Customer of each row (``grid.imports.columns.text`` encodings).
    offs : ndarray of int64, shape (n,)
        Each row's offset in its stream.
    cols : dict
        ``service_point_id``, ``usage.start`` (epoch seconds), ``usage.import_wh`` and ``usage.export_wh`` (Wh).
    touched : dict
        Filled with each customer whose usage changed.

    Returns
    -------
    list of dict
        ``{"offset", "field", "reason"}`` per refused row; the other rows are written.
    """
    sp_vals, sp_code = text(cols["service_point_id"])
    cid_vals, cid_code = text(cids)
    start = ints(cols["usage.start"])
    imp = ints(cols["usage.import_wh"])
    exp_col = cols.get("usage.export_wh")
    exp = np.zeros_like(imp) if exp_col is None else ints(exp_col)
    n = sp_code.size
    ok = np.ones(n, bool)
    refused = []

    def refuse(mask, fld, reason):
        for i in np.flatnonzero(mask & ok):
            refused.append({"offset": int(offs[i]), "field": fld, "reason": reason})
        ok[mask] = False

    # each distinct service point is looked up once; rows take their point's owner and interval by code
    cid_index = {c: k for k, c in enumerate(cid_vals)}
    owners = [shard.sp_owner.get(sp) for sp in sp_vals]
    owner_code = np.array([cid_index.get(o[0], -1) if o is not None else -2 for o in owners], np.int64)
    minutes_of = np.array([o[1] if o is not None else 60 for o in owners], np.int64)
    refuse(owner_code[sp_code] != cid_code, "usage.service_point_id", "service point is not on this customer")
    refuse((imp < 0) | (imp > MAX_WH), "usage.import_wh", f"not an integer Wh in 0..{MAX_WH}")
    refuse((exp < 0) | (exp > MAX_WH), "usage.export_wh", f"not an integer Wh in 0..{MAX_WH}")
    minutes = minutes_of[sp_code]
    for iv in _present(minutes[ok]):
        sel = np.flatnonzero(ok & (minutes == iv))
        store = shard._store(int(iv))
        row_of = np.array([store.row_of.get(sp, -1) for sp in sp_vals], np.int64)
        used = _present(sp_code[sel])
        missing = used[row_of[used] < 0]
        if missing.size:  # a service point indexed without a usage row yet
            row_of[missing] = store.add_service_points([sp_vals[u] for u in missing], [False] * missing.size)
        rows = row_of[sp_code[sel]]
        ts = start[sel]
        months, month_start = _months(int(ts.min()), int(ts.max()), shard.timezone)
        m = np.searchsorted(month_start, ts, side="right") - 1
        step = int(iv) * 60
        off = ts - month_start[np.clip(m, 0, len(months) - 1)]
        bad = (m < 0) | (m >= len(months)) | (off % step != 0)
        if bad.any():
            for i in sel[bad]:
                refused.append({"offset": int(offs[i]), "field": "usage.start",
                                "reason": f"not the start of a {iv}-minute interval"})
                ok[i] = False
        keep = ~bad
        for k in _present(m[keep]):
            w = keep & (m == k)
            idx = off[w] // step
            r = rows[w]
            b = store.block(months[k])
            b.imp[r, idx] = imp[sel[w]]
            e = exp[sel[w]]
            if e.any():
                for row in np.unique(r[e > 0]):
                    if store.export_row[row] < 0:
                        store.export_row[row] = store.n_export
                        store.n_export += 1
                b = store.block(months[k])
                er = store.export_row[r]
                has = er >= 0
                b.exp[er[has], idx[has]] = e[has]
            end = ts[w] + step
            np.maximum.at(store.filled_through, r, end)
        for c in _present(cid_code[sel[keep]]):
            touched[cid_vals[c]] = 1
    return refused


def _present(codes: np.ndarray) -> np.ndarray:
    """The distinct values of small non-negative integer codes (a counting pass: np.unique sorts)."""
    if codes.size == 0:
        return codes
    return np.flatnonzero(np.bincount(codes))


def _months(t0: int, t1: int, tz: str) -> tuple[list[str], np.ndarray]:
    """Local months covering epoch seconds [t0, t1] and their UTC starts, plus the end of the last."""
    z = zone(tz)
    first = dt.datetime.fromtimestamp(t0, z).date().replace(day=1)
    last = dt.datetime.fromtimestamp(t1, z).date().replace(day=1)
    months, starts = [], []
    d = first
    while d <= last:
        months.append(month_of(d))
        starts.append(local_midnight_utc(d, tz))
        d = next_month(d)
    starts.append(local_midnight_utc(d, tz))
    return months, np.asarray(starts, dtype=np.int64)
