"""Changes to a load that a what-if tries: rooftop solar, load shifting, an electric vehicle.

All three act on the two registers a net meter records (import and export, integer Wh per interval) and are
applied in this order, each on the result of the one before:

1. **Shift** ``percent`` of on-peak import to off-peak hours *of the same local day* (the customer runs the
   dishwasher later; they do not use less). Per on-peak interval ``floor(import x percent / 100)`` Wh moves
   (``percent`` is exact to 0.01 %); a day's moved energy is spread evenly over that day's off-peak intervals,
   the remainder one Wh at a time from the first, so energy is conserved exactly. A day without off-peak
   intervals moves nothing. On- and off-peak come from the plan being priced (its most and least expensive
   energy periods by first-tier price, so every candidate plan is tried with the shift its own prices would
   reward; a plan with one period moves nothing), or from explicit ``from_hours`` / ``to_hours`` (local hours,
   the same for every plan).
2. **EV** charging: on each charging day (``all``, ``weekdays`` or ``weekends``) ``kwh_per_day`` starts at
   ``start_hour`` local time and runs at ``charger_kw`` (``charger_kw x minutes / 60`` whole Wh per interval,
   the last interval the remainder) in real time until delivered, past midnight and across a DST change if
   it must (a charge belongs to the evening it starts, so the first hours of a period hold the end of the
   previous evening's charge). EV energy first absorbs any export in its interval, the rest is import.
3. **Solar** of ``kw`` kW-dc with a generation profile (``grid.whatif.solar``): generation first offsets
   import in its interval, the rest is exported.

With no changes the load is returned unchanged (the same arrays), so the current plan's what-if bill equals
its real bill.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import numpy as np

from grid.errors import InvalidInput
from grid.timegrid import IntervalCalendar, calendar, zone
from grid.whatif import solar

MAX_SOLAR_KW = 10_000  # 10 MW-dc: beyond any rooftop
MAX_EV_KWH = 500
MAX_CHARGER_KW = 350
EV_DAYS = ("all", "weekdays", "weekends")


def _scaled(value, scale: int, field: str, lo: int, hi: int) -> int:
    """``value * scale`` rounded half-up to an integer within ``[lo, hi]`` (JSON numbers, exact decimals)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise InvalidInput(f"{field} must be a number, got {value!r}", field=field)
    try:
        d = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise InvalidInput(f"{field} must be a number, got {value!r}", field=field) from None
    if not d.is_finite():
        raise InvalidInput(f"{field} must be finite", field=field)
    v = int((d * scale).to_integral_value(rounding="ROUND_HALF_UP"))
    if not lo <= v <= hi:
        raise InvalidInput(f"{field} must be between {lo / scale:g} and {hi / scale:g}, got {value}", field=field,
                           reason="out_of_range")
    return v


def _hours(value, field: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{field} must be a non-empty list of hours 0-23", field=field)
    out = []
    for i, h in enumerate(value):
        if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23:
            raise InvalidInput(f"{field}[{i}] must be an hour 0-23, got {h!r}", field=f"{field}[{i}]")
        out.append(h)
    return tuple(sorted(set(out)))


def _only(body: dict, field: str, allowed: set[str]) -> None:
    if not isinstance(body, dict):
        raise InvalidInput(f"{field} must be an object", field=field)
    extra = sorted(set(body) - allowed)
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}", field=f"{field}.{extra[0]}")


