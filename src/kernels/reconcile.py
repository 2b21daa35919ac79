"""Reconciliation: every computed bill against the legacy bill of the same account and period (DOMAIN §4).

Bills and codes arrive as dense integers (bill index 0..n_bills-1, code ids from one dictionary shared by both
sides) so a whole bill run is compared by one Cython merge. Rules, as a billing team reads them:

- Lines are compared by code; repeated lines of one code on one side of a bill are summed first.
- A pair whose ``|computed - legacy| <= tolerance_cents`` is equal; a code on one side only is a missing line,
  whatever its amount (a zero-cent line that one side prints and the other drops is still a difference in the
  bill's layout).
- A bill's outcome takes the most severe of its lines: missing_bill > missing_line > amount_mismatch > match.
  A bill with no legacy bill is missing_bill; its computed lines are reported as computed only.
- ``diff_cents`` is the exact sum of ``|computed - legacy|`` over the bill's pairs, tolerated differences
  included, so the run total is the true size of the gap between the two billers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels import errors
from kernels.validation import Status, check_array, check_scalar, raise_for_status, status_where
from kernels import _reconcile

__all__ = ["OUTCOMES", "LINE_STATUSES", "Reconciliation", "reconcile_lines"]

OUTCOMES = ("match", "amount_mismatch", "missing_line", "missing_bill")  # index = outcome code (int8)
LINE_STATUSES = ("equal", "amount_differs", "computed_only", "legacy_only")  # index = line_status (int8)
_INT64_LIMIT = 2**63 - 1


@dataclass(frozen=True)
class Reconciliation:
    """Outcome per bill and the compared (bill, code) pairs behind it, pairs sorted by (bill, code)."""

    outcome: np.ndarray        # int8 (n_bills,), index into OUTCOMES
    diff_cents: np.ndarray     # int64 (n_bills,), sum over the bill's pairs of |computed - legacy|
    line_bill: np.ndarray      # int64 (p,)
    line_code: np.ndarray      # int32 (p,)
    line_computed: np.ndarray  # int64 (p,) cents, 0 when legacy only
    line_legacy: np.ndarray    # int64 (p,) cents, 0 when computed only
    line_status: np.ndarray    # int8 (p,), index into LINE_STATUSES

    def counts(self) -> dict[str, int]:
        """Bills per outcome, every outcome present (zero included)."""
        per_code = np.bincount(self.outcome.astype(np.intp), minlength=len(OUTCOMES))
        return {name: int(n) for name, n in zip(OUTCOMES, per_code)}

    def total_diff_cents(self) -> int:
        """Sum of absolute differences over the whole run, in cents."""
        return int(self.diff_cents.sum())

    def held_bills(self) -> np.ndarray:
        """Indices of the bills that do not match (they are held, not sent), ascending, int64."""
        return np.flatnonzero(self.outcome != 0).astype(np.int64)


def _abs_bound(amount: np.ndarray) -> int:
    """Largest absolute value in ``amount`` as a Python int (no int64 overflow on INT64_MIN)."""
    if amount.size == 0:
        return 0
    return max(-int(amount.min()), int(amount.max()))


def _sorted_side(bill: np.ndarray, code: np.ndarray, amount: np.ndarray, n_bills: int):
    """The side's lines in (bill, code) order; untouched (no copy) when already so, as the bill kernel emits them."""
    if _reconcile.lines_sorted(bill, code):
        return bill, code, amount
    starts = np.empty(n_bills + 1, dtype=np.int64)
    out = np.empty_like(bill), np.empty_like(code), np.empty_like(amount)
    _reconcile.order_lines(bill, code, amount, starts, *out)
    return out


