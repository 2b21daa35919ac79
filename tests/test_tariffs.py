"""Tariff compiler and catalogue: exact decimals, invalid tariffs named by key, atomic catalogue writes."""
from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from grid import timegrid
from grid.errors import InvalidInput, NotFound, TariffError
from kernels.billing import bill_intervals
from grid.tariffs import TariffCatalogue
from kernels.tariffs import OPEN, CompiledTariff, compile_tariff, loads_exact
from strategies_billing import urdb_tariffs

CATALOGUE = Path(__file__).resolve().parents[1] / "rules" / "tariffs"
EXPECTED_IDS = ["com-demand", "com-tou-demand", "ind-tou-demand", "public-flat", "res-tiered", "res-tou",
                "res-tou-nem"]
FLAT = [[0] * 24 for _ in range(12)]


def tou(**extra) -> dict:
    urdb = {
        "label": "t1", "name": "two-period tiered TOU",
        "energyratestructure": [
            [{"max": "300", "rate": "0.25", "adj": "0.01"}, {"rate": "0.35"}],
            [{"max": "300", "rate": "0.45", "sell": "0.05"}, {"rate": "0.55"}],
        ],
        "energyweekdayschedule": [[0] * 16 + [1] * 5 + [0] * 3 for _ in range(12)],
        "energyweekendschedule": copy.deepcopy(FLAT),
    }
    urdb.update(extra)
    return urdb


# ------------------------------------------------------------------------------------------------------------
# exact conversion


def test_decimal_text_converts_exactly_to_micro_dollars_and_wh():
    t = compile_tariff(tou(fixedchargefirstmeter="0.39167", fixedchargeunits="$/day"))
    assert t.energy_price.tolist() == [[260000, 350000], [450000, 550000]]
    assert t.energy_sell[1, 0] == 50000
    assert t.energy_max_wh[0, 0] == 300_000 and t.energy_max_wh[0, 1] == OPEN
    assert (t.fixed_unit, t.fixed_micro) == ("$/day", 391670)


def test_json_numbers_read_as_decimal_are_exact():
    text = '{"energyratestructure": [[{"rate": 0.1405, "adj": 0.0003, "max": 8.05}, {"rate": 0.2294}]],' \
           ' "energyweekdayschedule": %s, "energyweekendschedule": %s}' % (json.dumps(FLAT), json.dumps(FLAT))
    t = compile_tariff(loads_exact(text))
    assert t.energy_price[0].tolist() == [140800, 229400]
    assert t.energy_max_wh[0, 0] == 8050


def test_floats_are_accepted_only_through_their_repr():
    # 0.1 + 0.2 is 0.30000000000000004: its repr has 17 digits and is not a whole number of micro-dollars.
    with pytest.raises(TariffError) as err:
        compile_tariff(tou(energyratestructure=[[{"rate": 0.1 + 0.2}]]))
    assert err.value.field == "energyratestructure[0][0].rate"
    assert compile_tariff(tou(energyratestructure=[[{"rate": 0.3}], [{"rate": 0.07}]])).energy_price[1, 0] == 70000


def test_more_than_micro_dollar_precision_is_refused_not_rounded():
    with pytest.raises(TariffError, match="not a whole number of micro-dollars") as err:
        compile_tariff(tou(energyratestructure=[[{"rate": "0.1234567"}], [{"rate": "0.1"}]]))
    assert err.value.field == "energyratestructure[0][0].rate"


def test_unknown_keys_are_kept_and_ignored():
    urdb = tou(dgrules="Net Metering", revisions=[1, 2], contextgrid={"future_option": {"x": 1}})
    before = copy.deepcopy(urdb)
    a = compile_tariff(urdb)
    b = compile_tariff(tou())
    assert urdb == before
    assert a.codes == b.codes and np.array_equal(a.energy_price, b.energy_price)


