"""Three bills worked by hand on the catalogue's published tariffs, the arithmetic written out.

Each expected line is a literal; beside it, the arithmetic in ``Decimal`` that gives it, so a reader can check
the rule (DOMAIN.md section 3) without trusting either the kernel or the reference biller.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest

from grid import timegrid
from kernels.billing import bill_intervals
from grid.tariffs import TariffCatalogue
from kernels.tariffs import compile_tariff, loads_exact

D = Decimal
CATALOGUE = TariffCatalogue(Path(__file__).resolve().parents[1] / "rules" / "tariffs")
JULY = (dt.date(2026, 7, 1), dt.date(2026, 8, 1))  # 31 days, no DST change in Los Angeles: 744 hours


def cents(dollars: Decimal) -> int:
    """A line's dollars rounded half-up to the cent."""
    return int((dollars * 100).quantize(D(1), rounding=ROUND_HALF_UP))


def lines(bill: dict) -> dict[str, tuple[int, int]]:
    return {line["code"]: (line["quantity"], line["amount_cents"]) for line in bill["lines"]}


# ------------------------------------------------------------------------------------------------------------
# 1. Seasonal tiered residential with a $/day fixed charge
#    res-tiered: PG&E Schedule E-1 (Baseline Region Y) tier prices as recorded in OpenEI URDB
#    67575942fe4f0b50f5027994 (effective 2024-10-01): $0.40206/kWh up to the baseline allowance, $0.50323 above;
#    summer (June-September) allowance 10.5 kWh/day, winter 11.2 kWh/day; customer charge $0.79343/day;
#    California's electrical energy surcharge $0.0003/kWh as a rider line.


def test_seasonal_tiered_residential_july():
    tariff = CATALOGUE.get("res-tiered")
    usage = np.full(744, 600, dtype=np.int32)  # 600 Wh every hour: 744 x 0.6 = 446.4 kWh
    bill = bill_intervals(tariff, *JULY, 60, usage).bill(0)

    baseline = D("10.5") * 31  # summer allowance x 31 days = 325.5 kWh
    assert baseline == D("325.5")
    assert cents(baseline * D("0.40206")) == 13087  # $130.870530
    assert cents((D("446.4") - baseline) * D("0.50323")) == 6084  # 120.9 kWh -> $60.840507
    assert cents(31 * D("0.79343")) == 2460  # $24.59633
    assert cents(D("446.4") * D("0.0003")) == 13  # $0.13392
    assert lines(bill) == {
        "ENERGY_P0_T0": (325_500, 13087),
        "ENERGY_P0_T1": (120_900, 6084),
        "FIXED": (31, 2460),
        "RIDER_CEC_SURCHARGE": (446_400, 13),
    }
    assert bill["total_cents"] == 13087 + 6084 + 2460 + 13 == 21644


def test_seasonal_tiered_residential_across_the_season_change():
    """16 September - 16 October: two calendar-month segments, each with its own season's allowance."""
    tariff = CATALOGUE.get("res-tiered")
    start, end = dt.date(2026, 9, 16), dt.date(2026, 10, 16)
    assert timegrid.calendar(start, end, 60, tariff.timezone).n == 720  # DST ends 1 November: 30 x 24 hours
    bill = bill_intervals(tariff, start, end, 60, np.full(720, 500, dtype=np.int32)).bill(0)

    # September 16-30: 15 days x 24 h x 0.5 kWh = 180 kWh; summer allowance 10.5 x 15 = 157.5 kWh
    assert cents(D("157.5") * D("0.40206")) == 6332  # $63.32445
    assert cents(D("22.5") * D("0.50323")) == 1132  # $11.322675
    # October 1-15: 180 kWh; winter allowance 11.2 x 15 = 168 kWh
    assert cents(D("168") * D("0.40206")) == 6755  # $67.54608
    assert cents(D("12") * D("0.50323")) == 604  # $6.03876
    assert cents(30 * D("0.79343")) == 2380  # 30 days billed: $23.8029
    assert cents(360 * D("0.0003")) == 11  # $0.108
    assert lines(bill) == {
        "ENERGY_P0_T0": (157_500, 6332),
        "ENERGY_P0_T1": (22_500, 1132),
        "ENERGY_P1_T0": (168_000, 6755),
        "ENERGY_P1_T1": (12_000, 604),
        "FIXED": (30, 2380),
        "RIDER_CEC_SURCHARGE": (360_000, 11),
    }
    assert bill["total_cents"] == 17214


