"""Hypothesis strategies for billing: random URDB tariffs, bill periods and usage that covers them."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
from hypothesis import strategies as st

from grid import timegrid

TIMEZONES = ["America/Los_Angeles", "America/New_York", "UTC", "Asia/Kolkata"]
CODES = ["PPP", "DWR", "NDC", "CTC", "FRANCHISE", "STATE", "CITY", "UUT"]


def money(lo: int, hi: int) -> st.SearchStrategy:
    """Decimal text or Decimal of an exact micro-dollar amount in [lo, hi] micro-dollars."""
    return st.integers(lo, hi).flatmap(
        lambda m: st.sampled_from([str(Decimal(m).scaleb(-6).normalize()), Decimal(m).scaleb(-6)]))


def kwh(lo: int, hi: int) -> st.SearchStrategy:
    """A bound of a whole number of Wh, as decimal kWh."""
    return st.integers(lo, hi).map(lambda wh: str(Decimal(wh).scaleb(-3).normalize()))


@st.composite
def tier_bounds(draw, n_tiers: int, lo: int = 0, hi: int = 2_000_000) -> list[str | None]:
    """Cumulative, non-decreasing kWh bounds for ``n_tiers`` tiers; the last one open (or given, ignored)."""
    wh = sorted(draw(st.lists(st.integers(lo, hi), min_size=n_tiers - 1, max_size=n_tiers - 1)))
    out = [str(Decimal(w).scaleb(-3).normalize()) for w in wh]
    out.append(draw(st.one_of(st.none(), kwh(hi, 2 * hi + 1))))  # a max on the last tier is ignored
    return out


def _tier(draw, mx, unit, with_sell=True, kind="energy"):
    tier = {"rate": draw(money(0, 900_000 if kind == "energy" else 40_000_000))}
    if draw(st.booleans()):
        tier["adj"] = draw(money(-20_000, 50_000))
    if with_sell and draw(st.booleans()):
        tier["sell"] = draw(money(0, 200_000))
    if mx is not None:
        tier["max"] = mx
    if unit is not None:
        tier["unit"] = unit
    return tier


@st.composite
def schedule(draw, n_periods: int, season_of_month: list[int] | None = None,
             seasons: list[list[int]] | None = None) -> list[list[int]]:
    """12 x 24 period indices, built from a few day shapes per season so periods come in runs as in real
    tariffs; month m only uses the periods of its season ``seasons[season_of_month[m]]``."""
    if seasons is None:
        seasons = [list(range(n_periods))]
        season_of_month = [0] * 12
    shapes = []
    for periods_of_season in seasons:
        own = []
        for _ in range(draw(st.integers(1, 3))):
            cuts = sorted(draw(st.lists(st.integers(1, 23), max_size=3, unique=True)))
            periods = draw(st.lists(st.sampled_from(periods_of_season), min_size=len(cuts) + 1,
                                    max_size=len(cuts) + 1))
            row = []
            edges = [0, *cuts, 24]
            for j in range(len(edges) - 1):
                row += [periods[j]] * (edges[j + 1] - edges[j])
            own.append(row)
        shapes.append(own)
    return [list(draw(st.sampled_from(shapes[season_of_month[m]]))) for m in range(12)]


@st.composite
def urdb_tariffs(draw, *, scope=None, nem=None) -> dict:
    """A random valid URDB tariff using every feature contextgrid bills."""
    urdb: dict = {"label": "hyp", "name": "hypothesis tariff"}
    scope = scope or draw(st.sampled_from(["pooled", "period"]))
    n_periods = draw(st.integers(0, 4))
    if n_periods:
        seasons = season_of_month = None
        if scope == "pooled":
            # SAM's rule: periods a month can select share tier bounds. Seasons (e.g. summer / winter) each
            # have their own periods and bounds, as in PG&E's tiered TOU tariffs.
            n_seasons = draw(st.integers(1, min(2, n_periods)))
            season_of_period = [p % n_seasons for p in range(n_periods)]
            seasons = [[p for p in range(n_periods) if season_of_period[p] == k] for k in range(n_seasons)]
            season_of_month = draw(st.lists(st.integers(0, n_seasons - 1), min_size=12, max_size=12))
            structure = [None] * n_periods
            for members in seasons:
                n_tiers = draw(st.integers(1, 3))
                unit = draw(st.sampled_from([None, "kWh", "kWh daily"]))
                bounds = draw(tier_bounds(n_tiers, hi=30_000 if unit == "kWh daily" else 1_500_000))
                for p in members:
                    structure[p] = [_tier(draw, bounds[t], unit) for t in range(n_tiers)]
        else:
            structure = []
            for _ in range(n_periods):
                n_tiers = draw(st.integers(1, 3))
                unit = draw(st.sampled_from([None, "kWh", "kWh daily"]))
                bounds = draw(tier_bounds(n_tiers, hi=30_000 if unit == "kWh daily" else 1_000_000))
                structure.append([_tier(draw, bounds[t], unit) for t in range(n_tiers)])
        urdb["energyratestructure"] = structure
        urdb["energyweekdayschedule"] = draw(schedule(n_periods, season_of_month, seasons))
        urdb["energyweekendschedule"] = draw(schedule(n_periods, season_of_month, seasons))
    n_demand = draw(st.integers(0, 3))
    if n_demand:
        urdb["demandratestructure"] = [
            [_tier(draw, mx, None, False, "demand") for mx in draw(tier_bounds(draw(st.integers(1, 2)), hi=20_000))]
            for _ in range(n_demand)]
        urdb["demandweekdayschedule"] = draw(schedule(n_demand))
        urdb["demandweekendschedule"] = draw(schedule(n_demand))
    n_flat = draw(st.integers(0, 2))
    if n_flat:
        urdb["flatdemandstructure"] = [
            [_tier(draw, mx, None, False, "demand") for mx in draw(tier_bounds(draw(st.integers(1, 2)), hi=20_000))]
            for _ in range(n_flat)]
        urdb["flatdemandmonths"] = draw(st.lists(st.integers(0, n_flat - 1), min_size=12, max_size=12))
    if draw(st.booleans()):
        urdb["fixedchargefirstmeter"] = draw(money(0, 50_000_000))
        urdb["fixedchargeunits"] = draw(st.sampled_from(["$/month", "$/day", "$/year"]))
    if draw(st.booleans()):
        urdb["mincharge"] = draw(money(0, 80_000_000))
        urdb["minchargeunits"] = draw(st.sampled_from(["$/month", "$/day", "$/year"]))
    ext: dict = {"tier_scope": scope, "timezone": draw(st.sampled_from(TIMEZONES))}
    codes = draw(st.lists(st.sampled_from(CODES), unique=True, max_size=4))
    split = draw(st.integers(0, len(codes)))
    ext["riders"] = [{"code": c, "rate": draw(money(-5_000, 30_000))} for c in codes[:split]]
    ext["taxes"] = [{"code": c, "percent": draw(st.integers(0, 15_000_000).map(
        lambda m: str(Decimal(m).scaleb(-6).normalize())))} for c in codes[split:]]
    mode = nem or draw(st.sampled_from(["none", "net", "sell_rate"]))
    if mode == "sell_rate" and draw(st.booleans()):
        ext["net_metering"] = {"mode": "sell_rate", "sell_rate": draw(money(0, 150_000))}
    else:
        ext["net_metering"] = mode
    urdb["contextgrid"] = ext
    urdb["unknown_key_kept"] = {"anything": [1, 2]}
    return urdb


@st.composite
def bill_periods(draw, max_days: int = 45) -> tuple[dt.date, dt.date, int]:
    """(start, end, interval_minutes), often crossing a month boundary or a DST change."""
    start = draw(st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)))
    days = draw(st.integers(1, max_days))
    minutes = draw(st.sampled_from([60, 60, 30, 15]))
    if minutes == 15:
        days = min(days, 20)
    return start, start + dt.timedelta(days=days), minutes


@st.composite
def usage(draw, n_rows: int, n: int, *, big: bool = False) -> np.ndarray:
    """int32 or int64 Wh (n_rows, n): a daily shape times a level, with zeros and spikes."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = draw(st.sampled_from([np.int32, np.int64]))
    hi = draw(st.sampled_from([0, 3, 2_000, 50_000, 2**31 - 1 if big else 100_000]))
    a = rng.integers(0, hi + 1, size=(n_rows, n), dtype=np.int64)
    if draw(st.booleans()):
        a[:, rng.integers(0, n, size=max(1, n // 50))] = 0
    return a.astype(dtype)


@st.composite
def bill_cases(draw, **tariff_kw):
    """A tariff, a period, import and (maybe) export usage with 1-3 rows."""
    urdb = draw(urdb_tariffs(**tariff_kw))
    start, end, minutes = draw(bill_periods())
    tz = urdb["contextgrid"]["timezone"]
    n = timegrid.calendar(start, end, minutes, tz).n
    rows = draw(st.integers(1, 3))
    imp = draw(usage(rows, n, big=draw(st.booleans())))
    exp = draw(st.one_of(st.none(), usage(rows, n)))
    if exp is not None:
        exp = exp.astype(imp.dtype)
    if urdb["contextgrid"].get("holidays") is None and draw(st.booleans()):
        span = (end - start).days
        urdb["contextgrid"]["holidays"] = sorted({
            (start + dt.timedelta(days=draw(st.integers(0, span - 1)))).isoformat() for _ in range(3)})
    return urdb, start, end, minutes, imp, exp
