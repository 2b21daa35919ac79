"""Cross-check against NREL SAM's Utilityrate5 (PySAM), the calculator utility analysts already trust.

Where SAM's rules and contextgrid's coincide, each month's energy, TOU demand, flat demand, fixed and minimum
charges agree within the per-line rounding: contextgrid rounds every line to the cent, SAM keeps floats, so a
month may differ by half a cent per line and a year by half a cent per line per month.

Alignment (DOMAIN.md section 2): SAM's 8760-hour load is a year whose 1 January is a Monday, in standard time
with no daylight-saving shifts, so the comparison bills calendar year 2018 (1 January 2018 was a Monday) in
``UTC`` (24 hours every day). SAM knows nothing of ``contextgrid`` (riders, taxes, holidays, net metering
options), so those are left out of the tariffs compared.

Differences by design, each shown by its own test below:

* ``$/day`` fixed (and minimum) charges: SAM's URDB import multiplies by 365/12 for every month; contextgrid
  bills the days billed (31 in January, 28 in February...). Over a year both bill 365 days.
* A ``max`` on the last tier: SAM bills nothing beyond it; contextgrid treats the last tier as open.
* Negative prices (rate + adj < 0): SAM does not bill them; contextgrid bills the credit.
* Per-line rounding: contextgrid's lines are cents, SAM's are floats (the tolerance above).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernels.billing import bill_intervals
from kernels.tariffs import compile_tariff, loads_exact
from strategies_billing import urdb_tariffs

ur = pytest.importorskip("PySAM.Utilityrate5")
from PySAM.UtilityRateTools import URDBv8_to_ElectricityRates  # noqa: E402

CATALOGUE = Path(__file__).resolve().parents[1] / "rules" / "tariffs"
YEAR = 2018
CATEGORIES = ("energy", "demand_tou", "demand_flat", "fixed", "minimum")
NUMERIC = {"rate", "adj", "max", "sell", "fixedchargefirstmeter", "mincharge"}


def sam_input(urdb) -> dict:
    """URDB as SAM's importer reads it: plain floats, no contextgrid block."""
    def plain(o, key=None):
        if isinstance(o, dict):
            return {k: plain(v, k) for k, v in o.items() if k != "contextgrid"}
        if isinstance(o, list):
            return [plain(v, key) for v in o]
        if key in NUMERIC or isinstance(o, Decimal):
            return float(o)
        return o
    return plain(urdb)


def sam_year(urdb: dict, load_wh: np.ndarray) -> dict[str, np.ndarray]:
    """SAM's monthly charges in dollars for an hourly load in Wh (no system, year 1)."""
    m = ur.new()
    m.ElectricityRates.assign(URDBv8_to_ElectricityRates(sam_input(urdb)))
    m.Lifetime.analysis_period = 1
    m.Lifetime.system_use_lifetime_output = 0
    m.Lifetime.inflation_rate = 0
    m.ElectricityRates.rate_escalation = [0]
    m.Load.load_escalation = [0]
    m.SystemOutput.degradation = [0]
    m.Load.load = tuple((load_wh / 1000).tolist())  # kW over each hour = kWh
    m.SystemOutput.gen = tuple([0.0] * 8760)
    m.execute(0)
    o = m.Outputs
    return {
        "energy": np.array(o.year1_monthly_ec_charge_without_system),
        "demand_tou": np.array(o.year1_monthly_dc_tou_without_system),
        "demand_flat": np.array(o.year1_monthly_dc_fixed_without_system),
        "fixed": np.array(o.year1_monthly_fixed_without_system),
        "minimum": np.array(o.year1_monthly_minimum_without_system),
    }


def category(code: str) -> str | None:
    if code.startswith("ENERGY_"):
        return "energy"
    if code.startswith("DEMAND_P"):
        return "demand_tou"
    return {"DEMAND_FLAT": "demand_flat", "FIXED": "fixed", "MINIMUM": "minimum"}.get(code)


