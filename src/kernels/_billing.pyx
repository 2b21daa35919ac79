"""The bill kernel: every line of DOMAIN.md section 3 for a batch of usage rows under one tariff and period.

# Design:
# One call bills B rows (service points) for the same tariff and the same period [start, end). Everything that
# depends only on tariff x calendar is computed once by the wrapper (kernels/billing.py) and arrives here as a
# "plan": the period's intervals are cut into R *runs* of consecutive intervals that share one energy slot
# (calendar-month segment s x TOU period p -> slot s*P + p), one TOU demand period and one flat demand period.
# TOU periods change a few times a day, so a month of hourly data is ~100-200 runs.
#
# Pass 1 (streaming, the only pass over the usage): for each row, for each run, one tight loop sums the run's Wh
# into the slot's accumulator and, when the run carries demand, takes its maximum; an OR of every value catches
# negative (or absurd, >= 2**31 Wh) readings without a separate validation pass. Each usage value is read
# exactly once; the accumulators (slot energies, peaks) are a few hundred bytes and stay in L1.
#
# Pass 2 (per row, O(lines)): net metering, tiers (pooled or per period) with the segment's prorated bounds,
# demand tiers, fixed, riders, the credit, then every line rounded half-up to the cent, the minimum and taxes
# on the rounded subtotal. Line amounts are accumulated in nano-dollars in 128-bit integers (pooled tier
# splits multiply Wh x Wh x micro-$), then rounded once per line by the shared helper.
#
# Outputs are written per row, so rows are independent: a batch equals its rows billed one by one.
"""
cimport cython
from libc.stdint cimport int32_t, int64_t

from kernels._types cimport (
    NANO_PER_CENT,
    int128_t,
    round_half_up_div128,
    usage_t,
)

cdef enum:
    MAX_LINES = 256  # kernels/tariffs.py MAX_LINES: a tariff never has more bill lines

# status codes returned to the wrapper
cdef enum:
    _OK = 0
    _BAD_IMPORT = 1  # a negative or >= 2**31 import value in row `bad_row`
    _BAD_EXPORT = 2
OK = _OK
BAD_IMPORT = _BAD_IMPORT
BAD_EXPORT = _BAD_EXPORT


cdef inline int64_t _fill(int64_t e, int64_t lo, int64_t hi) noexcept nogil:
    """Wh of ``e`` that falls in the tier (lo, hi]: cumulative bounds, lo <= hi."""
    if e <= lo:
        return 0
    if e < hi:
        return e - lo
    return hi - lo


cdef inline int64_t _net(int64_t imp, int64_t exp, int nem_mode) noexcept nogil:
    """Energy a period bills: import, or under ``net`` metering import less export, floored at zero."""
    if nem_mode == 1:
        if imp > exp:
            return imp - exp
        return 0
    return imp


cdef inline int64_t _sum_run(const usage_t* u, Py_ssize_t a, Py_ssize_t b, int64_t* bits) noexcept nogil:
    # Reductions kept in the input's width where they can be (OR, max) so the compiler vectorizes the loop;
    # only the sum widens to int64.
    cdef int64_t s = 0
    cdef usage_t o = 0
    cdef Py_ssize_t k
    for k in range(a, b):
        s += u[k]
        o |= u[k]
    bits[0] |= o
    return s


cdef inline int64_t _sum_max_run(const usage_t* u, Py_ssize_t a, Py_ssize_t b, int64_t* bits,
                                 int64_t* peak) noexcept nogil:
    cdef int64_t s = 0
    cdef usage_t o = 0
    cdef usage_t m = u[a]
    cdef usage_t v
    cdef Py_ssize_t k
    for k in range(a, b):
        v = u[k]
        s += v
        o |= v
    for k in range(a, b):  # a second loop over the run (now in L1) vectorizes better than one fused loop
        v = u[k]
        m = v if v > m else m
    bits[0] |= o
    peak[0] = m
    return s


cdef inline Py_ssize_t _first_at(const usage_t* u, Py_ssize_t a, Py_ssize_t b, int64_t v) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(a, b):
        if u[k] == v:
            return k
    return a