# ------------------------------------------------------------------------------------------------------------
# 2. TOU with a daily baseline allowance, where pooled and period tier scopes differ
#    res-tou: the structure of PG&E Schedule E-TOU-C (peak 4-9 p.m. every day; summer June-September; usage up
#    to the daily baseline allowance, all hours together, earns the baseline credit). Summer prices in the
#    catalogue: off-peak $0.50428, peak $0.60729, baseline credit $0.10135 (tier 1: $0.40293 / $0.50594);
#    allowance 9.8 kWh/day; 7.5 % utility users' tax; minimum delivery charge $0.39167/day.
#    (Prices are illustrative at PG&E's 2024 level; the catalogue JSON says which numbers are.)


def _tou_usage():
    cal = timegrid.calendar(*JULY, 60, "America/Los_Angeles")
    peak = (cal.hour >= 16) & (cal.hour < 21)
    return np.where(peak, 1500, 400).astype(np.int32)  # per day: 19 h x 0.4 + 5 h x 1.5 = 7.6 + 7.5 kWh


def test_tou_daily_baseline_pooled_as_sam_does():
    tariff = CATALOGUE.get("res-tou")
    assert tariff.tier_scope == "pooled"
    bill = bill_intervals(tariff, *JULY, 60, _tou_usage()).bill(0)

    off, peak = D("7.6") * 31, D("7.5") * 31  # 235.6 kWh and 232.5 kWh
    total = off + peak  # 468.1 kWh
    allowance = D("9.8") * 31  # 303.8 kWh, for all hours together
    above = total - allowance  # 164.3 kWh
    # SAM's split: each period takes its share (period / total) of each tier
    assert cents(off * allowance / total * D("0.40293")) == 6161  # 152.906 kWh -> $61.6107
    assert cents(off * above / total * D("0.50428")) == 4170  # 82.694 kWh -> $41.7009
    assert cents(peak * allowance / total * D("0.50594")) == 7634  # 150.894 kWh -> $76.3434
    assert cents(peak * above / total * D("0.60729")) == 4956  # 81.606 kWh -> $49.5587
    subtotal = 6161 + 4170 + 7634 + 4956  # 22921 cents, above the minimum of 31 x $0.39167 = $12.14
    assert cents(D(subtotal) / 100 * D("0.075")) == 1719  # 7.5 % of $229.21 = $17.19075
    assert lines(bill) == {
        "ENERGY_P0_T0": (152_906, 6161),
        "ENERGY_P0_T1": (82_694, 4170),
        "ENERGY_P1_T0": (150_894, 7634),
        "ENERGY_P1_T1": (81_606, 4956),
        "TAX_UUT": (1, 1719),
    }
    assert bill["total_cents"] == subtotal + 1719 == 24640


def test_tou_daily_baseline_per_period_differs():
    """``tier_scope: period``: each period fills its own 303.8 kWh allowance, so this home never leaves tier 1."""
    urdb = CATALOGUE.get_json("res-tou")
    urdb["contextgrid"]["tier_scope"] = "period"
    tariff = compile_tariff(loads_exact(json.dumps(urdb)))
    bill = bill_intervals(tariff, *JULY, 60, _tou_usage()).bill(0)

    assert cents(D("235.6") * D("0.40293")) == 9493  # off-peak 235.6 kWh < 303.8: $94.930308
    assert cents(D("232.5") * D("0.50594")) == 11763  # peak 232.5 kWh < 303.8: $117.63105
    assert cents(D(9493 + 11763) / 100 * D("0.075")) == 1594  # 7.5 % of $212.56 = $15.942
    assert lines(bill) == {"ENERGY_P0_T0": (235_600, 9493), "ENERGY_P1_T0": (232_500, 11763), "TAX_UUT": (1, 1594)}
    assert bill["total_cents"] == 22850
    assert bill["total_cents"] < 24640, "pooled and period scopes give different bills"


