"""Group-by reductions over an int64 key column: sum, max, count and distinct values per key.

# Design:
# A group is addressed by a dense *slot*: ``keys[i] - key_offset``. The wrapper picks the offset: the smallest
# key when the key range is small enough to hold one slot per possible key (the common case: account,
# customer or portfolio indices), or 0 after replacing sparse keys with their rank (``np.unique`` inverse).
# Either way the reduction is one streaming pass with random access into three small accumulators, the way
# ``np.bincount`` works, instead of a sort of the whole column.
# Sums are checked for int64 overflow (money must never wrap): the kernel stops and returns the failing row.
# Distinct values need a set per group; they are reduced from (key, value) pairs sorted by the wrapper, so a
# shard's partial keeps its exact sets and shards merge by concatenating and reducing again.
"""
from libc.stdint cimport int64_t

cdef extern from *:
    """
    static inline int cg_add_overflow(int64_t a, int64_t b, int64_t *out) {
        return __builtin_add_overflow(a, b, out);
    }
    """
    int cg_add_overflow(int64_t a, int64_t b, int64_t *out) noexcept nogil


def group_sum_max_count(
    const int64_t[::1] keys,      # IN  (n,) group key of each row
    const int64_t[::1] values,    # IN  (n,) value of each row, or (0,) to count only
    int64_t[::1] sums,            # OUT (n_slots,) zero-filled by the caller; untouched when counting only
    int64_t[::1] maxes,           # OUT (n_slots,) INT64_MIN-filled by the caller; untouched when counting only
    int64_t[::1] counts,          # OUT (n_slots,) zero-filled by the caller
    int64_t key_offset,           # slot of row i is keys[i] - key_offset, in [0, n_slots)
) -> Py_ssize_t:
    """Accumulate rows into their slots; return -1, or the first row whose slot's sum overflows int64."""
    cdef Py_ssize_t n = keys.shape[0]
    cdef Py_ssize_t i
    cdef int64_t s, v
    cdef Py_ssize_t failed = -1
    with nogil:
        if values.shape[0] == 0:
            for i in range(n):
                counts[keys[i] - key_offset] += 1
        else:
            for i in range(n):
                s = keys[i] - key_offset
                v = values[i]
                if cg_add_overflow(sums[s], v, &sums[s]):
                    failed = i
                    break
                if v > maxes[s]:
                    maxes[s] = v
                counts[s] += 1
    return failed


def merge_sum_max_count(
    const int64_t[::1] keys,      # IN  (n,) group key of each partial row (shards concatenated)
    const int64_t[::1] sums_in,   # IN  (n,) partial sums, or (0,) when the partials only count
    const int64_t[::1] maxes_in,  # IN  (n,) partial maxima, or (0,)
    const int64_t[::1] counts_in, # IN  (n,) partial counts
    int64_t[::1] sums,            # OUT (n_slots,) zero-filled by the caller
    int64_t[::1] maxes,           # OUT (n_slots,) INT64_MIN-filled by the caller
    int64_t[::1] counts,          # OUT (n_slots,) zero-filled by the caller
    int64_t key_offset,           # slot of row i is keys[i] - key_offset, in [0, n_slots)
) -> Py_ssize_t:
    """Combine partial rows into their slots; return -1, or the first row whose sum or count overflows."""
    cdef Py_ssize_t n = keys.shape[0]
    cdef Py_ssize_t i
    cdef int64_t s
    cdef Py_ssize_t failed = -1
    cdef bint with_values = sums_in.shape[0] != 0
    with nogil:
        for i in range(n):
            s = keys[i] - key_offset
            if cg_add_overflow(counts[s], counts_in[i], &counts[s]):
                failed = i
                break
            if with_values:
                if cg_add_overflow(sums[s], sums_in[i], &sums[s]):
                    failed = i
                    break
                if maxes_in[i] > maxes[s]:
                    maxes[s] = maxes_in[i]
    return failed


def distinct_sorted_pairs(
    const int64_t[::1] keys,      # IN  (n,) group key of each pair, pairs sorted by (key, value)
    const int64_t[::1] values,    # IN  (n,) value of each pair
    int64_t[::1] out_values,      # OUT (n,) capacity: the distinct values, group after group, ascending
    int64_t[::1] out_counts,      # OUT (n_groups,) distinct values per group, one entry per distinct key
) -> Py_ssize_t:
    """Drop repeated pairs; return how many distinct pairs were written to ``out_values``."""
    cdef Py_ssize_t n = keys.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t g = -1
    cdef Py_ssize_t w = 0
    with nogil:
        for i in range(n):
            if i == 0 or keys[i] != keys[i - 1]:
                g += 1
                out_counts[g] = 0
            elif values[i] == values[i - 1]:
                continue
            out_values[w] = values[i]
            out_counts[g] += 1
            w += 1
    return w
