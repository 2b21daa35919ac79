"""Write ``wholesale_hourly.csv``: a realistic, deterministic hourly wholesale price curve for 2025-11..2026-10.

Shape of a Western (CAISO-like) day-ahead price in $/MWh, local time America/Los_Angeles:
- a monthly level following gas prices: high in winter, low in spring (hydro and solar), rising in summer;
- the "duck curve": a midday dip as solar floods the grid (deepest in spring, when prices go negative), a steep
  evening ramp to the day's peak as the sun sets, a shallow night trough and, in winter, a morning bump;
- weekends and holidays a little lower; day-to-day and hour-to-hour noise;
- a handful of late-summer heat-wave evenings with scarcity prices of several hundred dollars.

Only IEEE-exact arithmetic (+ - * /) on uniform draws from numpy's PCG64 is used (no exp/log, whose last bit
may differ between CPUs), so the file is the same on every machine: ``tests/test_rules_profitability.py``
regenerates it and compares. Run: ``.venv/bin/python rules/prices/make_wholesale_curve.py``.
"""
from __future__ import annotations

import datetime as dt
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

TIMEZONE = "America/Los_Angeles"
FIRST_MONTH = (2025, 11)
MONTHS = 12
SEED = 20251101
OUT = Path(__file__).with_name("wholesale_hourly.csv")

# $/MWh level by calendar month (gas-driven), depth of the solar dip and height of the evening peak.
LEVEL = {1: 64.0, 2: 55.0, 3: 39.0, 4: 31.0, 5: 29.0, 6: 35.0, 7: 50.0, 8: 58.0, 9: 55.0, 10: 46.0, 11: 49.0,
         12: 61.0}
SOLAR_DIP = {1: 0.35, 2: 0.55, 3: 0.95, 4: 1.25, 5: 1.2, 6: 0.9, 7: 0.6, 8: 0.55, 9: 0.6, 10: 0.55, 11: 0.4,
             12: 0.3}
EVENING = {1: 0.55, 2: 0.55, 3: 0.6, 4: 0.7, 5: 0.8, 6: 0.95, 7: 1.15, 8: 1.3, 9: 1.2, 10: 0.8, 11: 0.6,
           12: 0.6}
HOLIDAYS = {dt.date(2025, 11, 27), dt.date(2025, 12, 25), dt.date(2026, 1, 1), dt.date(2026, 1, 19),
            dt.date(2026, 2, 16), dt.date(2026, 5, 25), dt.date(2026, 7, 3), dt.date(2026, 9, 7)}


def _bell(x: float, centre: float, width: float) -> float:
    """A smooth bump of height 1 (Cauchy shape: rational arithmetic only)."""
    d = (x - centre) / width
    return 1.0 / (1.0 + d * d)


def _noise(rng: np.random.Generator) -> float:
    """Roughly standard normal from four uniforms (Irwin-Hall, variance 1/3 each: scaled to 1)."""
    return (float(rng.random()) + float(rng.random()) + float(rng.random()) + float(rng.random()) - 2.0) * 1.7320508


def curve() -> list[tuple[str, str, str]]:
    """Rows (hour_start_utc, hour_start_local, price_usd_per_mwh) for every hour of the window."""
    tz = ZoneInfo(TIMEZONE)
    y, m = FIRST_MONTH
    start = dt.datetime(y, m, 1, tzinfo=tz)
    end_m = m + MONTHS
    end = dt.datetime(y + (end_m - 1) // 12, (end_m - 1) % 12 + 1, 1, tzinfo=tz)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    rng = np.random.default_rng(SEED)
    n_days = (end.date() - start.date()).days
    day_factor = []
    level = 0.0
    for _ in range(n_days):  # AR(1) day-to-day swings of about +-10%
        level = 0.7 * level + 0.07 * _noise(rng)
        day_factor.append(1.0 + level)
    heat_days = {start.date() + dt.timedelta(days=int(d)) for d in rng.integers(0, n_days, 60)}
    heat_days = {d for d in heat_days if d.month in (7, 8, 9)}
    rows = []
    for ts in range(t0, t1, 3600):
        local = dt.datetime.fromtimestamp(ts, tz)
        hour = local.hour + 0.5  # the middle of the hour
        month = local.month
        base = LEVEL[month] * day_factor[(local.date() - start.date()).days]
        shape = (1.0
                 - SOLAR_DIP[month] * _bell(hour, 12.5, 2.6)
                 + EVENING[month] * _bell(hour, 19.0, 1.4)
                 - 0.12 * _bell(hour, 3.0, 1.8)
                 + (0.25 if month in (11, 12, 1, 2) else 0.05) * _bell(hour, 7.5, 1.0))
        off_day = local.weekday() >= 5 or local.date() in HOLIDAYS
        if off_day:
            shape = 0.88 * shape - 0.1 * _bell(hour, 19.0, 1.4)
        price = base * shape * (1.0 + 0.04 * _noise(rng))
        if local.date() in heat_days and 16 <= local.hour <= 21:
            price *= 3.0 + 4.0 * float(rng.random())
        text = str(Decimal(repr(price)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
        rows.append((dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     local.isoformat(), text))
    return rows


def render() -> str:
    lines = ["hour_start_utc,hour_start_local,price_usd_per_mwh"]
    lines += [",".join(r) for r in curve()]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
