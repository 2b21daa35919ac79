"""Bills: the validating wrapper around the Cython bill kernel, and the batch it returns.

One function bills one customer (a what-if) and a whole shard (a bill run): :func:`bill_intervals`. It checks
the inputs, builds the *plan* that depends only on tariff x period (the interval calendar cut into runs of one
energy slot / demand period, the prorated tier bounds of each calendar-month segment, the fixed and minimum
charges) once per call, and hands the usage to ``kernels._billing.bill_intervals``, which streams it once.

The billing rules are DOMAIN.md section 3; where it is silent, this is what contextgrid does (the reference
biller in ``tests/reference_billing.py`` is written from this text, not from the kernel):

* **Segments.** ``[start, end)`` is cut at calendar-month boundaries (local dates). A segment of ``d`` days
  in a month of ``D`` days scales each ``kWh`` tier bound by ``d / D`` (rounded half-up to whole Wh), the
  ``$/month`` fixed and minimum charges by ``d / D`` (``$/year``: by ``d / (12 D)``), each rounded half-up to
  nano-dollars per segment; ``kWh daily`` bounds are ``max x d``; ``$/day`` charges are ``rate x days``.
  Energy, tiers and net metering are computed per segment; the lines add up over segments.
* **Day type.** Saturdays, Sundays and ``contextgrid.holidays`` use the weekend schedules.
* **Demand** (W = Wh x 60 / interval_minutes) is not prorated. A TOU demand period's peak is the maximum
  over the whole bill of the intervals in that period (each interval classified by its own month's schedule);
  a flat demand period covers the months ``flatdemandmonths`` maps to it, and ``DEMAND_FLAT`` adds the
  charges of the flat periods the bill touches (one for a bill inside one month). Ties keep the first interval.
* **Net metering** ``net``: per segment and TOU period, export is netted against import before tiers; a
  period whose net is negative bills no energy and its surplus is credited at the period's first-tier price
  (rate + adj) in ``NEM_CREDIT`` (quantity: Wh credited). ``sell_rate``: import is billed in full and all
  export is credited at ``sell_rate`` (or the period's first-tier ``sell``). Without net metering, export is
  checked but not billed.
* **Riders** bill all import (before netting). **Minimum**: if the sum of the rounded lines is below the
  (prorated) minimum rounded to the cent, ``MINIMUM`` makes up the difference. **Taxes** apply to the rounded
  subtotal including the minimum; a negative subtotal (a credit balance) is not taxed.
* **Quantities**: energy lines in Wh (pooled tiers: each period's share, rounded half-up), demand lines the
  peak in W, ``FIXED`` the days (``$/day``) or calendar-month segments, riders and ``NEM_CREDIT`` Wh,
  ``MINIMUM`` and taxes the calendar-month segments.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from kernels import timegrid
from kernels import errors
from kernels import _billing
from kernels.tariffs import OPEN, CompiledTariff
from kernels.validation import Status, raise_for_status, status_where

MAX_INTERVALS = 2**17  # keeps every per-row sum below 2**48 Wh, so products fit the kernel's 128-bit lines
MAX_WH = 2**31 - 1  # per interval (2.1 GWh): larger readings are rejected as corrupt
NANO_PER_CENT = 10**7


def round_half_up_div(num: int, den: int) -> int:
    """``num / den`` rounded half away from zero (the kernels' rule), for Python ints; ``den > 0``."""
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


# ---------------------------------------------------------------------------------------------------------------
# the batch


@dataclass(repr=False)
class _Detail:
    """What :meth:`BillBatch.trace` needs beyond the lines (kernel trace outputs and the plan's calendar)."""

    tariff_id: str
    start: dt.date
    end: dt.date
    interval_minutes: int
    timezone: str
    segments: tuple[tuple[dt.date, dt.date, int, int], ...]
    n_periods: int
    n_demand: int
    n_flat: int
    utc_start: np.ndarray  # int64 epoch seconds of each interval
    slot_import: np.ndarray  # (B, S*P)
    slot_export: np.ndarray  # (B, S*P)
    peak_w: np.ndarray  # (B, Q+F)
    peak_at: np.ndarray  # (B, Q+F)


@dataclass
class BillBatch:
    """Bills of ``n_bills`` rows under one tariff and period, one column per possible line of the tariff.

    ``quantity`` and ``amount_cents`` are int64 ``(n_bills, n_lines)``; ``total_cents`` int64 ``(n_bills,)`` is
    the sum of each row's rounded lines. ``codes`` and ``units`` name the columns in a stable order.
    """

    codes: list[str]
    units: list[str]
    quantity: np.ndarray
    amount_cents: np.ndarray
    total_cents: np.ndarray
    detail: _Detail | None = field(default=None, repr=False, compare=False)

    @property
    def n_bills(self) -> int:
        return int(self.total_cents.shape[0])

    def __len__(self) -> int:
        return self.n_bills

    def bill(self, i: int) -> dict:
        """Bill ``i`` as ``{"lines": [{"code", "quantity", "unit", "amount_cents"}...], "total_cents": int}``.

        Lines whose quantity and amount are both zero are left out; the others keep the batch's code order.
        """
        q = self.quantity[i]
        a = self.amount_cents[i]
        lines = [
            {"code": c, "quantity": int(q[j]), "unit": u, "amount_cents": int(a[j])}
            for j, (c, u) in enumerate(zip(self.codes, self.units))
            if q[j] != 0 or a[j] != 0
        ]
        return {"lines": lines, "total_cents": int(self.total_cents[i])}

    def trace(self, i: int) -> dict:
        """How bill ``i`` was computed: energy per segment and period, energy per tier, demand peaks and when."""
        d = self.detail
        if d is None:
            raise ValueError("this batch carries no trace detail")
        tz = timegrid.zone(d.timezone)
        P = d.n_periods
        segments = []
        for s, (s0, s1, days, dim) in enumerate(d.segments):
            periods = [
                {"period": p, "import_wh": int(d.slot_import[i, s * P + p]),
                 "export_wh": int(d.slot_export[i, s * P + p])}
                for p in range(P)
                if d.slot_import[i, s * P + p] or d.slot_export[i, s * P + p]
            ]
            segments.append({"start": s0.isoformat(), "end": s1.isoformat(), "days": days,
                             "days_in_month": dim, "periods": periods})
        energy = []
        for j, code in enumerate(self.codes):
            if code.startswith("ENERGY_P") and (self.quantity[i, j] or self.amount_cents[i, j]):
                p, t = code[len("ENERGY_P"):].split("_T")
                energy.append({"code": code, "period": int(p), "tier": int(t),
                               "quantity_wh": int(self.quantity[i, j]), "amount_cents": int(self.amount_cents[i, j])})

        def peak(q: int, key: str, index: int) -> dict:
            at = int(d.peak_at[i, q])
            out = {key: index, "peak_w": int(d.peak_w[i, q]), "interval": at if at >= 0 else None}
            if at >= 0:
                t = dt.datetime.fromtimestamp(int(d.utc_start[at]), dt.timezone.utc)
                out["start_utc"] = t.isoformat()
                out["start_local"] = t.astimezone(tz).isoformat()
            return out

        demand = [dict(code=f"DEMAND_P{q}", **peak(q, "period", q)) for q in range(d.n_demand)]
        flat = [peak(d.n_demand + f, "flat_period", f) for f in range(d.n_flat)]
        return {
            "tariff": d.tariff_id,
            "start": d.start.isoformat(),
            "end": d.end.isoformat(),
            "interval_minutes": d.interval_minutes,
            "timezone": d.timezone,
            "segments": segments,
            "energy": energy,
            "demand": [x for x in demand if x["interval"] is not None],
            "flat_demand": [x for x in flat if x["interval"] is not None],
            **self.bill(i),
        }


# ---------------------------------------------------------------------------------------------------------------
# the plan: everything that depends on tariff x period only


@dataclass(frozen=True)
class _Plan:
    calendar: timegrid.IntervalCalendar
    segments: tuple[tuple[dt.date, dt.date, int, int], ...]
    arrays: dict  # kernel array arguments
    options: dict  # kernel scalar arguments


def _segments(start: dt.date, end: dt.date) -> tuple[tuple[dt.date, dt.date, int, int], ...]:
    out = []
    d = start
    while d < end:
        nxt = min(timegrid.next_month(d), end)
        dim = (timegrid.next_month(d) - d.replace(day=1)).days
        out.append((d, nxt, (nxt - d).days, dim))
        d = nxt
    return tuple(out)


def _charge_nano(unit: str | None, micro: int, segments) -> int:
    """Fixed or minimum charge of the period in nano-dollars, prorated per calendar-month segment."""
    if unit is None:
        return 0
    if unit == "$/day":
        return micro * 1000 * sum(days for _, _, days, _ in segments)
    per = 12 if unit == "$/year" else 1
    return sum(round_half_up_div(micro * 1000 * days, per * dim) for _, _, days, dim in segments)


def _i32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Start of each maximal stretch of equal ``keys``, then ``n``: int64 (R+1,)."""
    n = keys[0].shape[0]
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.append(np.flatnonzero(change), n).astype(np.int64)


@lru_cache(maxsize=256)
def _plan(tariff: CompiledTariff, start: dt.date, end: dt.date, interval_minutes: int) -> _Plan:
    cal = timegrid.calendar(start, end, interval_minutes, tariff.timezone)
    if cal.n > MAX_INTERVALS:
        raise errors.InvalidInput(f"a bill period may hold at most {MAX_INTERVALS} intervals, {start} to {end} has "
                           f"{cal.n}", field="end")
    segs = _segments(start, end)
    S, P, Q, F = len(segs), tariff.n_periods, tariff.n_demand_periods, tariff.n_flat_periods
    n = cal.n

    # per interval: segment, day type, energy slot, demand periods
    seg_starts = np.array([s0.toordinal() for s0, _, _, _ in segs], dtype=np.int64)
    seg = np.searchsorted(seg_starts, cal.date_ordinal, side="right") - 1
    weekend = cal.weekday >= 5
    if tariff.holidays:
        weekend |= np.isin(cal.date_ordinal, np.fromiter(tariff.holidays, dtype=np.int64))
    m = cal.month.astype(np.intp) - 1
    h = cal.hour.astype(np.intp)
    if P:
        ep = np.where(weekend, tariff.energy_weekend[m, h], tariff.energy_weekday[m, h]).astype(np.int64)
        slot = seg * P + ep
    else:
        slot = np.full(n, -1, dtype=np.int64)
    demand = (np.where(weekend, tariff.demand_weekend[m, h], tariff.demand_weekday[m, h]).astype(np.int64)
              if Q else np.full(n, -1, dtype=np.int64))
    flat = Q + tariff.flat_months[m].astype(np.int64) if F else np.full(n, -1, dtype=np.int64)

    # runs: maximal stretches of intervals with the same energy slot, and with the same demand periods
    run_start = _runs(slot)
    demand_start = _runs(demand, flat) if Q + F else np.zeros(1, dtype=np.int64)

    # prorated tier bounds per slot, pooled bounds per segment
    T = tariff.energy_max_wh.shape[1] if P else 1
    slot_bound = np.full((max(S * P, 1), T), OPEN, dtype=np.int64)
    pool_bound = np.full((S, T), OPEN, dtype=np.int64)
    pool_ntiers = np.ones(S, dtype=np.int32)
    for s, (_, _, days, dim) in enumerate(segs):
        for p in range(P):
            for t in range(int(tariff.energy_ntiers[p])):
                b = int(tariff.energy_max_wh[p, t])
                if b != OPEN:
                    b = b * days if tariff.energy_daily[p] else round_half_up_div(b * days, dim)
                slot_bound[s * P + p, t] = b
        if P:
            month = segs[s][0].month - 1
            p0 = min(set(tariff.energy_weekday[month].tolist()) | set(tariff.energy_weekend[month].tolist()))
            pool_bound[s] = slot_bound[s * P + p0]
            pool_ntiers[s] = tariff.energy_ntiers[p0]

    if tariff.net_metering == "net":
        credit = tariff.energy_price[:, 0] if P else np.zeros(0)
    elif tariff.net_metering == "sell_rate":
        credit = (np.full(P, tariff.sell_rate_micro) if tariff.sell_rate_micro is not None
                  else (tariff.energy_sell[:, 0] if P else np.zeros(0)))
    else:
        credit = np.zeros(P)

    codes = tariff.codes
    index = {c: j for j, c in enumerate(codes)}
    energy_line = [index[f"ENERGY_P{p}_T0"] for p in range(P)]

    Td = max(tariff.demand_max_w.shape[1] if Q else 1, tariff.flat_max_w.shape[1] if F else 1)
    demand_bound = np.full((Q + F, Td), OPEN, dtype=np.int64)
    demand_price = np.zeros((Q + F, Td), dtype=np.int64)
    if Q:
        demand_bound[:Q, : tariff.demand_max_w.shape[1]] = tariff.demand_max_w
        demand_price[:Q, : tariff.demand_price.shape[1]] = tariff.demand_price
    if F:
        demand_bound[Q:, : tariff.flat_max_w.shape[1]] = tariff.flat_max_w
        demand_price[Q:, : tariff.flat_price.shape[1]] = tariff.flat_price
    demand_ntiers = np.concatenate([tariff.demand_ntiers, tariff.flat_ntiers]) if Q + F else np.zeros(0)

    days = (end - start).days
    fixed_nano = _charge_nano(tariff.fixed_unit, tariff.fixed_micro, segs)
    fixed_qty = days if tariff.fixed_unit == "$/day" else S
    min_cents = round_half_up_div(_charge_nano(tariff.min_unit, tariff.min_micro, segs), NANO_PER_CENT)

    arrays = dict(
        run_start=_i64(run_start),
        run_slot=_i32(slot[run_start[:-1]]),
        demand_start=_i64(demand_start),
        run_demand=_i32(demand[demand_start[:-1]]),
        run_flat=_i32(flat[demand_start[:-1]]),
        slot_bound=_i64(slot_bound),
        pool_bound=_i64(pool_bound),
        pool_ntiers=_i32(pool_ntiers),
        ntiers=_i32(tariff.energy_ntiers),
        price=_i64(tariff.energy_price if P else np.zeros((0, 1))),
        credit_price=_i64(credit),
        energy_line=_i32(energy_line),
        demand_bound=_i64(demand_bound),
        demand_price=_i64(demand_price),
        demand_ntiers=_i32(demand_ntiers),
        rider_price=_i64([r for _, r in tariff.riders]),
        tax_micro_pct=_i64([t for _, t in tariff.taxes]),
    )
    for a in arrays.values():
        a.setflags(write=False)
    options = dict(
        n_segments=S, n_periods=P, n_demand=Q,
        pooled=tariff.tier_scope == "pooled",
        nem_mode={"none": 0, "net": 1, "sell_rate": 2}[tariff.net_metering],
        w_per_wh=60 // interval_minutes,
        line_demand=index.get("DEMAND_P0", -1),
        line_flat=index.get("DEMAND_FLAT", -1),
        line_fixed=index.get("FIXED", -1),
        fixed_nano=fixed_nano, fixed_qty=fixed_qty,
        line_rider=index[f"RIDER_{tariff.riders[0][0]}"] if tariff.riders else -1,
        line_nem=index.get("NEM_CREDIT", -1),
        line_min=index.get("MINIMUM", -1),
        min_cents=min_cents, min_qty=S,
        line_tax=index[f"TAX_{tariff.taxes[0][0]}"] if tariff.taxes else -1,
        tax_qty=S,
    )
    return _Plan(cal, segs, arrays, options)


# ---------------------------------------------------------------------------------------------------------------
# the wrapper


def _date(value, name: str) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise errors.InvalidInput(f"{name} must be a date, got {type(value).__name__}", field=name)
    return value


def _usage(value, name: str, n: int, where: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype not in (np.int32, np.int64):
        raise errors.InvalidInput(f"{name} must be int32 or int64 Wh, got {a.dtype}", field=name)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    elif a.ndim != 2:
        raise errors.InvalidInput(f"{name} must have shape (n_intervals,) or (n_bills, n_intervals), got {a.shape}",
                           field=name)
    if a.shape[1] != n:
        raise errors.InvalidInput(f"{name} must have {n} intervals ({where}), got {a.shape[1]}", field=name)
    return np.ascontiguousarray(a)


def _bad_value(a: np.ndarray, row: int, name: str) -> Exception:
    r = a[row]
    k = int(np.flatnonzero((r < 0) | (r > MAX_WH))[0])
    v = int(r[k])
    what = "negative" if v < 0 else f"larger than {MAX_WH}"
    return errors.InvalidInput(f"{name}[{row}, {k}] = {v} Wh is {what}", field=name, reason="out_of_range")


def bill_intervals(tariff: CompiledTariff, start: dt.date, end: dt.date, interval_minutes: int,
                   import_wh: np.ndarray, export_wh: np.ndarray | None = None, cache: bool = True) -> BillBatch:
    """Bill interval usage under ``tariff`` for ``[start, end)``, one bill per row.

    Parameters
    ----------
    tariff : CompiledTariff
    start, end : datetime.date
        Local dates in ``tariff.timezone``; ``end`` is exclusive.
    interval_minutes : int
        15, 30 or 60.
    import_wh, export_wh : ndarray of int32 or int64
        Wh per interval, shape ``(n_intervals,)`` or ``(n_bills, n_intervals)``, covering ``[start, end)``
        interval by interval in local time: exactly ``grid.timegrid.calendar(start, end, interval_minutes,
        tariff.timezone).n`` intervals (a day that enters daylight time has 23 hourly values, one that leaves it
        25). Read-only and non-contiguous arrays are accepted (non-contiguous ones are copied). ``export_wh``
        must have the shape of ``import_wh``; it is billed only under a net-metering tariff.
    cache : bool
        Keep the period's plan in the LRU (bill runs reuse it); ``False`` for one-off requests whose
        tariff and dates come from a caller (the rate check), which would only fill the cache.

    Returns
    -------
    BillBatch

    Raises
    ------
    InvalidInput
        Wrong dtype, shape or length (the message names the expected number of intervals), a negative or
        absurd (> 2**31 - 1) Wh value, a bad date or interval length.
    """
    if not isinstance(tariff, CompiledTariff):
        raise errors.InvalidInput(f"tariff must be a CompiledTariff, got {type(tariff).__name__}", field="tariff")
    start = _date(start, "start")
    end = _date(end, "end")
    if isinstance(interval_minutes, bool) or not isinstance(interval_minutes, (int, np.integer)):
        raise errors.InvalidInput(f"interval_minutes must be an integer, got {interval_minutes!r}",
                           field="interval_minutes")
    plan = (_plan if cache else _plan.__wrapped__)(tariff, start, end, int(interval_minutes))
    n = plan.calendar.n
    where = f"{start} to {end} every {interval_minutes} min in {tariff.timezone}"
    imp = _usage(import_wh, "import_wh", n, where)
    exp = None
    if export_wh is not None:
        exp = _usage(export_wh, "export_wh", n, where)
        if exp.shape != imp.shape:
            raise errors.InvalidInput(f"export_wh must have the shape of import_wh {imp.shape}, got {exp.shape}",
                               field="export_wh")
        if tariff.net_metering == "none":
            if exp.size and (exp.min() < 0 or exp.max() > MAX_WH):
                raise _bad_value(exp, int(np.flatnonzero(((exp < 0) | (exp > MAX_WH)).any(axis=1))[0]),
                                 "export_wh")
            exp = None  # checked, not billed
        elif exp.dtype != imp.dtype:
            imp, exp = imp.astype(np.int64), exp.astype(np.int64)
    if exp is None:
        exp = np.empty((0, n), dtype=imp.dtype)

    B = imp.shape[0]
    L = len(tariff.codes)
    SP = plan.options["n_segments"] * plan.options["n_periods"]
    QF = tariff.n_demand_periods + tariff.n_flat_periods
    quantity = np.zeros((B, L), dtype=np.int64)
    amount = np.zeros((B, L), dtype=np.int64)
    total = np.zeros(B, dtype=np.int64)
    slot_import = np.zeros((B, SP), dtype=np.int64)
    slot_export = np.zeros((B, SP), dtype=np.int64)
    peak_w = np.zeros((B, QF), dtype=np.int64)
    peak_at = np.full((B, QF), -1, dtype=np.int64)
    if B:
        where = status_where()
        status = _billing.bill_intervals(
            imp, exp, **plan.arrays,
            quantity=quantity, amount_cents=amount, total_cents=total,
            slot_import=slot_import, slot_export=slot_export, peak_w=peak_w, peak_at=peak_at, where=where,
            **plan.options,
        )
        raise_for_status(status, where, {Status.BAD_IMPORT: lambda row: _bad_value(imp, row, "import_wh"),
                                         Status.BAD_EXPORT: lambda row: _bad_value(exp, row, "export_wh")})
    detail = _Detail(tariff.id, start, end, int(interval_minutes), tariff.timezone, plan.segments,
                     tariff.n_periods, tariff.n_demand_periods, tariff.n_flat_periods, plan.calendar.utc_start,
                     slot_import, slot_export, peak_w, peak_at)
    return BillBatch(list(tariff.codes), list(tariff.units), quantity, amount, total, detail)