def reconcile_lines(comp_bill, comp_code, comp_amount, legacy_bill, legacy_code, legacy_amount,
                    n_bills: int, legacy_present, tolerance_cents: int = 0) -> Reconciliation:
    """Compare computed and legacy bills line by line by code.

    Parameters
    ----------
    comp_bill, legacy_bill : ndarray of int64, shape (nc,) and (nl,)
        Bill index of each line, ``0 <= bill < n_bills``, any order.
    comp_code, legacy_code : ndarray of int32, shape (nc,) and (nl,)
        Line code ids from one dictionary shared by both sides.
    comp_amount, legacy_amount : ndarray of int64, shape (nc,) and (nl,)
        Line amounts in cents.
    n_bills : int
        Number of computed bills in the run.
    legacy_present : ndarray of bool, shape (n_bills,)
        Whether the system of record has a bill for the same account and period.
    tolerance_cents : int, default 0
        A pair whose amounts differ by at most this many cents counts as equal.

    Returns
    -------
    Reconciliation
        ``outcome`` and ``diff_cents`` per bill, and one row per compared (bill, code) pair.

    Raises
    ------
    InvalidInput
        On a wrong dtype, shape or length, a bill index out of range, legacy lines on a bill marked as
        having no legacy bill, a negative tolerance, or amounts whose sums could overflow int64.
    """
    comp_bill = check_array(comp_bill, "comp_bill", np.int64)
    comp_code = check_array(comp_code, "comp_code", np.int32)
    comp_amount = check_array(comp_amount, "comp_amount", np.int64)
    legacy_bill = check_array(legacy_bill, "legacy_bill", np.int64)
    legacy_code = check_array(legacy_code, "legacy_code", np.int32)
    legacy_amount = check_array(legacy_amount, "legacy_amount", np.int64)
    present = np.asarray(legacy_present)
    if present.dtype != np.bool_ or present.ndim != 1:
        raise errors.InvalidInput(f"legacy_present must be a 1-D bool array, got {present.ndim}-D {present.dtype}",
                           field="legacy_present")
    present = np.ascontiguousarray(present)

    for side, arrays in (("comp", (comp_bill, comp_code, comp_amount)),
                         ("legacy", (legacy_bill, legacy_code, legacy_amount))):
        lengths = {a.shape[0] for a in arrays}
        if len(lengths) != 1:
            raise errors.InvalidInput(f"{side}_bill, {side}_code and {side}_amount must have the same length, got "
                               f"{[a.shape[0] for a in arrays]}", field=f"{side}_amount")
    n_bills = check_scalar(n_bills, "n_bills", min_val=0)
    if present.shape[0] != n_bills:
        raise errors.InvalidInput(f"legacy_present must have n_bills ({n_bills}) entries, got {present.shape[0]}",
                           field="legacy_present")
    for name, bill in (("comp_bill", comp_bill), ("legacy_bill", legacy_bill)):
        if bill.size and (int(bill.min()) < 0 or int(bill.max()) >= n_bills):
            raise errors.InvalidInput(f"{name} must hold bill indices in [0, {n_bills}), got values in "
                               f"[{int(bill.min())}, {int(bill.max())}]", field=name)
    tolerance_cents = check_scalar(tolerance_cents, "tolerance_cents", min_val=0, max_val=_INT64_LIMIT)
    # Every running sum in the kernel is bounded by the sum of all |amounts|: check that bound fits in int64.
    bound = _abs_bound(comp_amount) * comp_amount.size + _abs_bound(legacy_amount) * legacy_amount.size
    if bound > _INT64_LIMIT:
        exact = float(np.abs(comp_amount.astype(np.float64)).sum() + np.abs(legacy_amount.astype(np.float64)).sum())
        if exact >= 2**62:  # float rounding is far below the 2**62 margin
            raise errors.InvalidInput("line amounts are too large to sum exactly in int64 cents", field="comp_amount")

    comp_bill, comp_code, comp_amount = _sorted_side(comp_bill, comp_code, comp_amount, n_bills)
    legacy_bill, legacy_code, legacy_amount = _sorted_side(legacy_bill, legacy_code, legacy_amount, n_bills)

    n_pairs = _reconcile.count_pairs_sorted(comp_bill, comp_code, legacy_bill, legacy_code)
    outcome = np.empty(n_bills, dtype=np.int8)
    diff_cents = np.empty(n_bills, dtype=np.int64)
    line_bill = np.empty(n_pairs, dtype=np.int64)
    line_code = np.empty(n_pairs, dtype=np.int32)
    line_computed = np.empty(n_pairs, dtype=np.int64)
    line_legacy = np.empty(n_pairs, dtype=np.int64)
    line_status = np.empty(n_pairs, dtype=np.int8)
    where = status_where()
    status = _reconcile.reconcile_sorted(comp_bill, comp_code, comp_amount, legacy_bill, legacy_code,
                                         legacy_amount, present.view(np.uint8), outcome, diff_cents, line_bill,
                                         line_code, line_computed, line_legacy, line_status, where,
                                         int(tolerance_cents))
    raise_for_status(status, where, {Status.LEGACY_WITHOUT_BILL: lambda bill: errors.InvalidInput(
        f"bill {bill} has legacy lines but legacy_present is False", field="legacy_present")})
    return Reconciliation(outcome, diff_cents, line_bill, line_code, line_computed, line_legacy, line_status)