def test_tou_minimum_delivery_charge():
    """A nearly empty home: 10 Wh an hour. The bill is lifted to 31 x $0.39167, then taxed."""
    tariff = CATALOGUE.get("res-tou")
    usage = np.full(744, 10, dtype=np.int32)
    bill = bill_intervals(tariff, *JULY, 60, usage).bill(0)
    assert cents(D("5.89") * D("0.40293")) == 237  # off-peak 19 h x 31 x 10 Wh = 5.89 kWh
    assert cents(D("1.55") * D("0.50594")) == 78  # peak 5 h x 31 x 10 Wh = 1.55 kWh
    minimum = cents(31 * D("0.39167"))  # $12.14177
    assert minimum == 1214
    assert cents(D(minimum) / 100 * D("0.075")) == 91  # $0.9105
    assert lines(bill) == {"ENERGY_P0_T0": (5_890, 237), "ENERGY_P1_T0": (1_550, 78),
                           "MINIMUM": (1, 1214 - 237 - 78), "TAX_UUT": (1, 91)}
    assert bill["total_cents"] == 1214 + 91


# ------------------------------------------------------------------------------------------------------------
# 3. Commercial with demand charges
#    com-demand: PG&E Schedule A-10 Medium General Demand Service TOU, Secondary, as recorded in OpenEI URDB
#    6758b27bd731a5d4d806802e (effective 2024-10-01): maximum demand $24.38/kW every month; summer (May-October)
#    weekdays off-peak $0.27092 (before 8 a.m., after 9 p.m.), part-peak and peak $0.29771 (8 a.m.-9 p.m.);
#    weekends and holidays off-peak all day; meter charge $11.51068/day. contextgrid adds federal holidays and a
#    5 % city tax.


def test_commercial_demand_july():
    tariff = CATALOGUE.get("com-demand")
    cal = timegrid.calendar(*JULY, 60, tariff.timezone)
    usage = np.full(744, 20_000, dtype=np.int32)  # a steady 20 kW
    peak_at = int(np.flatnonzero((cal.date_ordinal == dt.date(2026, 7, 15).toordinal()) & (cal.hour == 14))[0])
    usage[peak_at] = 60_000  # one 60 kWh hour on Wednesday 15 July, 2-3 p.m. (peak)
    batch = bill_intervals(tariff, *JULY, 60, usage)
    bill = batch.bill(0)

    # July 2026: 8 weekend days, and Friday 3 July is Independence Day observed (billed as a weekend day),
    # so 22 weekdays. Weekday hours: 11 off-peak, 7 part-peak (8-12, 18-21), 6 peak (12-18).
    off_h, part_h, peak_h = 22 * 11 + 9 * 24, 22 * 7, 22 * 6
    assert (off_h, part_h, peak_h) == (458, 154, 132) and off_h + part_h + peak_h == 744
    assert cents(458 * 20 * D("0.27092")) == 248163  # 9160 kWh -> $2481.6272
    assert cents(154 * 20 * D("0.29771")) == 91695  # 3080 kWh -> $916.9468
    assert cents((132 * 20 + 40) * D("0.29771")) == 79786  # 2680 kWh -> $797.8628
    assert cents(60 * D("24.38")) == 146280  # 60 kW maximum demand -> $1462.80
    assert cents(31 * D("11.51068")) == 35683  # $356.83108
    subtotal = 248163 + 91695 + 79786 + 146280 + 35683
    assert cents(D(subtotal) / 100 * D("0.05")) == 30080  # 5 % of $6016.07
    assert lines(bill) == {
        "ENERGY_P2_T0": (9_160_000, 248163),
        "ENERGY_P3_T0": (3_080_000, 91695),
        "ENERGY_P4_T0": (2_680_000, 79786),
        "DEMAND_FLAT": (60_000, 146280),
        "FIXED": (31, 35683),
        "TAX_UUT": (1, 30080),
    }
    assert bill["total_cents"] == subtotal + 30080 == 631687
    trace = batch.trace(0)
    assert trace["flat_demand"] == [{"flat_period": 0, "peak_w": 60_000, "interval": peak_at,
                                     "start_utc": "2026-07-15T21:00:00+00:00",
                                     "start_local": "2026-07-15T14:00:00-07:00"}]


@pytest.mark.parametrize("minutes", [15, 30])
def test_commercial_demand_in_finer_intervals(minutes):
    """The same steady load metered every 15 or 30 minutes: demand is Wh x 60 / minutes, the bill is equal."""
    tariff = CATALOGUE.get("com-demand")
    per_hour = 60 // minutes
    usage = np.full(744 * per_hour, 20_000 // per_hour, dtype=np.int32)
    bill = bill_intervals(tariff, *JULY, minutes, usage).bill(0)
    assert lines(bill)["DEMAND_FLAT"] == (20_000, cents(20 * D("24.38")))
