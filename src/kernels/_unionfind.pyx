"""Connected components over dense node ids (portfolio resolution, DOMAIN section 5).

# Design:
# Nodes are 0..n-1 and edges two parallel int64 arrays, so links gathered from every shard are concatenated
# and resolved in one pass. The forest lives in ``parent`` with union by size (trees stay O(log n) deep) and
# path halving on every find (each visited node is pointed at its grandparent: no recursion, no stack).
# Roots depend on edge order, so a last pass labels every node with the smallest node id of its component:
# nodes are visited in ascending id, and the first node to reach a root is the component's minimum. Labels
# are then canonical and two resolutions of the same graph compare exactly.
"""
from libc.stdint cimport int64_t


cdef inline int64_t _find(int64_t[::1] parent, int64_t x) noexcept nogil:
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


def union_find_roots(
    const int64_t[::1] a,     # IN  (m,) first endpoint of each edge, 0 <= a[i] < n
    const int64_t[::1] b,     # IN  (m,) second endpoint of each edge, 0 <= b[i] < n
    int64_t[::1] parent,      # OUT (n,) scratch: the union-find forest
    int64_t[::1] size,        # OUT (n,) scratch: tree sizes, then each root's smallest member
    int64_t[::1] labels,      # OUT (n,) smallest node id in each node's component
) -> None:
    """Label each node with the smallest id in its component; the wrapper checks every precondition."""
    cdef Py_ssize_t n = parent.shape[0]
    cdef Py_ssize_t m = a.shape[0]
    cdef Py_ssize_t i
    cdef int64_t ra, rb, r
    with nogil:
        for i in range(n):
            parent[i] = i
            size[i] = 1
        for i in range(m):
            ra = _find(parent, a[i])
            rb = _find(parent, b[i])
            if ra == rb:
                continue
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
        # Sizes are no longer needed: reuse them as "smallest member seen" per root (-1 = none yet).
        for i in range(n):
            size[i] = -1
        for i in range(n):
            r = _find(parent, i)
            if size[r] < 0:
                size[r] = i
            labels[i] = size[r]
