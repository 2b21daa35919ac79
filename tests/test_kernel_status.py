"""The three kernels report a data-dependent failure one way: a ``Status`` code and the offending index in
``where``, turned into an error naming the field by ``kernels.validation.raise_for_status``."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

import kernels.aggregate
import kernels.billing
import kernels.reconcile
from grid.errors import InvalidInput
from kernels import _billing
from kernels.aggregate import group_partials, merge_partials
from kernels.billing import bill_intervals
from kernels.reconcile import reconcile_lines
from kernels.tariffs import compile_tariff
from kernels.validation import Status, raise_for_status, status_where

INT64_MAX = np.iinfo(np.int64).max


@pytest.fixture
def seen(monkeypatch):
    """Every (status, index) the wrappers hand to raise_for_status."""
    calls = []

    def spy(status, where, failures):
        calls.append((Status(status), int(where[0])))
        return raise_for_status(status, where, failures)

    for module in (kernels.billing, kernels.aggregate, kernels.reconcile):
        monkeypatch.setattr(module, "raise_for_status", spy)
    return calls


def test_the_kernels_codes_are_the_status_enum():
    assert {k: int(v) for k, v in _billing.STATUSES.items()} == {k: int(Status[k]) for k in _billing.STATUSES}


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bill_kernel_bad_import_row(seen, dtype):
    tariff = compile_tariff({"energyratestructure": [[{"rate": "0.25"}]], "energyweekdayschedule": [[0] * 24] * 12,
                             "energyweekendschedule": [[0] * 24] * 12}, tariff_id="flat")
    imp = np.ones((3, 24), dtype)
    imp[2, 7] = -4
    with pytest.raises(InvalidInput, match=r"\[2, 7\]") as err:
        bill_intervals(tariff, dt.date(2026, 6, 1), dt.date(2026, 6, 2), 60, imp)
    assert err.value.field == "import_wh"
    assert seen == [(Status.BAD_IMPORT, 2)]


def test_group_kernels_overflow_row(seen):
    keys, vals = np.array([5, 3, 3], np.int64), np.array([1, INT64_MAX, 1], np.int64)
    with pytest.raises(InvalidInput, match="key 3 overflows") as err:
        group_partials(keys, vals)
    assert err.value.field == "values"
    halves = [group_partials(np.array([3]), np.array([INT64_MAX])), group_partials(np.array([3]), np.array([1]))]
    with pytest.raises(InvalidInput, match="merged sum for key 3") as err:
        merge_partials(halves)
    assert err.value.field == "values"
    failed = [(s, i) for s, i in seen if s != Status.OK]  # the halves themselves are fine
    assert [s for s, _ in failed] == [Status.OVERFLOW, Status.OVERFLOW]
    assert failed[0][1] == 2  # the row whose addition overflowed


def test_reconcile_kernel_legacy_without_bill(seen):
    with pytest.raises(InvalidInput, match="bill 1 has legacy lines") as err:
        reconcile_lines(comp_bill=[0, 1], comp_code=[1, 1], comp_amount=[5, 5], legacy_bill=[0, 1],
                        legacy_code=[1, 1], legacy_amount=[5, 5], n_bills=2, legacy_present=np.array([True, False]))
    assert err.value.field == "legacy_present"
    assert seen == [(Status.LEGACY_WITHOUT_BILL, 1)]


def test_a_status_the_wrapper_does_not_expect_is_a_kernel_bug_not_bad_input():
    raise_for_status(Status.OK, status_where(), {})
    with pytest.raises(RuntimeError, match="OVERFLOW"):
        raise_for_status(Status.OVERFLOW, status_where(), {Status.BAD_IMPORT: lambda i: InvalidInput("x")})