@dataclass(frozen=True)
class LoadChanges:
    """Validated load changes; integers in exact units (milli-kW, basis points, Wh, W)."""

    solar_kw_milli: int = 0
    solar_table: tuple[tuple[float, ...], ...] | None = None  # 12 x 24 Wh per kW-dc
    shift_bp: int = 0  # share of on-peak import moved, in 1/100 %
    shift_from: tuple[int, ...] | None = None
    shift_to: tuple[int, ...] | None = None
    ev_wh_per_day: int = 0
    ev_charger_w: int = 7200
    ev_start_hour: int = 22
    ev_days: str = "all"

    @property
    def empty(self) -> bool:
        return not (self.solar_kw_milli or self.shift_bp or self.ev_wh_per_day)

    @property
    def shift_per_plan(self) -> bool:
        return self.shift_bp > 0 and self.shift_from is None

    @classmethod
    def parse(cls, body: dict | None, prefix: str = "changes") -> "LoadChanges":
        """Check a request's ``changes`` object; every error names its field (``changes.solar.kw``)."""
        if body is None:
            return cls()
        _only(body, prefix, {"solar", "shift", "ev"})
        kw = {}
        if body.get("solar") is not None:
            s, f = body["solar"], f"{prefix}.solar"
            _only(s, f, {"kw", "profile"})
            if "kw" not in s:
                raise InvalidInput(f"{f}.kw is required", field=f"{f}.kw")
            kw["solar_kw_milli"] = _scaled(s["kw"], 1000, f"{f}.kw", 0, MAX_SOLAR_KW * 1000)
            if s.get("profile") is not None:
                p = s["profile"]
                if not isinstance(p, list) or len(p) != 12:
                    raise InvalidInput(f"{f}.profile must be 12 months of 24 hourly Wh per kW", field=f"{f}.profile")
                rows = []
                for m, row in enumerate(p):
                    if not isinstance(row, list) or len(row) != 24:
                        raise InvalidInput(f"{f}.profile[{m}] must have 24 hours", field=f"{f}.profile[{m}]")
                    vals = []
                    for h, v in enumerate(row):
                        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1000:
                            raise InvalidInput(f"{f}.profile[{m}][{h}] must be 0-1000 Wh per kW",
                                               field=f"{f}.profile[{m}][{h}]")
                        vals.append(float(v))
                    rows.append(tuple(vals))
                kw["solar_table"] = tuple(rows)
        if body.get("shift") is not None:
            s, f = body["shift"], f"{prefix}.shift"
            _only(s, f, {"percent", "from_hours", "to_hours"})
            if "percent" not in s:
                raise InvalidInput(f"{f}.percent is required", field=f"{f}.percent")
            kw["shift_bp"] = _scaled(s["percent"], 100, f"{f}.percent", 0, 10_000)
            if ("from_hours" in s) != ("to_hours" in s):
                missing = "to_hours" if "from_hours" in s else "from_hours"
                raise InvalidInput(f"{f}.from_hours and {f}.to_hours go together", field=f"{f}.{missing}")
            if "from_hours" in s:
                kw["shift_from"] = _hours(s["from_hours"], f"{f}.from_hours")
                kw["shift_to"] = _hours(s["to_hours"], f"{f}.to_hours")
                if set(kw["shift_from"]) & set(kw["shift_to"]):
                    raise InvalidInput(f"{f}.to_hours overlaps from_hours", field=f"{f}.to_hours")
        if body.get("ev") is not None:
            s, f = body["ev"], f"{prefix}.ev"
            _only(s, f, {"kwh_per_day", "charger_kw", "start_hour", "days"})
            if "kwh_per_day" not in s:
                raise InvalidInput(f"{f}.kwh_per_day is required", field=f"{f}.kwh_per_day")
            kw["ev_wh_per_day"] = _scaled(s["kwh_per_day"], 1000, f"{f}.kwh_per_day", 0, MAX_EV_KWH * 1000)
            if "charger_kw" in s:
                kw["ev_charger_w"] = _scaled(s["charger_kw"], 1000, f"{f}.charger_kw", 100, MAX_CHARGER_KW * 1000)
            if "start_hour" in s:
                h = s["start_hour"]
                if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= 23:
                    raise InvalidInput(f"{f}.start_hour must be an hour 0-23", field=f"{f}.start_hour")
                kw["ev_start_hour"] = h
            if "days" in s:
                if s["days"] not in EV_DAYS:
                    raise InvalidInput(f"{f}.days must be one of {EV_DAYS}", field=f"{f}.days")
                kw["ev_days"] = s["days"]
            charger = kw.get("ev_charger_w", cls.ev_charger_w)
            if kw["ev_wh_per_day"] > charger * 24:
                raise InvalidInput(f"{f}.kwh_per_day cannot be delivered in 24 h at {charger / 1000:g} kW",
                                   field=f"{f}.kwh_per_day")
        return cls(**kw)

    def describe(self) -> dict:
        """The changes as applied, in request units (for the response)."""
        out: dict = {}
        if self.solar_kw_milli:
            out["solar"] = {"kw": self.solar_kw_milli / 1000,
                            "profile": "table" if self.solar_table is not None else "clear-sky model"}
        if self.shift_bp:
            out["shift"] = {"percent": self.shift_bp / 100,
                            "hours": "plan schedule" if self.shift_from is None
                            else {"from_hours": list(self.shift_from), "to_hours": list(self.shift_to)}}
        if self.ev_wh_per_day:
            out["ev"] = {"kwh_per_day": self.ev_wh_per_day / 1000, "charger_kw": self.ev_charger_w / 1000,
                         "start_hour": self.ev_start_hour, "days": self.ev_days}
        return out