@cython.boundscheck(False)
@cython.wraparound(False)
def bill_intervals(
    const usage_t[:, ::1] import_wh,       # IN  (B, N) Wh per interval
    const usage_t[:, ::1] export_wh,       # IN  (B, N) Wh per interval, or (0, N): export not billed
    const int64_t[::1] run_start,          # IN  (R+1,) first interval of each run; run_start[R] = N
    const int32_t[::1] run_slot,           # IN  (R,) energy slot s*P + p, -1 = tariff has no energy charges
    const int32_t[::1] run_demand,         # IN  (R,) TOU demand period q, -1 = none
    const int32_t[::1] run_flat,           # IN  (R,) Q + flat demand period f, -1 = none
    const int64_t[:, ::1] slot_bound,      # IN  (S*P, T) cumulative tier bounds in Wh for the slot's segment
    const int64_t[:, ::1] pool_bound,      # IN  (S, T) pooled bounds of each segment (tier_scope pooled)
    const int32_t[::1] pool_ntiers,        # IN  (S,)
    const int32_t[::1] ntiers,             # IN  (P,)
    const int64_t[:, ::1] price,           # IN  (P, T) micro-$/kWh
    const int64_t[::1] credit_price,       # IN  (P,) micro-$/kWh credited for export (net metering)
    const int32_t[::1] energy_line,        # IN  (P,) line of (p, tier 0); tier t is energy_line[p] + t
    const int64_t[:, ::1] demand_bound,    # IN  (Q+F, Td) cumulative tier bounds in W
    const int64_t[:, ::1] demand_price,    # IN  (Q+F, Td) micro-$/kW
    const int32_t[::1] demand_ntiers,      # IN  (Q+F,)
    const int64_t[::1] rider_price,        # IN  (K,) micro-$/kWh on all import
    const int64_t[::1] tax_micro_pct,      # IN  (J,) micro-percent of the subtotal
    int64_t[:, ::1] quantity,              # OUT (B, L) Wh, W, days or months per line
    int64_t[:, ::1] amount_cents,          # OUT (B, L) each line rounded half-up to the cent
    int64_t[::1] total_cents,              # OUT (B,) sum of the rounded lines
    int64_t[:, ::1] slot_import,           # OUT (B, S*P) import Wh per slot (trace)
    int64_t[:, ::1] slot_export,           # OUT (B, S*P) export Wh per slot (trace; zeros if not billed)
    int64_t[:, ::1] peak_w,                # OUT (B, Q+F) peak demand in W per demand period (trace)
    int64_t[:, ::1] peak_at,               # OUT (B, Q+F) interval of the first peak, -1 = no interval
    # options
    int n_segments,
    int n_periods,
    int n_demand,                          # Q
    bint pooled,
    int nem_mode,                          # 0 none, 1 net, 2 sell_rate
    int64_t w_per_wh,                      # 60 / interval_minutes
    int line_demand,                       # line of DEMAND_P0, -1 = none
    int line_flat,                         # line of DEMAND_FLAT, -1 = none
    int line_fixed,                        # -1 = none
    int64_t fixed_nano,
    int64_t fixed_qty,
    int line_rider,                        # line of the first rider
    int line_nem,                          # -1 = none
    int line_min,                          # -1 = none
    int64_t min_cents,
    int64_t min_qty,
    int line_tax,                          # line of the first tax
    int64_t tax_qty,
):
    """Bill every row; returns ``(status, bad_row)``. The wrapper checks every shape and allocates outputs."""
    cdef Py_ssize_t B = import_wh.shape[0]
    cdef Py_ssize_t R = run_slot.shape[0]
    cdef Py_ssize_t L = quantity.shape[1]
    cdef Py_ssize_t SP = slot_import.shape[1]
    cdef Py_ssize_t QF = peak_w.shape[1]
    cdef Py_ssize_t K = rider_price.shape[0]
    cdef Py_ssize_t J = tax_micro_pct.shape[0]
    cdef bint has_export = export_wh.shape[0] > 0
    cdef bint has_peaks = QF > 0
    cdef int128_t line_nano[MAX_LINES]
    cdef Py_ssize_t i, r, a, b, p, t, s, q, l, k, slot, n_pre
    cdef int64_t v, mx, bits, ebits, e, x, n, big_e, fill, lo, tot_import, subtotal, cents
    cdef int64_t nem_qty
    cdef int128_t nem_nano, nano
    cdef const usage_t* row
    cdef const usage_t* xrow
    cdef int status = _OK
    cdef Py_ssize_t bad_row = -1

    # lines before MINIMUM and the taxes: rounded first, their sum is the subtotal
    n_pre = L - J - (1 if line_min >= 0 else 0)

    with nogil:
        for i in range(B):
            # ---- pass 1: stream the row once -------------------------------------------------------------
            row = &import_wh[i, 0]
            for slot in range(SP):
                slot_import[i, slot] = 0
                slot_export[i, slot] = 0
            for q in range(QF):
                peak_w[i, q] = 0
                peak_at[i, q] = -1
            bits = 0
            tot_import = 0
            for r in range(R):
                a = run_start[r]
                b = run_start[r + 1]
                if has_peaks and (run_demand[r] >= 0 or run_flat[r] >= 0):
                    e = _sum_max_run(row, a, b, &bits, &mx)
                    q = run_demand[r]
                    if q >= 0 and (mx > peak_w[i, q] or peak_at[i, q] < 0):
                        peak_w[i, q] = mx
                        peak_at[i, q] = _first_at(row, a, b, mx)
                    q = run_flat[r]
                    if q >= 0 and (mx > peak_w[i, q] or peak_at[i, q] < 0):
                        peak_w[i, q] = mx
                        peak_at[i, q] = _first_at(row, a, b, mx)
                else:
                    e = _sum_run(row, a, b, &bits)
                tot_import += e
                if run_slot[r] >= 0:
                    slot_import[i, run_slot[r]] += e
            if (bits >> 31) != 0:
                status = _BAD_IMPORT
                bad_row = i
                break
            if has_export:
                xrow = &export_wh[i, 0]
                ebits = 0
                for r in range(R):
                    e = _sum_run(xrow, run_start[r], run_start[r + 1], &ebits)
                    if run_slot[r] >= 0:
                        slot_export[i, run_slot[r]] += e
                if (ebits >> 31) != 0:
                    status = _BAD_EXPORT
                    bad_row = i
                    break

            # ---- pass 2: lines ----------------------------------------------------------------------------
            for l in range(L):
                line_nano[l] = 0
                quantity[i, l] = 0
            nem_qty = 0
            nem_nano = 0
            for s in range(n_segments):
                # net metering first: the credit, and the energy each period bills (slots keep raw import and
                # export for the trace, so _net recomputes the billed energy where the tiers need it)
                big_e = 0
                for p in range(n_periods):
                    slot = s * n_periods + p
                    e = slot_import[i, slot]
                    x = slot_export[i, slot]
                    if nem_mode == 1:
                        n = e - x
                        if n < 0:
                            nem_qty -= n
                            nem_nano += <int128_t>n * credit_price[p]
                            n = 0
                        e = n
                    elif nem_mode == 2:
                        nem_qty += x
                        nem_nano -= <int128_t>x * credit_price[p]
                    big_e += e
                if pooled:
                    if big_e == 0:
                        continue
                    lo = 0
                    for t in range(pool_ntiers[s]):
                        fill = _fill(big_e, lo, pool_bound[s, t])
                        lo = pool_bound[s, t]
                        if fill == 0:
                            continue
                        for p in range(n_periods):
                            e = _net(slot_import[i, s * n_periods + p], slot_export[i, s * n_periods + p],
                                     nem_mode)
                            if e == 0:
                                continue
                            l = energy_line[p] + t
                            # SAM's split: the period's share of the tier, one division rounded half-up
                            quantity[i, l] += <int64_t>round_half_up_div128(<int128_t>e * fill, big_e)
                            line_nano[l] += round_half_up_div128(<int128_t>e * fill * price[p, t], big_e)
                else:
                    for p in range(n_periods):
                        slot = s * n_periods + p
                        e = _net(slot_import[i, slot], slot_export[i, slot], nem_mode)
                        if e == 0:
                            continue
                        lo = 0
                        for t in range(ntiers[p]):
                            fill = _fill(e, lo, slot_bound[slot, t])
                            lo = slot_bound[slot, t]
                            if fill == 0:
                                continue
                            l = energy_line[p] + t
                            quantity[i, l] += fill
                            line_nano[l] += <int128_t>fill * price[p, t]

            # demand: peak W per period, tiers by W; flat periods add into one line
            for q in range(QF):
                peak_w[i, q] *= w_per_wh
                v = peak_w[i, q]
                nano = 0
                lo = 0
                for t in range(demand_ntiers[q]):
                    fill = _fill(v, lo, demand_bound[q, t])
                    lo = demand_bound[q, t]
                    nano += <int128_t>fill * demand_price[q, t]
                if q < n_demand:
                    l = line_demand + q
                    quantity[i, l] = v
                else:
                    l = line_flat
                    if v > quantity[i, l]:
                        quantity[i, l] = v
                line_nano[l] += nano

            if line_fixed >= 0:
                quantity[i, line_fixed] = fixed_qty
                line_nano[line_fixed] = fixed_nano
            for k in range(K):
                quantity[i, line_rider + k] = tot_import
                line_nano[line_rider + k] = <int128_t>tot_import * rider_price[k]
            if line_nem >= 0:
                quantity[i, line_nem] = nem_qty
                line_nano[line_nem] = nem_nano

            # every line rounded half-up to the cent; the subtotal is the sum of rounded lines
            subtotal = 0
            for l in range(n_pre):
                cents = <int64_t>round_half_up_div128(line_nano[l], NANO_PER_CENT)
                amount_cents[i, l] = cents
                subtotal += cents
            if line_min >= 0:
                if subtotal < min_cents:
                    amount_cents[i, line_min] = min_cents - subtotal
                    quantity[i, line_min] = min_qty
                    subtotal = min_cents
                else:
                    amount_cents[i, line_min] = 0
            total_cents[i] = subtotal
            for k in range(J):
                # taxes on the rounded subtotal; a credit balance is not taxed (no negative tax line)
                cents = 0
                if subtotal > 0:
                    cents = <int64_t>round_half_up_div128(<int128_t>subtotal * tax_micro_pct[k], 100000000)
                amount_cents[i, line_tax + k] = cents
                quantity[i, line_tax + k] = tax_qty
                total_cents[i] += cents
    return status, bad_row