def test_compiled_tariff_pickles_and_is_read_only():
    t = compile_tariff(tou(contextgrid={"holidays": ["2026-07-03"], "taxes": [{"code": "UUT", "percent": "7.5"}]}))
    u = pickle.loads(pickle.dumps(t))
    assert isinstance(u, CompiledTariff)
    assert u.codes == t.codes and np.array_equal(u.energy_price, t.energy_price) and u.holidays == t.holidays
    with pytest.raises(ValueError):
        t.energy_price[0, 0] = 1


def test_line_layout_order():
    urdb = tou(demandratestructure=[[{"rate": "10"}], [{"rate": "2", "max": "50"}, {"rate": "3"}]],
               demandweekdayschedule=FLAT, demandweekendschedule=FLAT,
               flatdemandstructure=[[{"rate": "5"}]], flatdemandmonths=[0] * 12,
               fixedchargefirstmeter="10", mincharge="20",
               contextgrid={"riders": [{"code": "PPP", "rate": "0.01"}], "net_metering": "net",
                            "taxes": [{"code": "CITY", "percent": "5"}, {"code": "STATE", "percent": "1"}]})
    t = compile_tariff(urdb)
    assert t.codes == ("ENERGY_P0_T0", "ENERGY_P0_T1", "ENERGY_P1_T0", "ENERGY_P1_T1", "DEMAND_P0", "DEMAND_P1",
                       "DEMAND_FLAT", "FIXED", "RIDER_PPP", "NEM_CREDIT", "MINIMUM", "TAX_CITY", "TAX_STATE")
    assert t.units == ("Wh", "Wh", "Wh", "Wh", "W", "W", "W", "month", "Wh", "Wh", "month", "month", "month")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urdb_tariffs())
def test_random_valid_tariffs_compile(urdb):
    t = compile_tariff(urdb)
    assert len(t.codes) == len(t.units) == len(set(t.codes))
    assert t.timezone == urdb["contextgrid"]["timezone"]


# ------------------------------------------------------------------------------------------------------------
# invalid tariffs: the error names the URDB key


def _bad(mutate, field, match=None):
    urdb = tou()
    mutate(urdb)
    with pytest.raises(TariffError, match=match) as err:
        compile_tariff(urdb)
    assert err.value.field == field, err.value.detail
    assert err.value.problem()["field"] == field


def _set(path, value):
    def mutate(urdb):
        node = urdb
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


@pytest.mark.parametrize("mutate,field", [
    (_set(["energyratestructure", 1, 0, "max"], "-5"), "energyratestructure[1][0].max"),
    (_set(["energyratestructure", 0, 0, "rate"], "abc"), "energyratestructure[0][0].rate"),
    (_set(["energyratestructure", 0, 0, "rate"], None), "energyratestructure[0][0].rate"),
    (_set(["energyratestructure", 0, 0, "rate"], True), "energyratestructure[0][0].rate"),
    (_set(["energyratestructure", 0, 0, "adj"], "NaN"), "energyratestructure[0][0].adj"),
    (_set(["energyratestructure", 0, 0, "unit"], "kWh/kW"), "energyratestructure[0][0].unit"),
    (_set(["energyratestructure", 0, 0, "max"], "0.0001"), "energyratestructure[0][0].max"),
    (_set(["energyratestructure", 0, 0, "rate"], "5000"), "energyratestructure[0][0].rate"),
    (_set(["energyweekdayschedule", 3, 5], 2), "energyweekdayschedule[3][5]"),
    (_set(["energyweekdayschedule", 3, 5], -1), "energyweekdayschedule[3][5]"),
    (_set(["energyweekendschedule", 0, 0], 0.5), "energyweekendschedule[0][0]"),
    (_set(["energyweekdayschedule"], FLAT[:11]), "energyweekdayschedule"),
    (_set(["energyweekdayschedule", 7], [0] * 23), "energyweekdayschedule[7]"),
    (_set(["energyratestructure"], []), "energyratestructure"),
    (_set(["energyratestructure", 1], []), "energyratestructure[1]"),
    (_set(["fixedchargefirstmeter"], "10"), None),  # valid: sentinel below
])
def test_invalid_values_name_their_key(mutate, field):
    if field is None:
        urdb = tou()
        mutate(urdb)
        compile_tariff(urdb)
        return
    _bad(mutate, field)


