"""Reconciliation kernel: outcome, differences and per-line report equal the plain reference."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput
from kernels import reconcile as rec
from kernels.reconcile import LINE_STATUSES, OUTCOMES, reconcile_lines
from reference_kernels import reconcile

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
codes = st.one_of(st.integers(0, 4), st.sampled_from([INT32_MIN, -1, INT32_MAX]))
amounts = st.integers(-500, 500)


@st.composite
def runs(draw, max_bills=8):
    """A bill run: computed lines, legacy lines derived from them with slips, the legacy bills that exist."""
    n_bills = draw(st.integers(0, max_bills))
    if n_bills == 0:
        return 0, [], [], [], 0
    bill = st.integers(0, n_bills - 1)
    present = draw(st.lists(st.booleans(), min_size=n_bills, max_size=n_bills))
    comp = draw(st.lists(st.tuples(bill, codes, amounts), max_size=30))
    legacy = []
    for b, code, amount in comp:
        if not present[b]:
            continue
        slip = draw(st.sampled_from(["same", "same", "same", "off", "dropped", "twice"]))
        if slip == "same":
            legacy.append((b, code, amount))
        elif slip == "off":
            legacy.append((b, code, amount + draw(st.integers(-5, 5))))
        elif slip == "twice":  # the same code printed as two lines that add up
            part = draw(amounts)
            legacy += [(b, code, part), (b, code, amount - part)]
    extra = draw(st.lists(st.tuples(bill, codes, amounts), max_size=5))
    legacy += [line for line in extra if present[line[0]]]
    order = draw(st.permutations(range(len(legacy))))
    legacy = [legacy[i] for i in order]
    tolerance = draw(st.integers(0, 3))
    return n_bills, present, comp, legacy, tolerance


def _columns(lines):
    return (np.array([b for b, _, _ in lines], dtype=np.int64),
            np.array([c for _, c, _ in lines], dtype=np.int32),
            np.array([a for _, _, a in lines], dtype=np.int64))


def _run(n_bills, present, comp, legacy, tolerance):
    return reconcile_lines(*_columns(comp), *_columns(legacy), n_bills, np.array(present, dtype=bool),
                           tolerance_cents=tolerance)


def _pairs(r):
    return list(zip(r.line_bill.tolist(), r.line_code.tolist(), r.line_computed.tolist(), r.line_legacy.tolist(),
                    r.line_status.tolist()))


def _assert_same(r, q):
    for name in ("outcome", "diff_cents", "line_bill", "line_code", "line_computed", "line_legacy", "line_status"):
        a, b = getattr(r, name), getattr(q, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


@settings(max_examples=300)
@given(runs())
def test_reconciliation_equals_reference(run):
    n_bills, present, comp, legacy, tolerance = run
    r = _run(*run)
    outcome, diff, pairs = reconcile(comp, legacy, n_bills, present, tolerance)
    assert r.outcome.dtype == np.int8 and r.diff_cents.dtype == np.int64
    assert r.line_code.dtype == np.int32 and r.line_status.dtype == np.int8
    assert r.outcome.tolist() == outcome
    assert r.diff_cents.tolist() == diff
    assert _pairs(r) == pairs
    assert r.counts() == {name: outcome.count(i) for i, name in enumerate(OUTCOMES)}
    assert r.total_diff_cents() == sum(diff)
    assert r.held_bills().tolist() == [b for b in range(n_bills) if outcome[b] != 0]


@settings(max_examples=100)
@given(runs(), st.randoms(use_true_random=False))
def test_line_order_does_not_matter(run, rnd):
    n_bills, present, comp, legacy, tolerance = run
    comp2, legacy2 = list(comp), list(legacy)
    rnd.shuffle(comp2)
    rnd.shuffle(legacy2)
    _assert_same(_run(n_bills, present, comp2, legacy2, tolerance), _run(*run))


@settings(max_examples=100)
@given(runs(), st.integers(0, 8))
def test_sharded_by_bill_equals_one_run(run, cut):
    """Shards reconcile their own bills; concatenating their results gives the whole run's."""
    n_bills, present, comp, legacy, tolerance = run
    cut = min(cut, n_bills)
    whole = _run(*run)
    shards = []
    for lo, hi in ((0, cut), (cut, n_bills)):
        def local(lines):
            return [(b - lo, c, a) for b, c, a in lines if lo <= b < hi]
        shards.append((lo, _run(hi - lo, present[lo:hi], local(comp), local(legacy), tolerance)))
    np.testing.assert_array_equal(np.concatenate([r.outcome for _, r in shards]), whole.outcome)
    np.testing.assert_array_equal(np.concatenate([r.diff_cents for _, r in shards]), whole.diff_cents)
    np.testing.assert_array_equal(np.concatenate([r.line_bill + lo for lo, r in shards]), whole.line_bill)
    for name in ("line_code", "line_computed", "line_legacy", "line_status"):
        np.testing.assert_array_equal(np.concatenate([getattr(r, name) for _, r in shards]), getattr(whole, name))
    assert {name: sum(r.counts()[name] for _, r in shards) for name in OUTCOMES} == whole.counts()


