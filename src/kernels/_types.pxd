# Shared C types and the one rounding rule of contextgrid's kernels (DOMAIN.md section 3).
#
# Money is integers: energy in Wh, demand in W, rates in micro-dollars per kWh (per kW, per month, per day),
# products in nano-dollars (Wh x micro-$/kWh = 1e-9 $), line amounts in cents. Every division that rounds goes
# through ``round_half_up_div`` (or its 128-bit twin ``round_half_up_div128`` for products that can exceed
# int64): one rule, everywhere.
#
# The rule is "half up" as utilities and Python's ``decimal.ROUND_HALF_UP`` mean it: ties round away from zero,
# so the rounding of a credit is the mirror image of the rounding of the same charge
# (-2.5 cents -> -3 cents, 2.5 -> 3). C's ``/`` truncates towards zero, so the quotient is corrected by one
# (in the direction of the sign) when twice the remainder reaches the divisor.
cimport cython
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint64_t

# GCC/Clang's 128-bit integer, for the few products that can exceed 2**63 (pooled tier split:
# Wh x Wh x micro-$/kWh). Declared as an extern alias so Cython emits ``__int128`` and lets C do the arithmetic.
cdef extern from *:
    ctypedef long long int128_t "__int128"

ctypedef fused usage_t:
    int32_t
    int64_t

# The one status convention of the kernels: a kernel that can fail on its data returns one of these codes and
# writes the offending index (row, or bill) into its ``where`` OUT argument (shape (1,)); the wrapper turns a
# code other than STATUS_OK into an error through ``kernels.validation.raise_for_status``. Keep these values
# equal to ``kernels.validation.Status`` (tests/test_kernel_status.py holds them equal).
cdef enum:
    STATUS_OK = 0
    STATUS_BAD_IMPORT = 1           # a negative or >= 2**31 import value in row ``where``
    STATUS_BAD_EXPORT = 2           # the same for export
    STATUS_OVERFLOW = 3             # an int64 sum or count would overflow at row ``where``
    STATUS_LEGACY_WITHOUT_BILL = 4  # bill ``where`` has legacy lines but is marked as having no legacy bill

# Nano-dollars per cent: a line's nano-dollar amount is rounded to cents by round_half_up_div(nano, NANO_PER_CENT).
cdef enum:
    NANO_PER_CENT = 10000000


@cython.cdivision(True)
cdef inline int64_t round_half_up_div(int64_t num, int64_t den) noexcept nogil:
    """``num / den`` rounded half away from zero; ``den > 0`` and ``den < 2**62``."""
    cdef int64_t q = num // den  # cdivision: truncates towards zero
    cdef int64_t r = num - q * den
    if r >= 0:
        if 2 * r >= den:
            q += 1
    else:
        if -2 * r >= den:
            q -= 1
    return q


@cython.cdivision(True)
cdef inline int128_t round_half_up_div128(int128_t num, int128_t den) noexcept nogil:
    """``round_half_up_div`` for 128-bit products; ``den > 0`` and ``den < 2**126``.

    Falls through to the 64-bit helper when both fit (the common case: 128-bit division is a libgcc call).
    """
    cdef int128_t q
    cdef int128_t r
    cdef int128_t lim = (<int128_t>1) << 62
    if -lim < num < lim and den < lim:
        return round_half_up_div(<int64_t>num, <int64_t>den)
    q = num // den
    r = num - q * den
    if r >= 0:
        if 2 * r >= den:
            q += 1
    else:
        if -2 * r >= den:
            q -= 1
    return q
