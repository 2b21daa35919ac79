"""Connected components for portfolio resolution: accounts linked by shared tax id, entity chain or owner key.

Links are gathered from every shard (entities span shards) and resolved here in one pass by the Cython
union-find kernel. Component labels are canonical (the smallest member), so a resolution can be compared
exactly with another one, or with a previous run, without relabelling.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kernels import errors
from kernels.validation import as_int64 as _as_int64, check_scalar
from kernels import _unionfind

__all__ = ["union_find_roots", "components_from_links"]


def union_find_roots(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label of every node of an undirected graph.

    Parameters
    ----------
    n : int
        Number of nodes; nodes are ``0 .. n-1``. Nodes without edges are their own component.
    a, b : ndarray of int64, shape (m,)
        Edge endpoints: edge ``i`` joins ``a[i]`` and ``b[i]``. Any order, duplicates and self-loops allowed.
        Read-only and non-contiguous arrays are accepted.

    Returns
    -------
    ndarray of int64, shape (n,)
        The smallest node id in each node's component. Canonical: the same graph always gives the same
        labels whatever the edge order, so results compare exactly.

    Raises
    ------
    InvalidInput
        If ``n`` is negative, the arrays are not 1-D integer arrays of equal length, or an endpoint is
        outside ``0 .. n-1``.
    """
    a = _as_int64(a, "a")
    b = _as_int64(b, "b")
    if a.shape[0] != b.shape[0]:
        raise errors.InvalidInput(f"a and b must have the same length, got {a.shape[0]} and {b.shape[0]}", field="b")
    n = check_scalar(n, "n", min_val=0)
    for name, arr in (("a", a), ("b", b)):
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
            raise errors.InvalidInput(f"{name} must hold node ids in [0, {n}), got values in "
                               f"[{int(arr.min())}, {int(arr.max())}]", field=name)
    parent = np.empty(n, dtype=np.int64)
    size = np.empty(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    _unionfind.union_find_roots(a, b, parent, size, labels)
    return labels


def components_from_links(keys_a: Sequence[str], keys_b: Sequence[str]) -> dict[str, str]:
    """Map every string node that appears in a link to its component's representative.

    Parameters
    ----------
    keys_a, keys_b : sequence of str, same length
        Link ``i`` joins ``keys_a[i]`` and ``keys_b[i]`` (entity ids, tax ids, owner keys...).

    Returns
    -------
    dict of str to str
        Each node to the smallest string (Python ordering) in its component; a representative maps to itself.

    Notes
    -----
    Nodes are numbered in sorted order, so the kernel's "smallest id" label is the smallest string.
    """
    if len(keys_a) != len(keys_b):
        raise errors.InvalidInput(f"keys_a and keys_b must have the same length, got {len(keys_a)} and {len(keys_b)}",
                           field="keys_b")
    for name, keys in (("keys_a", keys_a), ("keys_b", keys_b)):
        bad = next((k for k in keys if not isinstance(k, str)), None)
        if bad is not None:
            raise errors.InvalidInput(f"{name} must hold str, got {type(bad).__name__}", field=name)
    nodes = sorted(set(keys_a).union(keys_b))
    index = {key: i for i, key in enumerate(nodes)}
    a = np.fromiter((index[k] for k in keys_a), dtype=np.int64, count=len(keys_a))
    b = np.fromiter((index[k] for k in keys_b), dtype=np.int64, count=len(keys_b))
    labels = union_find_roots(len(nodes), a, b)
    return {key: nodes[label] for key, label in zip(nodes, labels.tolist())}