# -- the three changes ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ShiftPlan:
    """Where a shift moves energy on one calendar: on-peak intervals and each day's off-peak intervals."""

    on: np.ndarray  # bool (n,): on-peak intervals of days that have off-peak intervals
    day: np.ndarray  # int64 (n,) local day of each interval
    off: np.ndarray  # int64 indices of off-peak intervals
    off_day: np.ndarray  # int64 day of each off-peak interval
    off_rank: np.ndarray  # int64 position of each off-peak interval within its day
    per_day: np.ndarray  # int64 (days,) off-peak intervals per day
    days: int

    @property
    def moves(self) -> bool:
        return bool(self.on.any())


def _shift_plan(cal: IntervalCalendar, on: np.ndarray, off: np.ndarray) -> ShiftPlan:
    day = cal.day.astype(np.int64)
    days = int(day[-1]) + 1 if cal.n else 0
    per_day = np.bincount(day[off], minlength=days).astype(np.int64)
    idx = np.flatnonzero(off)
    d = day[idx]
    rank = np.arange(idx.size) - np.searchsorted(d, d, side="left")
    return ShiftPlan(on & (per_day[day] > 0), day, idx, d, rank, per_day, days)


def peak_masks(tariff, cal: IntervalCalendar) -> ShiftPlan:
    """The shift plan of ``tariff`` on ``cal``: on-peak = its dearest energy period, off-peak = its cheapest.

    Prices are first-tier ``rate + adj``; periods are looked up per interval as the bill kernel does (local
    month, hour, weekday/weekend/holiday). Equal prices everywhere (or no energy charge): nothing is on-peak.
    """
    return _peak_masks(tariff, cal.start, cal.end, cal.interval_minutes, cal.timezone)


@lru_cache(maxsize=1024)
def _peak_masks(tariff, start, end, interval_minutes: int, tz: str) -> ShiftPlan:
    cal = calendar(start, end, interval_minutes, tz)
    none = np.zeros(cal.n, dtype=bool)
    if tariff.n_periods < 2:
        return _shift_plan(cal, none, none)
    weekend = cal.weekday >= 5
    if tariff.holidays:
        weekend = weekend | np.isin(cal.date_ordinal, np.fromiter(tariff.holidays, dtype=np.int64))
    m = cal.month.astype(np.intp) - 1
    h = cal.hour.astype(np.intp)
    period = np.where(weekend, tariff.energy_weekend[m, h], tariff.energy_weekday[m, h])
    price = tariff.energy_price[:, 0][period]
    hi, lo = price.max(), price.min()
    if hi == lo:
        return _shift_plan(cal, none, none)
    return _shift_plan(cal, price == hi, price == lo)


@lru_cache(maxsize=1024)
def _hour_masks(start, end, interval_minutes: int, tz: str, from_hours, to_hours) -> ShiftPlan:
    cal = calendar(start, end, interval_minutes, tz)
    return _shift_plan(cal, np.isin(cal.hour, from_hours), np.isin(cal.hour, to_hours))


def hour_masks(cal: IntervalCalendar, from_hours, to_hours) -> ShiftPlan:
    return _hour_masks(cal.start, cal.end, cal.interval_minutes, cal.timezone, tuple(from_hours), tuple(to_hours))


