"""What-if functions on a plain Shard (no Ray): load changes held to plain-Python references, and the bills
they produce held to the bill kernel called directly (a what-if on the current plan is the real bill)."""
import datetime as dt

import numpy as np
import pytest
import reference_whatif as ref
from factories import context
from hypothesis import given, settings
from hypothesis import strategies as st
from portal_seed import synthetic_month

from grid import whatif
from grid.errors import InvalidInput, NotFound, TariffError
from grid.partitions import PARTITIONS
from grid.shard import Shard
from grid.timegrid import DEFAULT_TIMEZONE, calendar, month_bounds, months_between
from grid.whatif import changes as ch
from grid.whatif.loads import account_load
from grid.whatif.plans import PlanCatalogue, resolve_plans
from kernels.billing import bill_intervals, round_half_up_div

TZ = DEFAULT_TIMEZONE
CAT = PlanCatalogue()
AS_OF = "2026-11-05"


def put_usage(shard, cid, sp, months, solar=False, seed=0, interval=60):
    store = shard.usage[interval]
    row = store.row_of[sp]
    for k, m in enumerate(months):
        cal, imp, exp = synthetic_month(m, solar, seed * 100 + k)
        if interval != 60:
            per = 60 // interval
            imp, exp = np.repeat(imp // per, per), np.repeat(exp // per, per)
        store.put_month(m, np.array([row]), imp[None].astype(np.int32), exp[None].astype(np.int32),
                        np.array([solar]))
        store.filled_through[row] = max(store.filled_through[row],
                                        int(calendar(*month_bounds(m), interval, TZ).utc_start[-1]) + interval * 60)


def make_shard(n_months=24, first="2024-11"):
    """Customers C0000004 (solar, 5 kW attribute), C0000005 (plain), C0000006 (no usage)."""
    shard = Shard(0, list(range(PARTITIONS)), TZ)
    months = months_between(first, n_months)
    for i, solar in ((4, True), (5, False), (6, False)):
        cid, body = context(i, solar=solar)
        if solar:
            body["attributes"]["solar_kw_dc"] = 5.0
            body["accounts"][0]["programs"] = [{"code": "GREEN_POWER", "enrolled": "2026-06-01"}]
        shard.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"w{i}"})
        if i != 6:
            put_usage(shard, cid, f"S{i:08d}", months, solar, seed=i)
    return shard


@pytest.fixture(scope="module")
def shard():
    return make_shard()


# -- load changes == references ---------------------------------------------------------------------------
MONTHS = st.sampled_from(["2026-03", "2026-07", "2026-11", "2027-02"])  # both DST changes included


@settings(max_examples=40)
@given(month=MONTHS, interval=st.sampled_from([15, 60]), bp=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1),
       hours=st.sets(st.integers(0, 23), min_size=1, max_size=23))
