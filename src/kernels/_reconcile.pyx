"""Computed bills against legacy bills, line by line by code (DOMAIN section 4).

# Design:
# Each side is a flat table of lines (bill index, code id, amount in cents) put in (bill, code) order, so the
# comparison is one merge of two sorted streams: no hashing, no per-bill Python. Repeated (bill, code) lines
# on one side are summed first, so a pair is compared once.
# Lines usually arrive grouped by bill (the bill kernel emits them so) but not by code within a bill;
# ``order_lines`` orders any input in O(n): a counting sort by bill (bills are dense indices) straight into
# the outputs, then each bill's few lines by code (insertion sort; heap sort for a bill with many lines, so
# no input is quadratic). On 8M lines in random order that is about 0.5 s against 2.3 s for numpy's stable
# argsort alone; grouped by bill, about 0.15 s.
# Outcome codes are ordered by precedence (match 0 < amount_mismatch 1 < missing_line 2 < missing_bill 3), so
# a bill's outcome is the maximum over its lines, initialised to missing_bill when there is no legacy bill.
# Amounts are integer cents and the wrapper has checked that no sum can overflow. The one data-dependent
# failure, legacy lines on a bill marked as having no legacy bill, is found during the merge and returned as
# a status.
"""
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t

from kernels._types cimport STATUS_LEGACY_WITHOUT_BILL, STATUS_OK

# line_status codes (see reconcile.LINE_STATUSES)
cdef enum:
    EQUAL = 0
    DIFFERS = 1
    COMPUTED_ONLY = 2
    LEGACY_ONLY = 3

cdef enum:
    MATCH = 0
    AMOUNT_MISMATCH = 1
    MISSING_LINE = 2
    MISSING_BILL = 3


cdef inline int _cmp(int64_t bill_a, int32_t code_a, int64_t bill_b, int32_t code_b) noexcept nogil:
    if bill_a != bill_b:
        return -1 if bill_a < bill_b else 1
    if code_a != code_b:
        return -1 if code_a < code_b else 1
    return 0


cdef enum:
    INSERTION_SORT_MAX = 32