def shift(imp: np.ndarray, plan: ShiftPlan, bp: int) -> np.ndarray:
    """``imp`` (int64) with ``bp`` / 10000 of each on-peak interval moved to the same day's off-peak intervals."""
    if bp == 0 or not plan.moves:
        return imp
    moved = np.where(plan.on, imp * bp // 10_000, 0)
    # per-day sums stay below 2**53 Wh, so float64 bincount weights add them exactly
    day_moved = np.bincount(plan.day, weights=moved, minlength=plan.days).astype(np.int64)
    out = imp - moved
    q, r = np.divmod(day_moved[plan.off_day], plan.per_day[plan.off_day])
    out[plan.off] += q + (plan.off_rank < r)
    return out


@lru_cache(maxsize=512)
def _ev(start, end, interval_minutes: int, tz: str, wh_per_day: int, charger_w: int, start_hour: int,
        days: str) -> np.ndarray:
    cal = calendar(start, end, interval_minutes, tz)
    step = interval_minutes * 60
    slot_wh = charger_w * interval_minutes // 60
    full, rest = divmod(wh_per_day, slot_wh)
    span = 24 * 60 // interval_minutes + 2  # a charge lasts at most 24 h (checked); +2 covers a DST night
    template = np.zeros(span, dtype=np.int64)  # Wh per interval from the start of a charge, in real time
    template[:full] = slot_wh
    if full < span:
        template[full] = rest
    # when each day's charge starts (day -1: the evening before the period, whose charge may run into it)
    z = zone(tz)
    n_days = cal.days
    begins = np.empty(n_days + 1, dtype=np.int64)
    charging = np.empty(n_days + 1, dtype=bool)
    for k in range(-1, n_days):
        d = start + dt.timedelta(days=k)
        begins[k + 1] = int(dt.datetime(d.year, d.month, d.day, start_hour, tzinfo=z).timestamp())
        wd = d.weekday()
        charging[k + 1] = days == "all" or (days == "weekdays") == (wd < 5)
    out = np.zeros(cal.n, dtype=np.int64)
    for back in (0, 1):  # today's charge, then the one that began the evening before
        k = cal.day.astype(np.int64) + 1 - back
        off = cal.utc_start - begins[k]
        ok = charging[k] & (off >= 0) & (off < span * step)
        out += np.where(ok, template[np.clip(off // step, 0, span - 1)], 0)
    out.setflags(write=False)
    return out


def ev_profile(cal: IntervalCalendar, ch: LoadChanges) -> np.ndarray:
    """Wh the EV draws in each interval of ``cal`` (int64, read-only)."""
    return _ev(cal.start, cal.end, cal.interval_minutes, cal.timezone, ch.ev_wh_per_day, ch.ev_charger_w,
               ch.ev_start_hour, ch.ev_days)


@lru_cache(maxsize=512)
def _solar(start, end, interval_minutes: int, tz: str, kw_milli: int, table) -> np.ndarray:
    cal = calendar(start, end, interval_minutes, tz)
    per_kw = solar.model_profile(cal) if table is None else solar.table_profile(cal, np.array(table))
    out = solar.generation_wh(kw_milli, per_kw)
    out.setflags(write=False)
    return out


def solar_profile(cal: IntervalCalendar, ch: LoadChanges) -> np.ndarray:
    """Wh the added panels generate in each interval of ``cal`` (int64, read-only)."""
    return _solar(cal.start, cal.end, cal.interval_minutes, cal.timezone, ch.solar_kw_milli, ch.solar_table)


def apply(imp: np.ndarray, exp: np.ndarray, cal: IntervalCalendar, ch: LoadChanges,
          plan: ShiftPlan | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(import, export) after ``ch`` (see the module docstring); ``plan`` says where a plan's shift moves energy."""
    if ch.empty:
        return imp, exp
    imp = imp.astype(np.int64, copy=True)
    exp = exp.astype(np.int64, copy=True)
    if ch.shift_bp:
        if ch.shift_from is not None:
            plan = hour_masks(cal, ch.shift_from, ch.shift_to)
        if plan is not None:
            imp = shift(imp, plan, ch.shift_bp)
    if ch.ev_wh_per_day:
        ev = ev_profile(cal, ch)
        take = np.minimum(exp, ev)
        exp -= take
        imp += ev - take
    if ch.solar_kw_milli:
        gen = solar_profile(cal, ch)
        take = np.minimum(imp, gen)
        imp -= take
        exp += gen - take
    return imp, exp
