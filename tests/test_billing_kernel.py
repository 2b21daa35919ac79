"""The bill kernel equals the reference biller to the cent, line by line, on random tariffs and usage."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from grid import timegrid
from grid.errors import InvalidInput
from kernels.billing import BillBatch, bill_intervals, round_half_up_div
from kernels.tariffs import compile_tariff
from reference_billing import reference_bill
from strategies_billing import bill_cases, bill_periods, urdb_tariffs, usage

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_matches_reference(urdb, start, end, minutes, imp, exp, batch: BillBatch):
    for i in range(imp.shape[0]):
        ref = reference_bill(urdb, start, end, minutes, imp[i].tolist(), None if exp is None else exp[i].tolist())
        assert batch.codes == list(ref["lines"]), "the kernel and the reference lay out different lines"
        got = {c: (int(batch.quantity[i, j]), int(batch.amount_cents[i, j])) for j, c in enumerate(batch.codes)}
        assert got == ref["lines"], f"row {i}"
        assert int(batch.total_cents[i]) == ref["total_cents"]
        assert int(batch.total_cents[i]) == int(batch.amount_cents[i].sum())


@settings(max_examples=120, **SETTINGS)
@given(bill_cases())
def test_kernel_equals_reference(case):
    urdb, start, end, minutes, imp, exp = case
    tariff = compile_tariff(urdb, tariff_id="hyp")
    batch = bill_intervals(tariff, start, end, minutes, imp, exp)
    assert_matches_reference(urdb, start, end, minutes, imp, exp, batch)


@settings(max_examples=25, **SETTINGS)
@given(bill_cases(scope="pooled", nem="net"))
def test_pooled_net_metering_equals_reference(case):
    urdb, start, end, minutes, imp, exp = case
    batch = bill_intervals(compile_tariff(urdb), start, end, minutes, imp, exp)
    assert_matches_reference(urdb, start, end, minutes, imp, exp, batch)


@settings(max_examples=25, **SETTINGS)
@given(bill_cases(scope="period", nem="sell_rate"))
def test_period_scope_sell_rate_equals_reference(case):
    urdb, start, end, minutes, imp, exp = case
    batch = bill_intervals(compile_tariff(urdb), start, end, minutes, imp, exp)
    assert_matches_reference(urdb, start, end, minutes, imp, exp, batch)


@settings(max_examples=30, **SETTINGS)
@given(bill_cases(), st.data())
def test_batch_equals_rows_billed_one_by_one_and_sharded(case, data):
    """Sharded == unsharded: any split of the rows bills the same as the whole batch."""
    urdb, start, end, minutes, imp, exp = case
    tariff = compile_tariff(urdb)
    whole = bill_intervals(tariff, start, end, minutes, imp, exp)
    cut = data.draw(st.integers(0, imp.shape[0]))
    parts = [bill_intervals(tariff, start, end, minutes, imp[a:b], None if exp is None else exp[a:b])
             for a, b in ((0, cut), (cut, imp.shape[0]))]
    for name in ("quantity", "amount_cents", "total_cents"):
        assert np.array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))
    for i in range(imp.shape[0]):
        one = bill_intervals(tariff, start, end, minutes, imp[i], None if exp is None else exp[i])
        assert one.bill(0) == whole.bill(i)


@settings(max_examples=20, **SETTINGS)
@given(urdb_tariffs(), bill_periods(max_days=35), st.data())
def test_read_only_and_non_contiguous_input(urdb, period, data):
    start, end, minutes = period
    tariff = compile_tariff(urdb)
    n = timegrid.calendar(start, end, minutes, tariff.timezone).n
    wide = data.draw(usage(4, 2 * n))
    expected = bill_intervals(tariff, start, end, minutes, np.ascontiguousarray(wide[::2, ::2]))
    view = wide[::2, ::2]  # strided in both axes
    assert not view.flags.c_contiguous
    view.setflags(write=False)
    got = bill_intervals(tariff, start, end, minutes, view, view)
    fortran = np.asfortranarray(wide[::2, ::2])
    fortran.setflags(write=False)
    got_f = bill_intervals(tariff, start, end, minutes, fortran)
    if tariff.net_metering == "none":
        assert np.array_equal(got.amount_cents, expected.amount_cents)
    assert np.array_equal(got_f.amount_cents, expected.amount_cents)
    assert np.array_equal(got_f.quantity, expected.quantity)


def test_empty_batch_has_the_tariffs_lines_and_no_bills():
    urdb = {"energyratestructure": [[{"rate": "0.2"}]], "energyweekdayschedule": [[0] * 24] * 12,
            "energyweekendschedule": [[0] * 24] * 12, "fixedchargefirstmeter": "10"}
    tariff = compile_tariff(urdb)
    n = timegrid.calendar(dt.date(2026, 1, 1), dt.date(2026, 2, 1), 60, tariff.timezone).n
    batch = bill_intervals(tariff, dt.date(2026, 1, 1), dt.date(2026, 2, 1), 60, np.zeros((0, n), np.int32))
    assert batch.codes == ["ENERGY_P0_T0", "FIXED"]
    assert batch.quantity.shape == (0, 2) and batch.total_cents.shape == (0,)


@pytest.mark.parametrize("num,den,expected", [
    (5, 10, 1), (-5, 10, -1), (4, 10, 0), (-4, 10, 0), (15, 10, 2), (-15, 10, -2), (25, 10, 3), (-25, 10, -3),
    (1, 3, 0), (2, 3, 1), (-2, 3, -1), (0, 7, 0), (10**18, 10**7, 10**11),
    (-(10**18) - 5 * 10**6, 10**7, -(10**11) - 1),
])
def test_round_half_up_is_half_away_from_zero(num, den, expected):
    assert round_half_up_div(num, den) == expected


def test_kernel_rounds_credits_and_charges_symmetrically():
    """A half-cent charge rounds up and the same credit rounds down: the shared helper, not C truncation."""
    # 1 Wh at $5/kWh = 0.5 cent: charge 1 cent; 1 Wh exported under net metering = credit -1 cent.
    urdb = {"energyratestructure": [[{"rate": "5"}]], "energyweekdayschedule": [[0] * 24] * 12,
            "energyweekendschedule": [[0] * 24] * 12, "contextgrid": {"net_metering": "net", "timezone": "UTC"}}
    tariff = compile_tariff(urdb)
    start, end = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
    imp = np.zeros((2, 24), np.int32)
    exp = np.zeros((2, 24), np.int32)
    imp[0, 5] = 1
    exp[1, 5] = 1
    batch = bill_intervals(tariff, start, end, 60, imp, exp)
    assert batch.bill(0)["lines"] == [{"code": "ENERGY_P0_T0", "quantity": 1, "unit": "Wh", "amount_cents": 1}]
    assert batch.bill(1)["lines"] == [{"code": "NEM_CREDIT", "quantity": 1, "unit": "Wh", "amount_cents": -1}]


# ------------------------------------------------------------------------------------------------------------
# invalid usage


@pytest.fixture(scope="module")
def flat_tariff():
    return compile_tariff({"energyratestructure": [[{"rate": "0.25"}]], "energyweekdayschedule": [[0] * 24] * 12,
                           "energyweekendschedule": [[0] * 24] * 12,
                           "contextgrid": {"net_metering": "net"}}, tariff_id="flat")


def test_wrong_length_names_the_expected_length_on_a_dst_day(flat_tariff):
    # 2026-03-08 is the spring-forward Sunday in Los Angeles: 23 hourly intervals.
    day, nxt = dt.date(2026, 3, 8), dt.date(2026, 3, 9)
    bill_intervals(flat_tariff, day, nxt, 60, np.ones(23, np.int32))
    with pytest.raises(InvalidInput, match="must have 23 intervals") as err:
        bill_intervals(flat_tariff, day, nxt, 60, np.ones(24, np.int32))
    assert err.value.field == "import_wh"
    fall, after = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    bill_intervals(flat_tariff, fall, after, 60, np.ones(25, np.int64))
    with pytest.raises(InvalidInput, match="must have 100 intervals"):
        bill_intervals(flat_tariff, fall, after, 15, np.ones(96, np.int64))


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("which", ["import_wh", "export_wh"])
def test_negative_wh_is_rejected_with_its_position(flat_tariff, dtype, which):
    imp = np.ones((3, 24), dtype)
    exp = np.zeros((3, 24), dtype)
    (imp if which == "import_wh" else exp)[2, 7] = -4
    with pytest.raises(InvalidInput, match=r"\[2, 7\] = -4 Wh is negative") as err:
        bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, imp, exp)
    assert err.value.field == which


def test_absurd_int64_reading_is_rejected(flat_tariff):
    imp = np.ones(24, np.int64)
    imp[3] = 2**31
    with pytest.raises(InvalidInput, match="larger than"):
        bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, imp)


def test_negative_export_is_rejected_even_when_not_billed():
    tariff = compile_tariff({"energyratestructure": [[{"rate": "0.25"}]], "energyweekdayschedule": [[0] * 24] * 12,
                             "energyweekendschedule": [[0] * 24] * 12})
    exp = np.zeros(24, np.int32)
    exp[0] = -1
    with pytest.raises(InvalidInput) as err:
        bill_intervals(tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, np.ones(24, np.int32), exp)
    assert err.value.field == "export_wh"


@pytest.mark.parametrize("bad,match", [
    (np.ones(24, np.float64), "int32 or int64 Wh, got float64"),
    (np.ones(24, np.int16), "got int16"),
    (np.ones((1, 2, 24), np.int32), "must have shape"),
])
def test_wrong_dtype_or_shape(flat_tariff, bad, match):
    with pytest.raises(InvalidInput, match=match):
        bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, bad)


def test_export_shape_must_match(flat_tariff):
    with pytest.raises(InvalidInput, match="shape of import_wh"):
        bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, np.ones((2, 24), np.int32),
                       np.ones((1, 24), np.int32))


def test_bad_dates_and_interval(flat_tariff):
    with pytest.raises(InvalidInput) as err:
        bill_intervals(flat_tariff, dt.date(2026, 6, 2), dt.date(2026, 6, 1), 60, np.ones(24, np.int32))
    assert err.value.field == "end"
    with pytest.raises(InvalidInput) as err:
        bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 20, np.ones(72, np.int32))
    assert err.value.field == "interval_minutes"
    with pytest.raises(InvalidInput) as err:
        bill_intervals(flat_tariff, dt.datetime(2026, 6, 1), dt.date(2026, 6, 2), 60, np.ones(24, np.int32))
    assert err.value.field == "start"


def test_mixed_dtypes_bill_like_int64(flat_tariff):
    rng = np.random.default_rng(7)
    imp = rng.integers(0, 3000, (2, 24)).astype(np.int32)
    exp = rng.integers(0, 3000, (2, 24)).astype(np.int64)
    a = bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, imp, exp)
    b = bill_intervals(flat_tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, imp.astype(np.int64), exp)
    assert np.array_equal(a.amount_cents, b.amount_cents)


# ------------------------------------------------------------------------------------------------------------
# trace


@settings(max_examples=20, **SETTINGS)
@given(bill_cases())
def test_trace_adds_up_to_the_bill(case):
    urdb, start, end, minutes, imp, exp = case
    tariff = compile_tariff(urdb)
    assume(tariff.n_periods or tariff.n_demand_periods or tariff.n_flat_periods)
    batch = bill_intervals(tariff, start, end, minutes, imp, exp)
    tr = batch.trace(0)
    if tariff.n_periods:
        assert sum(p["import_wh"] for s in tr["segments"] for p in s["periods"]) == int(imp[0].sum())
    energy = sum(e["amount_cents"] for e in tr["energy"])
    assert energy == sum(line["amount_cents"] for line in tr["lines"] if line["code"].startswith("ENERGY_"))
    cal = timegrid.calendar(start, end, minutes, tariff.timezone)
    for peak in tr["demand"] + tr["flat_demand"]:
        k = peak["interval"]
        assert peak["peak_w"] == int(imp[0, k]) * (60 // minutes)
        assert peak["start_utc"] == dt.datetime.fromtimestamp(int(cal.utc_start[k]), dt.timezone.utc).isoformat()
    for peak in tr["demand"]:
        # the first interval of the bill in that demand period with the largest reading
        p = peak["period"]
        sched = np.where((cal.weekday >= 5) | np.isin(cal.date_ordinal, [
            dt.date.fromisoformat(h).toordinal() for h in urdb["contextgrid"].get("holidays") or []]),
            tariff.demand_weekend[cal.month - 1, cal.hour], tariff.demand_weekday[cal.month - 1, cal.hour])
        in_p = np.flatnonzero(sched == p)
        assert peak["interval"] == int(in_p[np.argmax(imp[0, in_p])])
