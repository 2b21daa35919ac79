"""Monthly budget forecast: expected bill per month with an uncertainty band, and levelized amounts.

Method (per active account, under its current rate plan, then summed per customer):

1. **Source month.** For each month ahead ``T``, the same calendar month one year earlier (``T - 12``), else two
   years earlier; a customer with less history falls back to the most recent month with usage (no seasonal
   shape then: the band cannot know what summer does to a customer first seen in spring).
2. **Level.** With 15 months or more of history the load is scaled by ``r`` = usage of the last 3 complete
   months / usage of the same 3 months a year before (clipped to [0.67, 1.5]), so a household that grew or an
   efficiency retrofit carries forward; otherwise ``r = 1``.
3. **Simulation.** ``SIMULATIONS`` synthetic months are built for ``T``'s real calendar (its weekdays, DST,
   holidays on the tariff's schedule): every day of ``T`` takes a whole day, drawn at random, of the same day
   type (weekday/weekend) from the source month, hour by hour, so peaks and the demand they set stay real.
   Each simulated month's import is scaled by ``r x exp(sigma z - sigma^2/2)``, ``z`` standard normal,
   ``sigma = LEVEL_SIGMA`` (5.5 %): the year-to-year swing of a month (weather, occupancy) that resampling the
   days of one month cannot see. Export (solar) is resampled, not scaled. Sigma is calibrated so that the band
   holds about 80 % of actual bills in the backtest on the generated base (``bench/bench_whatif.py``: 48 % with
   no level term, 76 % at 5 %, 85 % at 7 %, 93 % at 10 %); a utility recalibrates it on its own history, since
   the generated base's weather is the generator's.
4. **Bills.** All simulated months go through the bill kernel in one call (one row each): tiers, demand,
   minimums and taxes act on each simulation as they would on a real month. The forecast is the median bill,
   the band the 10th and 90th percentiles (order statistics, exact cents). Seeds come from the customer,
   account and month, so the same request gives the same answer.

**The open month** (today's month, for an account billed by calendar month) is not forecast from history: it
is the bill card's projection (``grid.whatif.current.open_period_bill``: readings so far, the recent typical
day after), so the portal never shows two numbers for the same month; its band is the simulated band widened
to hold it, and its ``source_month`` says ``projection``.

**Budget billing.** ``levelized_cents`` = the forecast months' total spread evenly (rounded half-up), with the
running balance a budget-billing customer would carry month by month (positive: paid ahead); and
``history_average_cents``, the classic budget amount: the average of the last (up to) 12 months' bills under the
current plan on measured usage.

The backtest error on a generated base (MAPE of the monthly forecast, and how often the actual bill falls in
the band) is printed by ``bench/bench_whatif.py``.
"""
from __future__ import annotations

import datetime as dt
import zlib

import numpy as np

from grid.errors import InvalidInput, NotFound
from grid.timegrid import calendar, month_bounds
from grid.whatif.loads import account_interval, account_load, active_accounts, day_slots
from grid.whatif.current import open_period_bill
from grid.whatif.periods import as_date, history_months, next_months, shift_month, today_in
from grid.whatif.plans import PlanCatalogue, current_plan
from kernels.billing import bill_intervals, round_half_up_div

SIMULATIONS = 64
LEVEL_SIGMA = 0.055  # calibrated: see the module docstring
BAND = (10, 90)
HISTORY = 24  # months looked back for sources
MAX_MONTHS = 24
LEVEL_CLIP = (0.67, 1.5)