def our_year(urdb: dict, load_wh: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """contextgrid's monthly charges in dollars and the number of lines behind each, billed in UTC."""
    u = copy.deepcopy(urdb)
    u["contextgrid"] = {"timezone": "UTC", "tier_scope": (urdb.get("contextgrid") or {}).get("tier_scope", "pooled")}
    tariff = compile_tariff(loads_exact(json.dumps(sam_input(u) | {"contextgrid": u["contextgrid"]})))
    dollars = {c: np.zeros(12) for c in CATEGORIES}
    lines = {c: np.zeros(12, dtype=int) for c in CATEGORIES}
    k = 0
    for month in range(12):
        start = dt.date(YEAR, month + 1, 1)
        end = dt.date(YEAR + (month == 11), month % 12 + 2 if month < 11 else 1, 1)
        n = (end - start).days * 24
        bill = bill_intervals(tariff, start, end, 60, load_wh[k:k + n]).bill(0)
        k += n
        for line in bill["lines"]:
            c = category(line["code"])
            if c is not None:
                dollars[c][month] += line["amount_cents"] / 100
                lines[c][month] += 1
    assert k == 8760
    return dollars, lines


def assert_agree(urdb: dict, load_wh: np.ndarray, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    ours, lines = our_year(urdb, load_wh)
    sam = sam_year(urdb, load_wh)
    diffs = {}
    for c in CATEGORIES:
        diff = ours[c] - sam[c]
        diffs[c] = diff
        if c in skip:
            continue
        # half a cent per rounded line; MINIMUM makes up the difference to the rounded subtotal, so it carries
        # the rounding of every other line of the month
        n = sum(lines.values()) if c == "minimum" else lines[c]
        tolerance = 0.005 * n + 1e-6
        assert (np.abs(diff) <= tolerance).all(), (c, diff.round(4).tolist(), lines[c].tolist())
        assert abs(diff.sum()) <= tolerance.sum(), c
    return diffs


def load(seed: int, scale: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(8760) % 24
    shape = 1 + np.sin((hours - 9) / 24 * 2 * np.pi)  # an afternoon hump
    return (rng.integers(0, scale, 8760) * shape).astype(np.int64)


def catalogue(tid: str) -> dict:
    return json.loads((CATALOGUE / f"{tid}.json").read_text(), parse_float=Decimal)


@pytest.mark.parametrize("tid,scale", [
    ("com-tou-demand", 900_000),  # SMUD CI-TOD3: TOU energy, TOU demand, flat demand, $/month fixed
    ("ind-tou-demand", 1_500_000),  # SMUD CI-TOD4 with a $/month minimum
    ("ind-tou-demand", 20_000),  # ... small enough that the minimum applies every month
    ("res-tou", 1_500),  # E-TOU-C shape: pooled daily-baseline tiers across peak and off-peak
    ("public-flat", 3_000),
])
def test_catalogue_tariffs_agree_with_sam(tid, scale):
    urdb = catalogue(tid)
    if tid == "res-tou":
        # its $/day minimum delivery charge is converted by SAM with 365/12 days (see the by-design test)
        urdb.pop("mincharge")
    diffs = assert_agree(urdb, load(7, scale))
    if scale == 20_000:
        assert (sam_year(urdb, load(7, scale))["minimum"] > 0).all(), "the minimum was exercised"
    assert set(diffs) == set(CATEGORIES)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(urdb_tariffs(scope="pooled", nem="none"), st.integers(0, 2**32 - 1), st.sampled_from([300, 3_000, 300_000]))
def test_random_pooled_tariffs_agree_with_sam(urdb, seed, scale):
    """SAM's pooled tiers (periods' shares of each tier) are contextgrid's, on any tariff both can read."""
    assume(urdb.get("energyratestructure"))
    urdb = sam_input(urdb)
    # stay where the rules coincide (the differences are the by-design tests below)
    if urdb.get("fixedchargeunits") == "$/day":
        urdb["fixedchargeunits"] = "$/month"
    if urdb.get("minchargeunits") == "$/day":
        urdb["minchargeunits"] = "$/month"
    if urdb.get("minchargeunits") == "$/year":  # SAM applies an annual minimum once a year
        urdb.pop("mincharge")
    if urdb.get("demandratestructure"):  # SAM requires one set of demand tier bounds per month
        first = urdb["demandratestructure"][0]
        urdb["demandratestructure"] = [[dict(t, rate=p[min(j, len(p) - 1)]["rate"]) for j, t in enumerate(first)]
                                       for p in urdb["demandratestructure"]]
    for key in ("energyratestructure", "demandratestructure", "flatdemandstructure"):
        for tiers in urdb.get(key) or []:
            tiers[-1].pop("max", None)
            for t in tiers:
                t["adj"] = abs(t.get("adj", 0.0))
    assert_agree(urdb, load(seed, scale))


def test_daily_fixed_charge_differs_by_design():
    """SAM bills a $/day charge as rate x 365/12 every month; contextgrid bills the days of the month."""
    urdb = catalogue("res-tiered")  # $0.79343 per day
    diffs = assert_agree(urdb, load(3, 1_500), skip=("fixed",))
    days = np.array([(dt.date(YEAR + (m == 11), m % 12 + 2 if m < 11 else 1, 1) - dt.date(YEAR, m + 1, 1)).days
                     for m in range(12)])
    expected = 0.79343 * (days - 365 / 12)
    assert np.allclose(diffs["fixed"], expected, atol=0.005)
    assert abs(diffs["fixed"].sum()) <= 12 * 0.005  # a year is 365 days either way


def test_last_tier_max_differs_by_design():
    """SAM bills nothing beyond a last tier's max; contextgrid treats the last tier as open."""
    flat = [[0] * 24] * 12
    urdb = {"energyratestructure": [[{"rate": 0.1, "max": 100.0}]], "energyweekdayschedule": flat,
            "energyweekendschedule": flat}
    usage = np.full(8760, 300, dtype=np.int64)  # 223.2 kWh in January
    ours, _ = our_year(urdb, usage)
    sam = sam_year(urdb, usage)
    assert sam["energy"][0] == pytest.approx(10.0)  # 100 kWh x $0.1, the rest free
    assert ours["energy"][0] == pytest.approx(22.32)  # 223.2 kWh x $0.1