def test_decreasing_tier_bounds_are_rejected():
    def mutate(urdb):
        urdb["contextgrid"] = {"tier_scope": "period"}
        urdb["energyratestructure"][0] = [{"max": "300", "rate": "0.1"}, {"max": "200", "rate": "0.2"},
                                          {"rate": "0.3"}]
    _bad(mutate, "energyratestructure[0][1].max", "decreases")


def test_middle_tier_without_max_is_rejected():
    _bad(_set(["energyratestructure", 0], [{"rate": "0.1"}, {"rate": "0.2"}]), "energyratestructure[0][0].max")


def test_missing_schedule_is_rejected():
    _bad(lambda u: u.pop("energyweekendschedule"), "energyweekendschedule")


def test_pooled_tiers_need_the_same_bounds_in_a_month():
    _bad(_set(["energyratestructure", 1, 0, "max"], "400"), "energyratestructure[1]", "pooled tiers")
    # the same tariff is fine with per-period tiers
    urdb = tou(contextgrid={"tier_scope": "period"})
    urdb["energyratestructure"][1][0]["max"] = "400"
    compile_tariff(urdb)


def test_pooled_bounds_may_differ_between_seasons():
    urdb = tou()
    urdb["energyratestructure"][1][0]["max"] = "400"
    urdb["energyweekdayschedule"] = [[0] * 24 if m < 6 else [1] * 24 for m in range(12)]
    urdb["energyweekendschedule"] = copy.deepcopy(urdb["energyweekdayschedule"])
    compile_tariff(urdb)


@pytest.mark.parametrize("ext,field", [
    ({"tier_scope": "both"}, "contextgrid.tier_scope"),
    ({"timezone": "Mars/Olympus"}, "contextgrid.timezone"),
    ({"net_metering": "gross"}, "contextgrid.net_metering"),
    ({"net_metering": {"mode": "net", "sell_rate": "0.05"}}, "contextgrid.net_metering.sell_rate"),
    ({"holidays": ["2026-13-01"]}, "contextgrid.holidays[0]"),
    ({"riders": [{"code": "ppp", "rate": "0.01"}]}, "contextgrid.riders[0].code"),
    ({"riders": [{"code": "A", "rate": "0.01"}, {"code": "A", "rate": "0.02"}]}, "contextgrid.riders[1].code"),
    ({"riders": [{"code": "A"}]}, "contextgrid.riders[0].rate"),
    ({"taxes": [{"code": "T", "percent": "-1"}]}, "contextgrid.taxes[0].percent"),
    ({"taxes": "7%"}, "contextgrid.taxes"),
])
def test_invalid_extensions_name_their_key(ext, field):
    _bad(_set(["contextgrid"], ext), field)


@pytest.mark.parametrize("extra,field", [
    ({"demandratestructure": [[{"rate": "10"}]]}, "demandweekdayschedule"),
    ({"demandratestructure": [[{"rate": "10", "unit": "kVA"}]], "demandweekdayschedule": FLAT,
      "demandweekendschedule": FLAT}, "demandratestructure[0][0].unit"),
    ({"flatdemandstructure": [[{"rate": "10"}]]}, "flatdemandmonths"),
    ({"flatdemandstructure": [[{"rate": "10"}]], "flatdemandmonths": [0] * 11 + [1]}, "flatdemandmonths[11]"),
    ({"demandunits": "hp"}, "demandunits"),
    ({"fixedchargefirstmeter": "5", "fixedchargeunits": "$/week"}, "fixedchargeunits"),
    ({"mincharge": "-5"}, "mincharge"),
])
def test_invalid_demand_and_charges_name_their_key(extra, field):
    _bad(lambda u: u.update(extra), field)


def test_non_object_tariff_is_rejected():
    with pytest.raises(TariffError):
        compile_tariff([1, 2])


# ------------------------------------------------------------------------------------------------------------
# catalogue