def _day_matrix(series: np.ndarray, cal) -> np.ndarray:
    """(days, slots) Wh of each local day by slot; a DST day's repeated hour keeps its first pass, the missing
    hour repeats the hour before."""
    _, slot = day_slots(cal)
    slots = 24 * 60 // cal.interval_minutes
    d = np.full((cal.days, slots), -1, dtype=np.int64)
    d[cal.day[::-1], slot[::-1]] = series[::-1]
    missing = d < 0
    if missing.any():
        idx = np.where(~missing, np.arange(slots)[None, :], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        d = np.take_along_axis(d, idx, axis=1)
    return d


def _day_types(cal) -> np.ndarray:
    first = np.searchsorted(cal.day, np.arange(cal.days))
    return (cal.weekday[first] >= 5).astype(np.int64)


def _percentile(sorted_vals: np.ndarray, p: int) -> int:
    return int(sorted_vals[round_half_up_div((len(sorted_vals) - 1) * p, 100)])


def _simulate(tariff, target: str, src_load, level: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bill totals (cents) and import (Wh) of ``n`` simulated months ``target`` built from ``src_load``."""
    t0, t1 = month_bounds(target)
    iv = src_load.interval_minutes
    cal = calendar(t0, t1, iv, src_load.calendar.timezone)
    src_imp = _day_matrix(src_load.import_wh, src_load.calendar)
    src_exp = _day_matrix(src_load.export_wh, src_load.calendar)
    src_type = _day_types(src_load.calendar)
    rng = np.random.default_rng(seed)
    tgt_type = _day_types(cal)
    choice = np.empty((n, cal.days), dtype=np.int64)
    for t in (0, 1):
        pool = np.flatnonzero(src_type == t)
        if pool.size == 0:
            pool = np.arange(src_type.size)
        cols = np.flatnonzero(tgt_type == t)
        choice[:, cols] = pool[rng.integers(0, pool.size, size=(n, cols.size))]
    _, slot = day_slots(cal)
    days = choice[:, cal.day]
    factor = level * np.exp(LEVEL_SIGMA * rng.standard_normal(n) - LEVEL_SIGMA ** 2 / 2)
    imp = np.floor(src_imp[days, slot[None, :]] * factor[:, None] + 0.5).astype(np.int64)
    exp = np.ascontiguousarray(src_exp[days, slot[None, :]])
    batch = bill_intervals(tariff, t0, t1, iv, imp, exp)
    return batch.total_cents.copy(), imp.sum(axis=1)


def forecast(shard, cid: str, months: int = 12, catalogue: PlanCatalogue | None = None,
             today: dt.date | str | None = None, simulations: int = SIMULATIONS) -> dict:
    """Forecast the next ``months`` monthly bills of customer ``cid``, starting with today's month.

    Parameters
    ----------
    shard : grid.shard.Shard
    cid : str
    months : int
        1 to 24.
    catalogue : PlanCatalogue, optional
    today : date or YYYY-MM-DD, optional
        History is the complete months before today's month.
    simulations : int
        Simulated months per forecast month (the band's resolution).

    Returns
    -------
    dict
        ``{"customer_id", "as_of", "method", "band", "history_months", "total_cents", "levelized_cents",
        "history_average_cents", "items": [{"month", "forecast_cents", "low_cents", "high_cents",
        "import_wh", "source_month", "levelized_cents", "balance_cents"}]}``. Money in integer cents.
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= MAX_MONTHS:
        raise InvalidInput(f"months must be an integer 1-{MAX_MONTHS}, got {months!r}", field="months")
    if isinstance(simulations, bool) or not isinstance(simulations, int) or not 1 <= simulations <= 10_000:
        raise InvalidInput(f"simulations must be 1-10000, got {simulations!r}", field="simulations")
    catalogue = catalogue or PlanCatalogue()
    rec = shard.record(cid)
    today = as_date(today) if today is not None else today_in(shard.timezone)
    targets = next_months(today, months)
    hist = history_months(today, HISTORY)
    totals = np.zeros((months, simulations), dtype=np.int64)
    energy = np.zeros((months, simulations), dtype=np.int64)
    sources: list[set] = [set() for _ in targets]
    history_bills: list[int] = [0] * 12
    history_seen = [False] * 12
    history_count = 0
    projected: dict[int, dict] = {}  # account index -> its open-month projection (grid.whatif.current)
    for i, account in enumerate(active_accounts(rec)):
        plan = current_plan(catalogue, account)
        if plan is None:
            raise NotFound(f"rate plan {account['rate_plan_id']!r} of account {account['account_id']} is not in "
                           f"the catalogue", field=f"accounts[{i}].rate_plan_id")
        loads = {m: account_load(shard, account, *month_bounds(m)) for m in hist}
        used = {m: int(ld.import_wh.sum()) for m, ld in loads.items()}
        available = [m for m in hist if used[m] > 0 or loads[m].export_wh.any()]
        history_count = max(history_count, len(available))
        level = 1.0
        recent = hist[-3:]
        before = [shift_month(m, -12) for m in recent]
        if all(m in available for m in recent + before) and sum(used[m] for m in before) > 0:
            level = float(np.clip(sum(used[m] for m in recent) / sum(used[m] for m in before), *LEVEL_CLIP))
        for k, m in enumerate(hist[-12:]):  # the last 12 months' bills, for the classic budget amount
            if m in available:
                history_seen[k] = True
                ld = loads[m]
                history_bills[k] += int(bill_intervals(plan.tariff, ld.start, ld.end, ld.interval_minutes,
                                                       ld.import_wh, ld.export_wh).total_cents[0])
        # the open month is the bill card's projection (one projection, grid.whatif.current), when the account's
        # open period is that calendar month (cycle day 1); the simulations below still give its band
        opened = open_period_bill(shard, account, plan, today)
        if (opened["period_start"], opened["period_end"]) == tuple(d.isoformat() for d in month_bounds(targets[0])):
            projected[i] = opened["projected"]
        for j, target in enumerate(targets):
            src = next((s for s in (shift_month(target, -12), shift_month(target, -24)) if s in available), None)
            if src is None and available:
                src = available[-1]
            if src is None:  # no history at all: fixed charges on zero usage
                t0, t1 = month_bounds(target)
                iv = account_interval(account)
                n = calendar(t0, t1, iv, shard.timezone).n
                z = np.zeros(n, np.int64)
                totals[j] += int(bill_intervals(plan.tariff, t0, t1, iv, z, z).total_cents[0])
                continue
            sources[j].add(src)
            seed = zlib.crc32(f"{cid}|{account['account_id']}|{target}".encode())
            t, e = _simulate(plan.tariff, target, loads[src], level, simulations, seed)
            totals[j] += t
            energy[j] += e
    items = []
    for j, target in enumerate(targets):
        order = np.argsort(totals[j], kind="stable")
        s, e = totals[j][order], energy[j][order]
        items.append({"month": target, "forecast_cents": _percentile(s, 50), "low_cents": _percentile(s, BAND[0]),
                      "high_cents": _percentile(s, BAND[1]), "import_wh": _percentile(e, 50),
                      "source_month": ",".join(sorted(sources[j])) or None})
    if projected and len(projected) == len(active_accounts(rec)):
        # the open month: the bill card's number, inside the simulated band (widened to hold it)
        first = items[0]
        first["forecast_cents"] = sum(p["total_cents"] for p in projected.values())
        first["import_wh"] = sum(p["import_wh"] for p in projected.values())
        first["low_cents"] = min(first["low_cents"], first["forecast_cents"])
        first["high_cents"] = max(first["high_cents"], first["forecast_cents"])
        first["source_month"] = "projection"
    total = sum(x["forecast_cents"] for x in items)
    level_cents = round_half_up_div(total, months)
    balance = 0
    for x in items:
        balance += level_cents - x["forecast_cents"]
        x["levelized_cents"] = level_cents
        x["balance_cents"] = balance
    billed = [b for b, seen in zip(history_bills, history_seen) if seen]
    return {"customer_id": cid, "as_of": today.isoformat(),
            "method": "seasonal day-resampling simulation billed by the bill kernel; median and "
                      f"{BAND[0]}-{BAND[1]} percentile band (see grid.whatif.forecast)",
            "band": {"low_percentile": BAND[0], "high_percentile": BAND[1], "simulations": simulations},
            "history_months": history_count, "total_cents": total, "levelized_cents": level_cents,
            "history_average_cents": round_half_up_div(sum(billed), len(billed)) if billed else None,
            "items": items}