def test_shift_equals_reference_and_conserves_energy(month, interval, bp, seed, hours):
    cal = calendar(*month_bounds(month), interval, TZ)
    imp = np.random.default_rng(seed).integers(0, 5000, cal.n).astype(np.int64)
    to = sorted(set(range(24)) - hours)[: max(1, len(set(range(24)) - hours) // 2)]
    plan = ch.hour_masks(cal, sorted(hours), to)
    out = ch.shift(imp, plan, bp)
    on, off = np.isin(cal.hour, sorted(hours)), np.isin(cal.hour, to)
    assert out.tolist() == ref.shift(imp.tolist(), cal.day.tolist(), on.tolist(), off.tolist(), bp)
    for d in range(cal.days):
        assert out[cal.day == d].sum() == imp[cal.day == d].sum()
    assert (out >= 0).all()


@settings(max_examples=40)
@given(month=MONTHS, interval=st.sampled_from([15, 30, 60]), kwh=st.integers(0, 60_000),
       charger=st.integers(1_400, 19_200), hour=st.integers(0, 23),
       days=st.sampled_from(["all", "weekdays", "weekends"]))
def test_ev_profile_equals_reference(month, interval, kwh, charger, hour, days):
    kwh = min(kwh, charger * 24)
    cal = calendar(*month_bounds(month), interval, TZ)
    changes = ch.LoadChanges(ev_wh_per_day=kwh, ev_charger_w=charger, ev_start_hour=hour, ev_days=days)
    got = ch.ev_profile(cal, changes)
    want = ref.ev(cal.utc_start.tolist(), interval, cal.start, cal.days, TZ, kwh, charger, hour, days)
    assert got.tolist() == want


@settings(max_examples=30)
@given(month=MONTHS, seed=st.integers(0, 2**32 - 1), kw=st.integers(0, 20_000), ev_wh=st.integers(0, 30_000),
       bp=st.integers(0, 10_000))
def test_apply_equals_reference(month, seed, kw, ev_wh, bp):
    cal = calendar(*month_bounds(month), 60, TZ)
    rng = np.random.default_rng(seed)
    imp = rng.integers(0, 3000, cal.n).astype(np.int64)
    exp = np.where(rng.random(cal.n) < 0.3, rng.integers(0, 2000, cal.n), 0).astype(np.int64)
    changes = ch.LoadChanges(solar_kw_milli=kw, shift_bp=bp, ev_wh_per_day=ev_wh)
    plan = ch.peak_masks(CAT.get("res-tou"), cal)
    got_imp, got_exp = ch.apply(imp, exp, cal, changes, plan)
    shifted = ch.shift(imp, plan, bp).tolist() if bp else None
    want = ref.apply(imp.tolist(), exp.tolist(), shifted, ch.ev_profile(cal, changes).tolist() if ev_wh else None,
                     ch.solar_profile(cal, changes).tolist() if kw else None)
    assert (got_imp.tolist(), got_exp.tolist()) == want
    # net energy balance: import - export moves by exactly EV minus solar
    gen = ch.solar_profile(cal, changes).sum() if kw else 0
    evs = ch.ev_profile(cal, changes).sum() if ev_wh else 0
    assert (got_imp.sum() - got_exp.sum()) - (imp.sum() - exp.sum()) == evs - gen


def test_no_changes_returns_the_load_itself():
    cal = calendar(*month_bounds("2026-05"), 60, TZ)
    imp, exp = np.arange(cal.n, dtype=np.int64), np.zeros(cal.n, np.int64)
    out = ch.apply(imp, exp, cal, ch.LoadChanges())
    assert out[0] is imp and out[1] is exp


def test_peak_masks_follow_the_plan_prices():
    cal = calendar(*month_bounds("2026-07"), 60, TZ)
    plan = ch.peak_masks(CAT.get("res-tou"), cal)
    on_hours = set(cal.hour[plan.on].tolist())
    assert on_hours and on_hours <= {16, 17, 18, 19, 20}  # E-TOU-C: 4-9 p.m.
    assert not ch.peak_masks(CAT.get("res-tiered"), cal).moves  # one period: nothing to shift


@pytest.mark.parametrize("body, field", [
    ({"solar": {"kw": -1}}, "changes.solar.kw"),
    ({"solar": {}}, "changes.solar.kw"),
    ({"solar": {"kw": 1, "profile": [[0] * 24] * 11}}, "changes.solar.profile"),
    ({"shift": {"percent": 100.5}}, "changes.shift.percent"),
    ({"shift": {"percent": -0.1}}, "changes.shift.percent"),
    ({"shift": {"percent": 10, "from_hours": [17]}}, "changes.shift.to_hours"),
    ({"shift": {"percent": 10, "from_hours": [17], "to_hours": [17, 2]}}, "changes.shift.to_hours"),
    ({"ev": {"kwh_per_day": 100, "charger_kw": 2}}, "changes.ev.kwh_per_day"),
    ({"ev": {"kwh_per_day": 5, "start_hour": 24}}, "changes.ev.start_hour"),
    ({"ev": {"kwh_per_day": 5, "days": "sundays"}}, "changes.ev.days"),
    ({"hydro": {}}, "changes.hydro"),
])
def test_bad_changes_name_their_field(body, field):
    with pytest.raises(InvalidInput) as e:
        ch.LoadChanges.parse(body)
    assert e.value.field == field


# -- plans --------------------------------------------------------------------------------------------------
FLAT = {"label": "flat", "energyratestructure": [[{"rate": "0.25"}]], "energyweekdayschedule": [[0] * 24] * 12,
        "energyweekendschedule": [[0] * 24] * 12}


def test_inline_tariffs_compile_once_per_content():
    a = resolve_plans([dict(FLAT)], CAT, TZ)[0].tariff
    b = resolve_plans([dict(FLAT)], CAT, TZ)[0].tariff
    assert a is b  # same object: the kernel's plan cache hits on the next what-if


def test_plan_errors_name_the_item():
    with pytest.raises(NotFound) as e:
        resolve_plans(["res-tou", "gone"], CAT, TZ)
    assert e.value.extra["field"] == "plans[1]"
    with pytest.raises(TariffError) as e:
        resolve_plans([{**FLAT, "energyweekdayschedule": [[0] * 24] * 11}], CAT, TZ)
    assert e.value.field == "plans[0].energyweekdayschedule"
    with pytest.raises(InvalidInput) as e:
        resolve_plans([{**FLAT, "contextgrid": {"timezone": "Europe/Paris"}}], CAT, TZ)
    assert e.value.field == "plans[0].contextgrid.timezone"


# -- bills on the shard's live load -------------------------------------------------------------------------
def kernel_bill(shard, cid, plan_id, month):
    account = shard.record(cid)["accounts"][0]
    ld = account_load(shard, account, *month_bounds(month))
    return bill_intervals(CAT.get(plan_id), ld.start, ld.end, 60, ld.import_wh, ld.export_wh).bill(0)


@pytest.mark.parametrize("cid", ["C0000004", "C0000005"])
def test_scenario_without_changes_is_the_kernel_bill(shard, cid):
    out = whatif.scenarios(shard, cid, {"plans": ["res-tiered", "res-tou-nem"]}, CAT, AS_OF)
    assert out["months"] == months_between("2025-11", 12)
    for item in out["items"]:
        for b in item["bills"]:
            want = kernel_bill(shard, cid, item["plan_id"], b["month"])
            assert (b["lines"], b["total_cents"]) == (want["lines"], want["total_cents"])
    current = next(i for i in out["items"] if i["is_current"])
    assert out["baseline"]["monthly_cents"] == [b["total_cents"] for b in current["bills"]]
    assert [i["total_cents"] for i in out["items"]] == sorted(i["total_cents"] for i in out["items"])


def test_scenario_with_changes_bills_the_changed_load(shard):
    req = {"plans": ["res-tiered"], "changes": {"solar": {"kw": 3.5}, "ev": {"kwh_per_day": 9, "days": "weekdays"},
                                                "shift": {"percent": 30}}}
    out = whatif.scenarios(shard, "C0000005", req, CAT, AS_OF)
    changes = ch.LoadChanges.parse(req["changes"])
    account = shard.record("C0000005")["accounts"][0]
    for item in out["items"]:
        tariff = CAT.get(item["plan_id"])
        for b in item["bills"]:
            ld = account_load(shard, account, *month_bounds(b["month"]))
            imp, exp = ch.apply(ld.import_wh, ld.export_wh, ld.calendar, changes, ch.peak_masks(tariff, ld.calendar))
            want = bill_intervals(tariff, ld.start, ld.end, 60, imp, exp).bill(0)
            assert b["total_cents"] == want["total_cents"] and b["lines"] == want["lines"]
    assert out["load"]["scenario_export_wh"] > 0 == out["load"]["export_wh"]
    tiered = next(i for i in out["items"] if i["plan_id"] == "res-tiered")
    current = next(i for i in out["items"] if i["is_current"])
    assert tiered["difference_cents"] == tiered["total_cents"] - current["total_cents"]
    assert current["change_from_today_cents"] == current["total_cents"] - out["baseline"]["total_cents"]


def test_scenario_unknown_account(shard):
    with pytest.raises(NotFound) as e:
        whatif.scenarios(shard, "C0000005", {"plans": ["res-tou"], "account_id": "A-x"}, CAT, AS_OF)
    assert e.value.extra["field"] == "account_id"


def test_current_bill_at_month_end_is_the_month_bill(shard):
    out = whatif.current_bill(shard, "C0000005", "2026-10-31", CAT)
    (acct,) = out["items"]
    want = kernel_bill(shard, "C0000005", "res-tou", "2026-10")
    assert acct["to_date"]["total_cents"] == acct["projected"]["total_cents"] == want["total_cents"]
    assert acct["projected"]["estimated_import_wh"] == 0


@settings(max_examples=10)
@given(day=st.integers(1, 30))
def test_current_bill_to_date_is_the_kernel_bill_of_the_days_so_far(shard, day):
    today = dt.date(2026, 9, day)
    out = whatif.current_bill(shard, "C0000004", today, CAT)
    (acct,) = out["items"]
    account = shard.record("C0000004")["accounts"][0]
    ld = account_load(shard, account, dt.date(2026, 9, 1), today + dt.timedelta(days=1))
    want = bill_intervals(CAT.get("res-tou"), ld.start, ld.end, 60, ld.import_wh, ld.export_wh).bill(0)
    assert acct["to_date"]["lines"] == want["lines"] and acct["to_date"]["days"] == day
    # readings after "today" are ignored: the projection estimates every later interval
    if day < 30:
        assert acct["projected"]["estimated_import_wh"] > 0
    else:  # the last day of the period: nothing left to estimate, the projection is the bill
        assert acct["projected"]["estimated_import_wh"] == 0
        assert acct["projected"]["lines"] == acct["to_date"]["lines"]


def test_current_bill_across_a_cycle_day(shard):
    account = shard.record("C0000005")["accounts"][0]
    account["bill_cycle_day"] = 15  # a period that crosses a month boundary: billed as two segments
    try:
        out = whatif.current_bill(shard, "C0000005", "2026-10-10", CAT)
        (acct,) = out["items"]
        assert (acct["period_start"], acct["period_end"]) == ("2026-09-15", "2026-10-15")
        sep = account_load(shard, account, dt.date(2026, 9, 15), dt.date(2026, 10, 1))
        octo = account_load(shard, account, dt.date(2026, 10, 1), dt.date(2026, 10, 11))
        want = bill_intervals(CAT.get("res-tou"), dt.date(2026, 9, 15), dt.date(2026, 10, 11), 60,
                              np.concatenate([sep.import_wh, octo.import_wh]),
                              np.concatenate([sep.export_wh, octo.export_wh])).bill(0)
        assert acct["to_date"]["lines"] == want["lines"]
    finally:
        account["bill_cycle_day"] = 1


def test_current_bill_without_usage_bills_fixed_charges(shard):
    out = whatif.current_bill(shard, "C0000006", AS_OF, CAT)
    (acct,) = out["items"]
    assert acct["data_through"] is None and acct["to_date"]["total_cents"] == 0
    assert acct["projected"]["import_wh"] == 0
    assert acct["projected"]["total_cents"] == sum(l["amount_cents"] for l in acct["projected"]["lines"])


def test_meters_of_different_intervals_sum_at_the_coarsest():
    shard = Shard(0, list(range(PARTITIONS)), TZ)
    cid, body = context(8)
    sp15 = dict(body["accounts"][0]["service_points"][0], service_point_id="S-Q", interval_minutes=15)
    body["accounts"][0]["service_points"].append(sp15)
    shard.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": "w"})
    put_usage(shard, cid, "S00000008", ["2026-03"], seed=1)
    put_usage(shard, cid, "S-Q", ["2026-03"], seed=2, interval=15)
    ld = account_load(shard, shard.record(cid)["accounts"][0], *month_bounds("2026-03"))
    hourly = shard.usage[60].series(shard.usage[60].row_of["S00000008"], "2026-03")[0].astype(np.int64)
    quarter = shard.usage[15].series(shard.usage[15].row_of["S-Q"], "2026-03")[0].astype(np.int64)
    assert ld.interval_minutes == 60 and ld.calendar.n == 743  # March: one hour lost to DST
    assert ld.import_wh.tolist() == (hourly + quarter.reshape(-1, 4).sum(axis=1)).tolist()


def test_forecast_band_sources_and_levelized(shard):
    a = whatif.forecast(shard, "C0000004", 12, CAT, AS_OF)
    assert a == whatif.forecast(shard, "C0000004", 12, CAT, AS_OF)  # seeded: the same answer twice
    assert a["history_months"] == 24
    assert a["items"][0]["source_month"] == "projection"  # the open month is the bill card's projection
    assert a["items"][0]["forecast_cents"] == whatif.current_bill(shard, "C0000004", AS_OF, CAT)["projected_cents"]
    for item in a["items"]:
        assert item["low_cents"] <= item["forecast_cents"] <= item["high_cents"]
    for item in a["items"][1:]:
        y, m = item["month"].split("-")
        assert item["source_month"] == f"{int(y) - 1}-{m}"
    assert a["total_cents"] == sum(i["forecast_cents"] for i in a["items"])
    assert abs(a["levelized_cents"] * 12 - a["total_cents"]) <= 6
    history = [kernel_bill(shard, "C0000004", "res-tou", m)["total_cents"] for m in months_between("2025-11", 12)]
    assert abs(a["history_average_cents"] * 12 - sum(history)) <= 6


def test_forecast_of_a_year_like_the_last_is_close_to_it():
    shard = make_shard(n_months=12, first="2025-11")
    out = whatif.forecast(shard, "C0000005", 12, CAT, "2026-11-02", simulations=200)
    actual = [kernel_bill(shard, "C0000005", "res-tou", m)["total_cents"] for m in months_between("2025-11", 12)]
    # the seeded synthetic load repeats its year: every actual month falls inside the band, medians are near
    for item, act in zip(out["items"], actual):
        assert item["low_cents"] <= act <= item["high_cents"], (item, act)
    assert abs(out["total_cents"] - sum(actual)) < 0.05 * sum(actual)


def test_forecast_without_history_is_fixed_charges(shard):
    out = whatif.forecast(shard, "C0000006", 3, CAT, AS_OF)
    assert out["history_months"] == 0 and out["history_average_cents"] is None
    assert all(i["low_cents"] == i["forecast_cents"] == i["high_cents"] for i in out["items"])


@pytest.mark.parametrize("months", [0, 25, True, "3"])
def test_forecast_months_checked(shard, months):
    with pytest.raises(InvalidInput) as e:
        whatif.forecast(shard, "C0000005", months, CAT, AS_OF)
    assert e.value.field == "months"


def test_green_metrics(shard):
    g = whatif.green(shard, "C0000004", None, AS_OF)
    assert g["solar_kw_source"] == "attribute" and g["solar_kw_dc"] == 5.0
    for row in g["items"] + [g]:
        assert row["consumption_wh"] == row["import_wh"] + row["self_consumed_wh"]
        assert row["self_consumed_wh"] <= row["generation_wh"]
        assert 0 <= row["solar_share"] <= 1
    for row in g["items"]:
        assert row["avoided_co2_g"] == round_half_up_div((row["generation_wh"] + row["green_program_wh"]) * 200, 1000)
    assert g["avoided_co2_g"] == sum(row["avoided_co2_g"] for row in g["items"])
    # GREEN_POWER enrolled 2026-06-01: months from June on are matched in full, earlier ones not at all
    by_month = {i["month"]: i for i in g["items"]}
    assert by_month["2026-06"]["green_program_wh"] == by_month["2026-06"]["import_wh"] > 0
    assert by_month["2026-05"]["green_program_wh"] == 0
    factors = whatif.green(shard, "C0000004", {"grid_co2_g_per_kwh": 400, "green_programs": {}}, AS_OF)
    assert factors["green_program_wh"] == 0
    assert factors["avoided_co2_g"] == sum(round_half_up_div(r["generation_wh"] * 400, 1000) for r in g["items"])


def test_green_sizes_unknown_solar_from_export(shard):
    rec = shard.record("C0000004")
    kw = rec["attributes"].pop("solar_kw_dc")
    try:
        g = whatif.green(shard, "C0000004", None, AS_OF)
    finally:
        rec["attributes"]["solar_kw_dc"] = kw
    assert g["solar_kw_source"] == "estimated from export" and g["solar_kw_dc"] > 0
    assert g["generation_wh"] >= g["export_wh"]  # the lower-bound size still explains all the export


def test_green_factors_checked():
    with pytest.raises(InvalidInput) as e:
        whatif.green(make_shard(1), "C0000005", {"grid_co2_g_per_kwh": -1}, AS_OF)
    assert e.value.field == "factors.grid_co2_g_per_kwh"