cdef inline void _swap(int32_t* code, int64_t* amount, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef int32_t c = code[i]
    cdef int64_t a = amount[i]
    code[i] = code[j]
    amount[i] = amount[j]
    code[j] = c
    amount[j] = a


cdef inline void _sift_down(int32_t* code, int64_t* amount, Py_ssize_t root, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t child
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and code[child] < code[child + 1]:
            child += 1
        if code[root] >= code[child]:
            return
        _swap(code, amount, root, child)
        root = child


cdef void _sort_by_code(int32_t* code, int64_t* amount, Py_ssize_t n) noexcept nogil:
    """Sort one bill's lines ``code[0:n]`` (amounts carried along); equal codes may come in any order, since
    their amounts are summed."""
    cdef Py_ssize_t i, j
    cdef int32_t c
    cdef int64_t a
    if n <= INSERTION_SORT_MAX:
        for i in range(1, n):
            c = code[i]
            a = amount[i]
            j = i
            while j > 0 and code[j - 1] > c:
                code[j] = code[j - 1]
                amount[j] = amount[j - 1]
                j -= 1
            code[j] = c
            amount[j] = a
        return
    for i in range(n // 2 - 1, -1, -1):
        _sift_down(code, amount, i, n)
    for i in range(n - 1, 0, -1):
        _swap(code, amount, 0, i)
        _sift_down(code, amount, 0, i)


def lines_sorted(
    const int64_t[::1] bill,      # IN (n,) bill index of each line
    const int32_t[::1] code,      # IN (n,) code id of each line
) -> bool:
    """Whether the lines are already in (bill, code) order, repeats allowed."""
    cdef Py_ssize_t n = bill.shape[0]
    cdef Py_ssize_t i
    cdef bint ordered = True
    with nogil:
        for i in range(1, n):
            if bill[i] < bill[i - 1] or (bill[i] == bill[i - 1] and code[i] < code[i - 1]):
                ordered = False
                break
    return ordered


def order_lines(
    const int64_t[::1] bill,      # IN  (n,) bill index of each line, 0 <= bill < n_bills
    const int32_t[::1] code,      # IN  (n,) code id of each line
    const int64_t[::1] amount,    # IN  (n,) cents
    int64_t[::1] starts,          # OUT (n_bills + 1,) scratch: lines per bill, then where each bill's lines end
    int64_t[::1] out_bill,        # OUT (n,) the lines in (bill, code) order
    int32_t[::1] out_code,        # OUT (n,)
    int64_t[::1] out_amount,      # OUT (n,)
) -> None:
    """Counting sort by bill straight into the outputs, then each bill's lines sorted in place by code.

    Lines are moved, not indexed: the per-bill sorts touch a few contiguous entries and nothing is gathered
    afterwards, which matters when the input is in no order at all (every access would be a cache miss).
    """
    cdef Py_ssize_t n = bill.shape[0]
    cdef Py_ssize_t n_bills = starts.shape[0] - 1
    cdef Py_ssize_t i, b
    cdef int64_t lo = 0, hi, at
    if n == 0:
        return
    with nogil:
        for b in range(n_bills + 1):
            starts[b] = 0
        for i in range(n):
            starts[bill[i] + 1] += 1
        for b in range(n_bills):
            starts[b + 1] += starts[b]
        # Scatter, using starts[b] as bill b's cursor: afterwards starts[b] is where bill b's lines end.
        for i in range(n):
            b = bill[i]
            at = starts[b]
            out_bill[at] = b
            out_code[at] = code[i]
            out_amount[at] = amount[i]
            starts[b] = at + 1
        for b in range(n_bills):
            hi = starts[b]
            if hi - lo > 1:
                _sort_by_code(&out_code[lo], &out_amount[lo], hi - lo)
            lo = hi


def count_pairs_sorted(
    const int64_t[::1] comp_bill,     # IN (nc,) sorted by (bill, code)
    const int32_t[::1] comp_code,     # IN (nc,)
    const int64_t[::1] legacy_bill,   # IN (nl,) sorted by (bill, code)
    const int32_t[::1] legacy_code,   # IN (nl,)
) -> int:
    """Number of distinct (bill, code) pairs over both sides: the length of the per-line report."""
    cdef Py_ssize_t nc = comp_bill.shape[0], nl = legacy_bill.shape[0]
    cdef Py_ssize_t i = 0, j = 0, pairs = 0
    cdef int c
    cdef int64_t bill
    cdef int32_t code
    with nogil:
        while i < nc or j < nl:
            if j >= nl:
                c = -1
            elif i >= nc:
                c = 1
            else:
                c = _cmp(comp_bill[i], comp_code[i], legacy_bill[j], legacy_code[j])
            if c <= 0:
                bill = comp_bill[i]
                code = comp_code[i]
            else:
                bill = legacy_bill[j]
                code = legacy_code[j]
            while i < nc and comp_bill[i] == bill and comp_code[i] == code:
                i += 1
            while j < nl and legacy_bill[j] == bill and legacy_code[j] == code:
                j += 1
            pairs += 1
    return pairs


def reconcile_sorted(
    const int64_t[::1] comp_bill,       # IN  (nc,) bill index of each computed line, sorted by (bill, code)
    const int32_t[::1] comp_code,       # IN  (nc,) code id
    const int64_t[::1] comp_amount,     # IN  (nc,) cents
    const int64_t[::1] legacy_bill,     # IN  (nl,) bill index of each legacy line, sorted by (bill, code)
    const int32_t[::1] legacy_code,     # IN  (nl,) code id
    const int64_t[::1] legacy_amount,   # IN  (nl,) cents
    const uint8_t[::1] legacy_present,  # IN  (n_bills,) 1 when the bill has a legacy bill
    int8_t[::1] outcome,                # OUT (n_bills,) outcome code
    int64_t[::1] diff_cents,            # OUT (n_bills,) sum over the bill's pairs of |computed - legacy|
    int64_t[::1] line_bill,             # OUT (n_pairs,) from count_pairs_sorted
    int32_t[::1] line_code,             # OUT (n_pairs,)
    int64_t[::1] line_computed,         # OUT (n_pairs,) cents, 0 when the pair is legacy only
    int64_t[::1] line_legacy,           # OUT (n_pairs,) cents, 0 when the pair is computed only
    int8_t[::1] line_status,            # OUT (n_pairs,) line status code
    int64_t[::1] where,                 # OUT (1,) on STATUS_LEGACY_WITHOUT_BILL, the bill
    int64_t tolerance_cents,            # a pair with |computed - legacy| <= tolerance is equal
) -> int:
    """Compare the two sides (writing the count_pairs_sorted pairs); return a status code (_types.pxd).

    STATUS_LEGACY_WITHOUT_BILL, outputs incomplete, if bill ``where[0]`` has legacy lines but no legacy bill.
    """
    cdef Py_ssize_t nc = comp_bill.shape[0], nl = legacy_bill.shape[0], n_bills = outcome.shape[0]
    cdef Py_ssize_t i = 0, j = 0, k = 0, b
    cdef int c
    cdef int8_t status, severity
    cdef int result = STATUS_OK
    cdef int64_t bill, comp, legacy, gap
    cdef int32_t code
    cdef bint has_comp, has_legacy
    with nogil:
        for b in range(n_bills):
            outcome[b] = MATCH if legacy_present[b] else MISSING_BILL
            diff_cents[b] = 0
        while i < nc or j < nl:
            if j >= nl:
                c = -1
            elif i >= nc:
                c = 1
            else:
                c = _cmp(comp_bill[i], comp_code[i], legacy_bill[j], legacy_code[j])
            if c <= 0:
                bill = comp_bill[i]
                code = comp_code[i]
            else:
                bill = legacy_bill[j]
                code = legacy_code[j]
            comp = 0
            legacy = 0
            has_comp = c <= 0
            has_legacy = c >= 0
            while i < nc and comp_bill[i] == bill and comp_code[i] == code:
                comp += comp_amount[i]
                i += 1
            while j < nl and legacy_bill[j] == bill and legacy_code[j] == code:
                legacy += legacy_amount[j]
                j += 1
            if has_legacy and not legacy_present[bill]:
                result = STATUS_LEGACY_WITHOUT_BILL
                where[0] = bill
                break
            gap = comp - legacy
            if gap < 0:
                gap = -gap
            if has_comp and has_legacy:
                status = EQUAL if gap <= tolerance_cents else DIFFERS
                severity = MATCH if status == EQUAL else AMOUNT_MISMATCH
            else:
                status = COMPUTED_ONLY if has_comp else LEGACY_ONLY
                severity = MISSING_LINE
            line_bill[k] = bill
            line_code[k] = code
            line_computed[k] = comp
            line_legacy[k] = legacy
            line_status[k] = status
            k += 1
            diff_cents[bill] += gap
            if severity > outcome[bill]:
                outcome[bill] = severity
    return result