def test_catalogue_holds_exactly_the_expected_ids_and_all_compile():
    cat = TariffCatalogue(CATALOGUE)
    assert cat.ids() == EXPECTED_IDS
    for tid in cat.ids():
        t = cat.get(tid)
        assert t.id == tid and t.timezone == "America/Los_Angeles"
        raw = cat.get_json(tid)
        assert raw["name"] and raw.get("source"), f"{tid} names its source"
    assert cat.get("res-tou-nem").net_metering == "net"
    assert cat.get("res-tou").tier_scope == "pooled" and cat.get("res-tou").energy_daily.all()
    assert cat.get("res-tiered").fixed_unit == "$/day"
    assert cat.get("ind-tou-demand").min_unit is not None and cat.get("ind-tou-demand").taxes
    assert cat.get("com-tou-demand").n_demand_periods and cat.get("com-tou-demand").n_flat_periods


def test_every_line_type_appears_in_bills_of_the_catalogue():
    """Usage typical of each kind, billed for a summer month: every kind of line shows up somewhere."""
    cat = TariffCatalogue(CATALOGUE)
    start, end = dt.date(2026, 7, 1), dt.date(2026, 8, 1)
    n = timegrid.calendar(start, end, 60, "America/Los_Angeles").n
    rng = np.random.default_rng(3)
    seen = set()
    for tid in cat.ids():
        t = cat.get(tid)
        scale = 600 if tid.startswith(("res", "public")) else 400_000
        imp = rng.integers(0, scale, (3, n)).astype(np.int32)
        imp[0] //= 200  # a near-empty home: the minimum applies
        exp = rng.integers(0, scale, (3, n)).astype(np.int32)
        batch = bill_intervals(t, start, end, 60, imp, exp)
        for i in range(3):
            for line in batch.bill(i)["lines"]:
                if line["amount_cents"]:
                    seen.add(_line_kind(line["code"]))
    assert seen == {"ENERGY", "DEMAND_P", "DEMAND_FLAT", "FIXED", "RIDER", "NEM_CREDIT", "MINIMUM", "TAX"}, seen


def _line_kind(code: str) -> str:
    for prefix in ("ENERGY_", "DEMAND_FLAT", "DEMAND_P", "RIDER_", "TAX_"):
        if code.startswith(prefix):
            return prefix.rstrip("_")
    return code


def test_get_unknown_is_not_found(tmp_path):
    cat = TariffCatalogue(tmp_path)
    with pytest.raises(NotFound):
        cat.get("nope")
    with pytest.raises(NotFound):
        cat.get_json("nope")
    assert cat.ids() == [] and "nope" not in cat


def test_put_validates_before_writing(tmp_path):
    cat = TariffCatalogue(tmp_path)
    bad = tou()
    bad["energyratestructure"][0][0]["max"] = "-1"
    with pytest.raises(TariffError):
        cat.put("bad", bad)
    assert cat.ids() == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInput):
        cat.put("../escape", tou())


def test_put_then_get_round_trips_exactly(tmp_path):
    cat = TariffCatalogue(tmp_path)
    urdb = tou(mincharge=Decimal("0.39167"), minchargeunits="$/day", anything={"kept": True})
    urdb["energyratestructure"][0][0]["rate"] = Decimal("0.12345")
    t = cat.put("mine", urdb)
    assert cat.ids() == ["mine"] and "mine" in cat
    assert cat.get("mine").min_micro == t.min_micro == 391670
    assert cat.get("mine").energy_price[0, 0] == 133450  # 0.12345 + adj 0.01
    stored = cat.get_json("mine")
    assert stored["anything"] == {"kept": True}
    assert stored["mincharge"] == 0.39167
    assert not [p for p in tmp_path.iterdir() if p.suffix != ".json"], "no temporary file left behind"
    # an edit on disk is seen by the next get
    urdb["energyratestructure"][0][0]["rate"] = "0.2"
    cat.put("mine", urdb)
    assert TariffCatalogue(tmp_path).get("mine").energy_price[0, 0] == 210000


def test_invalid_json_on_disk_is_a_tariff_error(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(TariffError):
        TariffCatalogue(tmp_path).get("broken")
