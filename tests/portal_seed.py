"""Customers with two years of hourly usage for the portal and what-if tests (written through the grid's
ordinary write path, so they are live, logged data like any other)."""
from __future__ import annotations

import datetime as dt

import numpy as np

from factories import context
from grid.timegrid import DEFAULT_TIMEZONE, calendar, month_bounds, months_between

FIRST_MONTH = "2024-11"
MONTHS = 24
AS_OF = "2026-11-05"  # the open month is 2026-11; history 2024-11 .. 2026-10
PLAIN = "C0000901"  # residential on res-tou, no solar
SOLAR = "C0000902"  # residential on res-tou with 5 kW of rooftop solar, enrolled in GREEN_POWER


def synthetic_month(month: str, solar: bool, seed: int, tz: str = DEFAULT_TIMEZONE):
    """(import, export) int Wh of one month: an evening-peaked home, hotter summers, noon solar if any."""
    start, end = month_bounds(month)
    cal = calendar(start, end, 60, tz)
    rng = np.random.default_rng(seed)
    hour = cal.hour.astype(np.float64)
    summer = ((cal.month >= 6) & (cal.month <= 9)).astype(np.float64)
    load = 350 + 700 * np.exp(-0.5 * ((hour - 19) / 2.2) ** 2) + 450 * summer * (hour >= 13) * (hour <= 21)
    load = rng.poisson(load).astype(np.int64)
    if not solar:
        return cal, load, np.zeros(cal.n, np.int64)
    gen = np.maximum(0, 5 * 700 * np.sin(np.pi * (hour - 6) / 13)) * ((hour >= 6) & (hour <= 19))
    gen = np.rint(gen * (0.8 + 0.4 * summer)).astype(np.int64)
    net = load - gen
    return cal, np.maximum(net, 0), np.maximum(-net, 0)


def readings(sp: str, cal, imp, exp) -> list[dict]:
    out = []
    for t, i, e in zip(cal.utc_start.tolist(), imp.tolist(), exp.tolist()):
        ts = dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat().replace("+00:00", "Z")
        r = {"service_point_id": sp, "start": ts, "import_wh": int(i)}
        if e:
            r["export_wh"] = int(e)
        out.append(r)
    return out


def seed(grid) -> list[str]:
    """Create the two portal customers with their usage once per grid; returns their ids."""
    if getattr(grid, "portal_seeded", False):
        return [PLAIN, SOLAR]
    for cid, solar in ((PLAIN, False), (SOLAR, True)):
        i = int(cid[1:])
        _, body = context(i, solar=solar)
        if solar:
            body["attributes"]["solar_kw_dc"] = 5.0
            body["accounts"][0]["programs"] = [{"code": "GREEN_POWER", "enrolled": "2024-01-01"}]
        grid.replace(cid, body)
        for k, month in enumerate(months_between(FIRST_MONTH, MONTHS)):
            cal, imp, exp = synthetic_month(month, solar, seed=i * 100 + k)
            grid.append_usage(cid, readings(f"S{i:08d}", cal, imp, exp))
    grid.portal_seeded = True
    return [PLAIN, SOLAR]
