"""Usage rows of an ``import_rows`` op into a shard's interval stores, vectorized per (interval length, month).

Called by ``grid.imports.apply`` for a batch whose action is ``usage``; each row is checked (its service point
is on its customer, Wh in range, the start on an interval boundary, its duration that of the interval or a
whole part of it) and written, or refused whole. Readings shorter than the interval are summed into it when all
its parts are in the batch; a reading equal to the stored one is counted unchanged and not written.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from grid.imports.columns import ints, text
from grid.timegrid import local_midnight_utc, month_of, next_month, zone

MAX_WH = 100_000_000  # as the usage route: one interval's energy above this is a unit error, not a reading


def apply_usage(shard, cids, offs, cols, touched) -> tuple[list[dict], int]:
    """Write a batch's new usage rows into the shard's interval stores; return the rows refused and unchanged.

    A reading covers ``usage.duration`` seconds (ESPI's ``timePeriod/duration``; absent or 0: one interval of
    its service point). A reading as long as the interval is stored as it is. Readings shorter than the
    interval (15-minute readings of an hourly point) are summed into it when every part of the interval is in
    the batch, else all its parts are refused. A reading longer than the interval (an hourly reading of a
    15-minute point) is refused on ``usage.duration``: how its energy fell within the hour is not known, and an
    even split would be a made-up load shape under time-of-use and demand charges.

    Parameters
    ----------
    shard : grid.shard.Shard
    cids : column
        Customer of each row (``grid.imports.columns.text`` encodings).
    offs : ndarray of int64, shape (n,)
        Each row's offset in its stream.
    cols : dict
        ``service_point_id``, ``usage.start`` (epoch seconds), ``usage.import_wh`` and ``usage.export_wh`` (Wh),
        optionally ``usage.duration`` (seconds).
    touched : dict
        Filled with each customer whose usage changed.

    Returns
    -------
    refused : list of dict
        ``{"offset", "field", "reason"}`` per refused row; the other rows are written.
    unchanged : int
        Rows whose interval already held the same Wh (and was filled): counted, not rewritten.
    """
    sp_vals, sp_code = text(cols["service_point_id"])
    cid_vals, cid_code = text(cids)
    start = ints(cols["usage.start"])
    imp = ints(cols["usage.import_wh"])
    exp_col, dur_col = cols.get("usage.export_wh"), cols.get("usage.duration")
    exp = np.zeros_like(imp) if exp_col is None else ints(exp_col)
    n = sp_code.size
    ok = np.ones(n, bool)
    refused = []
    unchanged = 0

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
    dur = minutes * 60 if dur_col is None else ints(dur_col)
    dur = np.where(dur == 0, minutes * 60, dur)
    refuse(dur < 0, "usage.duration", "a reading's duration is a positive number of seconds")
    for d, iv in _pairs(dur, minutes, ok & (dur > minutes * 60)):
        refuse((dur == d) & (minutes == iv), "usage.duration",
               f"a {_span(d)} reading for a {iv}-minute service point: not split into {iv}-minute intervals "
               f"(how its energy fell within them is not known)")
    for iv in _present(minutes[ok]):
        sel = np.flatnonzero(ok & (minutes == iv))
        store = shard._store(int(iv))
        row_of = np.array([store.row_of.get(sp, -1) for sp in sp_vals], np.int64)
        used = _present(sp_code[sel])
        missing = used[row_of[used] < 0]
        if missing.size:  # a service point indexed without a usage row yet
            row_of[missing] = store.add_service_points([sp_vals[u] for u in missing], [False] * missing.size)
        step = int(iv) * 60
        d, t = dur[sel], start[sel]
        # a month starts on an interval boundary, so an interval's parts lie in its month
        months, month_start = _months(int(t.min()), int(t.max()), shard.timezone)
        m = np.searchsorted(month_start, t, side="right") - 1
        mc = np.clip(m, 0, len(months) - 1)
        part_off = t - month_start[mc]
        off = part_off - np.where(d < step, part_off % step, 0)  # a part's interval: its start floored
        bad = (m < 0) | (m >= len(months)) | (off % step != 0) | (part_off % d != 0) | (step % d != 0)
        for i in sel[bad]:
            what = f"{iv}-minute interval" if dur[i] >= step else \
                f"{_span(int(dur[i]))} part of a {iv}-minute interval"
            refused.append({"offset": int(offs[i]), "field": "usage.start", "reason": f"not the start of a {what}"})
        ok[sel[bad]] = False
        keep = np.flatnonzero(~bad)
        c_row, c_m, c_idx = row_of[sp_code[sel[keep]]], mc[keep], off[keep] // step
        c_imp, c_exp, c_cid = imp[sel[keep]], exp[sel[keep]], cid_code[sel[keep]]
        weight = np.ones(keep.size, np.int64)
        short = d[keep] < step
        if short.any():  # parts of an interval: one summed cell per interval whose parts are all here
            whole, cells = _whole_intervals(c_row[short], c_m[short], c_idx[short], t[keep[short]], d[keep[short]],
                                            step, len(months))
            gone = keep[short][~whole[cells.inverse]]
            for j in gone:
                refused.append({"offset": int(offs[sel[j]]), "field": "usage.duration",
                                "reason": f"a {_span(int(d[j]))} part of a {iv}-minute interval whose other "
                                          f"parts are not all in this batch (each once, the same length)"})
            ok[sel[gone]] = False
            inv, first = cells.inverse, cells.first
            sums = [np.bincount(inv, weights=v[short], minlength=whole.size).astype(np.int64) for v in (c_imp, c_exp)]
            g = np.flatnonzero(whole)
            full = ~short
            c_row = np.concatenate([c_row[full], c_row[short][first[g]]])
            c_m = np.concatenate([c_m[full], c_m[short][first[g]]])
            c_idx = np.concatenate([c_idx[full], c_idx[short][first[g]]])
            c_cid = np.concatenate([c_cid[full], c_cid[short][first[g]]])
            c_imp = np.concatenate([c_imp[full], sums[0][g]])
            c_exp = np.concatenate([c_exp[full], sums[1][g]])
            weight = np.concatenate([weight[full], cells.counts[g]])
        for k in _present(c_m):
            w = np.flatnonzero(c_m == k)
            r, idx, e = c_row[w], c_idx[w], c_exp[w]
            b = store.block(months[k])
            end = month_start[k] + (idx + 1) * step
            er = store.export_row[r]
            # a reading equal to the stored one (of an interval already filled) is unchanged: counted, not written
            same = (b.imp[r, idx] == c_imp[w]) & (np.where(er >= 0, b.exp[np.maximum(er, 0), idx], 0) == e) & \
                (store.filled_through[r] >= end)
            unchanged += int(weight[w[same]].sum())
            if same.all():
                continue
            w, r, idx, e, end = w[~same], r[~same], idx[~same], e[~same], end[~same]
            b.imp[r, idx] = c_imp[w]
            if e.any():
                for row in np.unique(r[e > 0]):
                    if store.export_row[row] < 0:
                        store.export_row[row] = store.n_export
                        store.n_export += 1
                b = store.block(months[k])
                er = store.export_row[r]
                has = er >= 0
                b.exp[er[has], idx[has]] = e[has]
            np.maximum.at(store.filled_through, r, end)
            for c in _present(c_cid[w]):
                touched[cid_vals[c]] = 1
    return refused, unchanged


@dataclass
class _Cells:
    inverse: np.ndarray  # per part: its interval's cell
    first: np.ndarray  # per cell: one of its parts
    counts: np.ndarray  # per cell: its parts


def _whole_intervals(rows, m, idx, start, dur, step, n_months) -> tuple[np.ndarray, _Cells]:
    """Group readings shorter than the interval by (service point row, month, interval); a cell is whole when
    its parts have one duration and cover it once each (every sub-start present, none twice)."""
    slots = 32 * 24 * 3600 // step + 2  # intervals in a month, with room for DST's extra hour
    key = (rows * n_months + m) * slots + idx
    first, inv, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)[1:]
    inv = inv.reshape(-1)
    lo = np.full(first.size, step, np.int64)
    hi = np.zeros(first.size, np.int64)
    np.minimum.at(lo, inv, dur)
    np.maximum.at(hi, inv, dur)
    distinct = np.bincount(np.unique(inv * step + start % step) // step, minlength=first.size)
    whole = (lo == hi) & (counts == step // lo) & (distinct == counts)
    return whole, _Cells(inv, first, counts)


def _span(seconds: int) -> str:
    return f"{seconds // 60}-minute" if seconds % 60 == 0 else f"{seconds}-second"


def _pairs(dur, minutes, mask) -> list[tuple[int, int]]:
    """The distinct (duration, interval minutes) of the rows ``mask``."""
    return sorted(set(zip(dur[mask].tolist(), minutes[mask].tolist())))


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
