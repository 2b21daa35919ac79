"""The bill kernel: every line of DOMAIN.md section 3 for a batch of usage rows under one tariff and period.

# Design:
# One call bills B rows (service points) for the same tariff and the same period [start, end). Everything that
# depends only on tariff x calendar is computed once by the wrapper (kernels/billing.py) and arrives here as a
# "plan". The period's intervals are cut into R *energy runs* of consecutive intervals that share one energy
# slot (calendar-month segment s x TOU period p -> slot s*P + p; TOU periods change a few times a day, so a
# month of hourly data is ~50-150 runs), and into Rd *demand runs* that share one TOU demand period and one
# flat demand period (flat demand changes once a month).
#
# Pass 1 (streaming, the only pass over the usage in memory): per row, one tight loop per energy run sums its
# Wh into the slot's accumulator, and ORs every value so that a negative (or absurd, >= 2**31 Wh) reading is
# caught without a validation pass. The demand maxima follow on the same row, now in L1. These loops are C
# (below) so that GCC can clone them for AVX2; the accumulators (slot energies, peaks) stay in L1.
#
# Pass 2 (per row, O(lines)): net metering, tiers (pooled or per period) with the segment's prorated bounds,
# demand tiers, fixed, riders, the credit, then every line rounded half-up to the cent, the minimum and taxes
# on the rounded subtotal. Line amounts are accumulated in nano-dollars in 128-bit integers (pooled tier
# splits multiply Wh x Wh x micro-$), then rounded once per line by the shared helper in _types.pxd.
#
# Outputs are written per row, so rows are independent: a batch equals its rows billed one by one.
"""
from libc.stdint cimport int32_t, int64_t

from kernels._types cimport (
    NANO_PER_CENT,
    STATUS_BAD_EXPORT,
    STATUS_BAD_IMPORT,
    STATUS_OK,
    int128_t,
    round_half_up_div128,
    usage_t,
)

cdef enum:
    MAX_LINES = 256  # kernels/tariffs.py MAX_LINES: a tariff never has more bill lines

# status codes: the kernels' one convention (STATUS_* in _types.pxd, kernels.validation.Status)
STATUSES = {"OK": STATUS_OK, "BAD_IMPORT": STATUS_BAD_IMPORT, "BAD_EXPORT": STATUS_BAD_EXPORT}


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


