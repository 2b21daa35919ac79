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


# legacy bills of SOLAR: (bill id, period start, period end, lines); total = sum of lines
BILLS = [
    ("B902-2026-09", "2026-09-01", "2026-10-01", [("ENERGY_P1_T0", 210_000, 9_480), ("ENERGY_P1_T1", 40_000, 2_390),
                                                  ("FIXED", 30, 1_175)]),
    ("B902-2026-10", "2026-10-01", "2026-11-01", [("ENERGY_P3_T0", 180_000, 7_655), ("ENERGY_P2_T0", 120_000, 3_570),
                                                  ("FIXED", 31, 1_214)]),
]
PAYMENTS = [("2026-10-02", 10_000), ("2026-11-03", 12_000)]  # each bill paid in part
SEPTEMBER_DUE_CENTS = 9_480 + 2_390 + 1_175 - 10_000  # due between 2026-10-02 and 2026-11-01


def legacy_bills(grid, cid: str, account_id: str, bills=BILLS, suffix: str = "") -> None:
    """Put ``bills`` in the grid the way the billing system's import does (an ``import_rows`` op); bill ids get
    ``suffix`` (they are unique per shard)."""
    import json

    import ray

    cols = {"bill.bill_id": [], "bill.account_id": [], "bill.period_start": [], "bill.period_end": [],
            "bill.total_cents": [], "bill.lines": []}
    for bid, start, end, lines in bills:
        for k, v in (("bill_id", bid + suffix), ("account_id", account_id), ("period_start", start), ("period_end", end),
                     ("total_cents", sum(c for _, _, c in lines)),
                     ("lines", json.dumps([{"code": c, "quantity": q, "unit": "day" if c == "FIXED" else "Wh",
                                            "amount_cents": a} for c, q, a in lines]))):
            cols[f"bill.{k}"].append(v)
    n = len(bills)
    op = {"kind": "import_rows", "customer_id": None, "write_id": f"portal-seed-bills-{cid}", "at": None,
          "body": {"source": "portal-seed", "position": {"stream": f"bills-{cid}", "offset": n}, "action": "bill",
                   "offsets": list(range(1, n + 1)), "customer_id": [cid] * n, "digest": [""] * n, "columns": cols}}
    del op["at"]  # the shard stamps it
    ray.get(grid.owner(cid).write.remote(op), timeout=60)


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
        if solar:  # each bill paid only in part
            body["payments"] = [{"payment_id": f"P{i}-{n}", "account_id": f"A{i:08d}", "date": d, "amount_cents": c,
                                 "method": "card"} for n, (d, c) in enumerate(PAYMENTS)]
        grid.replace(cid, body)
        if solar:
            legacy_bills(grid, cid, f"A{i:08d}")
        for k, month in enumerate(months_between(FIRST_MONTH, MONTHS)):
            cal, imp, exp = synthetic_month(month, solar, seed=i * 100 + k)
            grid.append_usage(cid, readings(f"S{i:08d}", cal, imp, exp))
    grid.portal_seeded = True
    return [PLAIN, SOLAR]


NEWCOMER = "C0000903"  # residential on res-tou whose meter has reported only since July 2026
NEWCOMER_MONTHS = ["2026-07", "2026-08", "2026-09"]
NO_USAGE = "C0000904"  # residential on res-tou, no reading yet


def seed_newcomers(grid) -> list[str]:
    """Two customers with little or no usage history (for "only months with data"), once per grid."""
    if getattr(grid, "newcomers_seeded", False):
        return [NEWCOMER, NO_USAGE]
    for cid in (NEWCOMER, NO_USAGE):
        _, body = context(int(cid[1:]))
        grid.replace(cid, body)
    i = int(NEWCOMER[1:])
    for k, month in enumerate(NEWCOMER_MONTHS):
        cal, imp, exp = synthetic_month(month, False, seed=i * 100 + k)
        grid.append_usage(NEWCOMER, readings(f"S{i:08d}", cal, imp, exp))
    grid.newcomers_seeded = True
    return [NEWCOMER, NO_USAGE]
