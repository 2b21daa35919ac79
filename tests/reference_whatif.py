"""Plain-Python references for the what-if load changes (``grid.whatif.changes``): loops over intervals,
written from the module's docstring, never from its numpy."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def shift(imp: list[int], day: list[int], on: list[bool], off: list[bool], bp: int) -> list[int]:
    """Move floor(import x bp / 10000) of each on-peak interval to the same day's off-peak intervals, evenly,
    the remainder one Wh at a time from the first off-peak interval; days without off-peak move nothing."""
    out = list(imp)
    days = sorted(set(day))
    for d in days:
        idx = [i for i in range(len(imp)) if day[i] == d]
        offs = [i for i in idx if off[i]]
        if not offs:
            continue
        moved = 0
        for i in idx:
            if on[i]:
                m = imp[i] * bp // 10_000
                out[i] -= m
                moved += m
        q, r = divmod(moved, len(offs))
        for k, i in enumerate(offs):
            out[i] += q + (1 if k < r else 0)
    return out


def ev(utc_start: list[int], interval_minutes: int, start: dt.date, days: int, tz: str, wh_per_day: int,
       charger_w: int, start_hour: int, which: str) -> list[int]:
    """Each charging day's energy from ``start_hour`` local time, interval after interval in real time."""
    step = interval_minutes * 60
    per = charger_w * interval_minutes // 60
    out = [0] * len(utc_start)
    index = {t: i for i, t in enumerate(utc_start)}
    for k in range(-1, days):
        d = start + dt.timedelta(days=k)
        if which == "weekdays" and d.weekday() >= 5 or which == "weekends" and d.weekday() < 5:
            continue
        t = int(dt.datetime(d.year, d.month, d.day, start_hour, tzinfo=ZoneInfo(tz)).timestamp())
        left = wh_per_day
        while left > 0:
            e = min(per, left)
            if t in index:
                out[index[t]] += e
            left -= e
            t += step
    return out


def apply(imp: list[int], exp: list[int], shifted: list[int] | None, ev_wh: list[int] | None,
          gen: list[int] | None) -> tuple[list[int], list[int]]:
    """Shift (given), then EV absorbing export first, then solar offsetting import first."""
    imp = list(shifted if shifted is not None else imp)
    exp = list(exp)
    for i in range(len(imp)):
        if ev_wh is not None:
            take = min(exp[i], ev_wh[i])
            exp[i] -= take
            imp[i] += ev_wh[i] - take
        if gen is not None:
            take = min(imp[i], gen[i])
            imp[i] -= take
            exp[i] += gen[i] - take
    return imp, exp