@settings(max_examples=50)
@given(runs())
def test_read_only_and_non_contiguous_input(run):
    n_bills, present, comp, legacy, tolerance = run

    def strided(lines):
        cols = []
        for col in _columns(lines):
            wide = np.repeat(col, 2)
            wide.flags.writeable = False
            cols.append(wide[::2])
        return cols
    flags = np.repeat(np.array(present, dtype=bool), 2)[::2]
    flags.flags.writeable = False
    r = reconcile_lines(*strided(comp), *strided(legacy), n_bills, flags, tolerance_cents=tolerance)
    _assert_same(r, _run(*run))


def test_empty_runs():
    r = reconcile_lines([], [], [], [], [], [], 0, np.zeros(0, bool))
    assert r.outcome.shape == (0,) and r.line_bill.shape == (0,)
    assert r.counts() == dict.fromkeys(OUTCOMES, 0)
    r = reconcile_lines([], [], [], [], [], [], 2, np.array([True, False]))
    assert r.outcome.tolist() == [0, 3] and r.diff_cents.tolist() == [0, 0]


def test_tolerance_is_inclusive():
    for tolerance, expected in ((2, "match"), (1, "amount_mismatch")):
        r = reconcile_lines([0], [1], [1000], [0], [1], [1002], 1, np.array([True]), tolerance_cents=tolerance)
        assert OUTCOMES[r.outcome[0]] == expected
        assert r.diff_cents.tolist() == [2]  # the true gap, tolerated or not
        assert LINE_STATUSES[r.line_status[0]] == ("equal" if expected == "match" else "amount_differs")


def test_outcome_precedence_per_bill():
    # bill 0: one line differs and one is missing -> missing_line; bill 1: no legacy bill -> missing_bill;
    # bill 2: a zero-cent line on one side only is still a missing line; bill 3: equal after summing two lines.
    r = reconcile_lines(
        comp_bill=[0, 0, 1, 2, 2, 3], comp_code=[1, 2, 1, 1, 9, 4], comp_amount=[10, 20, 30, 40, 0, 50],
        legacy_bill=[0, 2, 3, 3], legacy_code=[1, 1, 4, 4], legacy_amount=[11, 40, 20, 30],
        n_bills=4, legacy_present=np.array([True, False, True, True]))
    assert [OUTCOMES[o] for o in r.outcome] == ["missing_line", "missing_bill", "missing_line", "match"]
    assert r.diff_cents.tolist() == [21, 30, 0, 0]
    assert [LINE_STATUSES[s] for s in r.line_status] == ["amount_differs", "computed_only", "computed_only",
                                                         "equal", "computed_only", "equal"]


@settings(max_examples=100)
@given(st.integers(1, 4), st.lists(st.tuples(st.integers(0, 3), st.one_of(st.integers(0, 9), codes)),
                                   min_size=1, max_size=300))
def test_line_ordering_equals_lexsort(n_bills, lines):
    """The O(n) ordering (counting sort by bill, then insertion or heap sort by code) orders like lexsort.

    Up to 300 lines over at most 4 bills, so a bill often holds more than 32 lines (the heap sort path).
    """
    bill = np.array([min(b, n_bills - 1) for b, _ in lines], dtype=np.int64)
    code = np.array([c for _, c in lines], dtype=np.int32)
    amount = np.arange(bill.size, dtype=np.int64)
    got_bill, got_code, got_amount = rec._sorted_side(bill, code, amount, n_bills)
    order = np.lexsort((code, bill))
    np.testing.assert_array_equal(got_bill, bill[order])
    np.testing.assert_array_equal(got_code, code[order])
    assert sorted(got_amount.tolist()) == amount.tolist()  # a permutation of the lines
    np.testing.assert_array_equal(bill[got_amount], got_bill)  # that carries each line's amount along
    np.testing.assert_array_equal(code[got_amount], got_code)


def test_codes_held_as_int64_are_accepted_when_they_fit():
    r = reconcile_lines(np.array([0]), np.array([7], dtype=np.int64), [5], [0], [7], [5], 1, np.array([True]))
    assert r.outcome.tolist() == [0]


_OK = dict(comp_bill=[0], comp_code=[1], comp_amount=[5], legacy_bill=[0], legacy_code=[1], legacy_amount=[5],
           n_bills=1, legacy_present=np.array([True]))


@pytest.mark.parametrize(("change", "field"), [
    ({"comp_bill": [1]}, "comp_bill"),
    ({"legacy_bill": [-1]}, "legacy_bill"),
    ({"comp_amount": [5, 6]}, "comp_amount"),
    ({"legacy_code": [1, 2]}, "legacy_amount"),
    ({"comp_amount": np.array([5.0])}, "comp_amount"),
    ({"legacy_code": np.array([2**31])}, "legacy_code"),
    ({"legacy_present": np.array([1])}, "legacy_present"),
    ({"legacy_present": np.array([True, True])}, "legacy_present"),
    ({"legacy_present": np.array([False])}, "legacy_present"),  # legacy lines on a bill with no legacy bill
    ({"n_bills": -1, "legacy_present": np.zeros(0, bool)}, "n_bills"),
    ({"tolerance_cents": -1}, "tolerance_cents"),
    ({"tolerance_cents": 0.5}, "tolerance_cents"),
    ({"comp_amount": [2**62], "legacy_amount": [2**62]}, "comp_amount"),
])
def test_invalid_input_names_the_field(change, field):
    with pytest.raises(InvalidInput) as err:
        reconcile_lines(**{**_OK, **change})
    assert err.value.field == field