# The streaming loops of pass 1, in C so that GCC can clone them for AVX2 (``target_clones``: the loader picks
# the AVX2 body on CPUs that have it, the baseline SSE2 body elsewhere; one wheel runs everywhere). The default
# x86-64 target lacks a vector max for int32/int64, which made the demand maxima cost more than the sums.
# One call per row keeps the dispatch off the per-run path.
cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CG_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CG_CLONES
    #endif

    /* Sum each energy run of one row into its slot; OR every value into *bits (catches negatives and values
       >= 2**31 without a separate pass); returns the row's total. */
    #define CG_ROW_SUMS(NAME, T)                                                                          \
    CG_CLONES static int64_t NAME(const T* u, const int64_t* start, const int32_t* slot, Py_ssize_t R,   \
                                  int64_t* out, int64_t* bits) {                                         \
        int64_t total = 0;                                                                               \
        T o = 0;                                                                                         \
        for (Py_ssize_t r = 0; r < R; r++) {                                                             \
            int64_t s = 0;                                                                               \
            for (int64_t k = start[r]; k < start[r + 1]; k++) { s += u[k]; o |= u[k]; }                  \
            total += s;                                                                                  \
            if (slot[r] >= 0) out[slot[r]] += s;                                                         \
        }                                                                                                \
        *bits |= (int64_t)o;                                                                             \
        return total;                                                                                    \
    }

    /* Peak reading of each demand run: the first interval with the run's maximum, kept per demand period
       (TOU period q and flat period f of the run) when it beats the period's peak so far. The maximum is
       taken block by block (vectorized); only the first block that reaches it is searched for its position,
       so finding the peak's interval costs at most CG_BLOCK scalar steps, not a scan of the run. */
    #define CG_BLOCK 64
    #define CG_ROW_PEAKS(NAME, T)                                                                         \
    CG_CLONES static void NAME(const T* u, const int64_t* start, const int32_t* dq, const int32_t* fq,  \
                               Py_ssize_t R, int64_t* peak, int64_t* at) {                               \
        for (Py_ssize_t r = 0; r < R; r++) {                                                             \
            int64_t a = start[r], b = start[r + 1];                                                      \
            T m = u[a];                                                                                  \
            int64_t mb = a;                                                                              \
            for (int64_t c = a; c < b; c += CG_BLOCK) {                                                  \
                int64_t e = c + CG_BLOCK < b ? c + CG_BLOCK : b;                                         \
                T bm = u[c];                                                                             \
                for (int64_t k = c + 1; k < e; k++) bm = u[k] > bm ? u[k] : bm;                          \
                if (bm > m) { m = bm; mb = c; }                                                          \
            }                                                                                            \
            int32_t qs[2] = {dq[r], fq[r]};                                                              \
            for (int j = 0; j < 2; j++) {                                                                \
                int32_t q = qs[j];                                                                       \
                if (q >= 0 && ((int64_t)m > peak[q] || at[q] < 0)) {                                     \
                    int64_t k = mb;                                                                      \
                    while (u[k] != m) k++;                                                               \
                    peak[q] = m;                                                                         \
                    at[q] = k;                                                                           \
                }                                                                                        \
            }                                                                                            \
        }                                                                                                \
    }

    CG_ROW_SUMS(cg_row_sums_i32, int32_t)
    CG_ROW_SUMS(cg_row_sums_i64, int64_t)
    CG_ROW_PEAKS(cg_row_peaks_i32, int32_t)
    CG_ROW_PEAKS(cg_row_peaks_i64, int64_t)
    """
    int64_t cg_row_sums_i32(const int32_t* u, const int64_t* start, const int32_t* slot, Py_ssize_t R,
                            int64_t* out, int64_t* bits) noexcept nogil
    int64_t cg_row_sums_i64(const int64_t* u, const int64_t* start, const int32_t* slot, Py_ssize_t R,
                            int64_t* out, int64_t* bits) noexcept nogil
    void cg_row_peaks_i32(const int32_t* u, const int64_t* start, const int32_t* dq, const int32_t* fq,
                          Py_ssize_t R, int64_t* peak, int64_t* at) noexcept nogil
    void cg_row_peaks_i64(const int64_t* u, const int64_t* start, const int32_t* dq, const int32_t* fq,
                          Py_ssize_t R, int64_t* peak, int64_t* at) noexcept nogil


cdef inline int64_t _row_sums(const usage_t* u, const int64_t* start, const int32_t* slot, Py_ssize_t R,
                              int64_t* out, int64_t* bits) noexcept nogil:
    if usage_t is int32_t:
        return cg_row_sums_i32(u, start, slot, R, out, bits)
    else:
        return cg_row_sums_i64(u, start, slot, R, out, bits)


cdef inline void _row_peaks(const usage_t* u, const int64_t* start, const int32_t* dq, const int32_t* fq,
                            Py_ssize_t R, int64_t* peak, int64_t* at) noexcept nogil:
    if usage_t is int32_t:
        cg_row_peaks_i32(u, start, dq, fq, R, peak, at)
    else:
        cg_row_peaks_i64(u, start, dq, fq, R, peak, at)


def bill_intervals(
    const usage_t[:, ::1] import_wh,       # IN  (B, N) Wh per interval
    const usage_t[:, ::1] export_wh,       # IN  (B, N) Wh per interval, or (0, N): export not billed
    const int64_t[::1] run_start,          # IN  (R+1,) first interval of each energy run; run_start[R] = N
    const int32_t[::1] run_slot,           # IN  (R,) energy slot s*P + p, -1 = tariff has no energy charges
    const int64_t[::1] demand_start,       # IN  (Rd+1,) first interval of each demand run (Rd = 0: no demand)
    const int32_t[::1] run_demand,         # IN  (Rd,) TOU demand period q, -1 = none
    const int32_t[::1] run_flat,           # IN  (Rd,) Q + flat demand period f, -1 = none
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
    int64_t[::1] where,                    # OUT (1,) the row a failure status is about
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
    """Bill every row; returns a status code (bad row in ``where``). The wrapper checks shapes, allocates outputs."""
    cdef Py_ssize_t B = import_wh.shape[0]
    cdef Py_ssize_t R = run_slot.shape[0]
    cdef Py_ssize_t Rd = run_demand.shape[0]
    cdef Py_ssize_t L = quantity.shape[1]
    cdef Py_ssize_t SP = slot_import.shape[1]
    cdef Py_ssize_t QF = peak_w.shape[1]
    cdef Py_ssize_t K = rider_price.shape[0]
    cdef Py_ssize_t J = tax_micro_pct.shape[0]
    cdef bint has_export = export_wh.shape[0] > 0
    cdef int128_t line_nano[MAX_LINES]
    cdef Py_ssize_t i, p, t, s, q, l, k, slot, n_pre
    cdef int64_t v, bits, ebits, e, x, n, big_e, fill, lo, tot_import, subtotal, cents
    cdef int64_t nem_qty
    cdef int64_t nowhere = 0
    cdef int128_t nem_nano, nano
    cdef const usage_t* row
    cdef const usage_t* xrow
    cdef int status = STATUS_OK

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
            # (a tariff without energy charges has no slots: every run_slot is -1 and nothing is written)
            tot_import = _row_sums(row, &run_start[0], &run_slot[0], R, &slot_import[i, 0] if SP else &nowhere,
                                   &bits)
            # demand runs change only where a demand period does (flat demand: once a month), so their maxima
            # are taken in a second loop over the row, which is in L1 by now: memory still sees it once
            if Rd > 0:
                _row_peaks(row, &demand_start[0], &run_demand[0], &run_flat[0], Rd, &peak_w[i, 0],
                           &peak_at[i, 0])
            if (bits >> 31) != 0:
                status = STATUS_BAD_IMPORT
                where[0] = i
                break
            if has_export:
                xrow = &export_wh[i, 0]
                ebits = 0
                _row_sums(xrow, &run_start[0], &run_slot[0], R, &slot_export[i, 0] if SP else &nowhere, &ebits)
                if (ebits >> 31) != 0:
                    status = STATUS_BAD_EXPORT
                    where[0] = i
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
    return status
