"""Group-by partials: kernel == reference, and shards merged == all rows at once."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput
from kernels.aggregate import GroupPartials, group_partials, merge_partials
from reference_kernels import group

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Narrow keys take the kernel's direct-slot path; wide ones (spread over the whole int64 range) the ranked path.
narrow_keys = st.integers(-5, 20)
wide_keys = st.one_of(st.integers(-5, 5), st.integers(INT64_MIN, INT64_MAX))
values = st.integers(-(2**40), 2**40)  # sums of a few hundred rows stay far from int64 overflow
distinct_values = st.one_of(st.integers(0, 6), st.integers(INT64_MIN, INT64_MAX))


@st.composite
def tables(draw, max_rows=120):
    keys = draw(st.lists(draw(st.sampled_from([narrow_keys, wide_keys])), max_size=max_rows))
    n = len(keys)
    vals = draw(st.lists(values, min_size=n, max_size=n))
    dist = draw(st.lists(distinct_values, min_size=n, max_size=n))
    return keys, vals, dist


def _arr(xs):
    return np.array(xs, dtype=np.int64)


def _as_reference(p: GroupPartials) -> dict:
    out = {}
    for i, key in enumerate(p.keys.tolist()):
        d = p.distinct[p.distinct_offsets[i]:p.distinct_offsets[i + 1]].tolist() if p.distinct is not None else None
        out[key] = (int(p.sum[i]) if p.sum is not None else None,
                    int(p.max[i]) if p.max is not None else None,
                    int(p.count[i]), d)
    return out


def _assert_same(p: GroupPartials, q: GroupPartials):
    for name in ("keys", "sum", "max", "count", "distinct", "distinct_offsets"):
        a, b = getattr(p, name), getattr(q, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == np.int64 and b.dtype == np.int64, name
            np.testing.assert_array_equal(a, b, err_msg=name)


def _split(n, cuts):
    points = sorted({min(c, n) for c in cuts})
    return [slice(lo, hi) for lo, hi in zip([0, *points], [*points, n])]


@settings(max_examples=200)
@given(tables())
def test_partials_equal_reference(table):
    keys, vals, dist = table
    p = group_partials(_arr(keys), _arr(vals), distinct=_arr(dist))
    assert p.keys.tolist() == sorted(set(keys))
    assert _as_reference(p) == group(keys, vals, dist)
    np.testing.assert_array_equal(p.distinct_count(), [len(set(d for k, d in zip(keys, dist) if k == key))
                                                        for key in p.keys.tolist()])


@settings(max_examples=100)
@given(tables())
def test_counts_only_and_without_distinct(table):
    keys, vals, _ = table
    p = group_partials(_arr(keys))
    assert p.sum is None and p.max is None and p.distinct is None
    assert _as_reference(p) == group(keys)
    q = group_partials(_arr(keys), _arr(vals))
    assert _as_reference(q) == group(keys, vals)
    with pytest.raises(InvalidInput):
        q.distinct_count()


@settings(max_examples=150)
@given(tables(), st.lists(st.integers(0, 120), max_size=5), st.booleans(), st.randoms(use_true_random=False))
def test_sharded_merge_equals_one_shot(table, cuts, with_values, rnd):
    keys, vals, dist = _arr(table[0]), _arr(table[1]), _arr(table[2])
    v = vals if with_values else None
    whole = group_partials(keys, v, distinct=dist)
    parts = [group_partials(keys[s], v[s] if with_values else None, distinct=dist[s])
             for s in _split(keys.size, cuts)]
    _assert_same(merge_partials(parts), whole)
    rnd.shuffle(parts)
    _assert_same(merge_partials(parts), whole)
    # Merging is associative: a tree of merges (shards, then hosts) gives the same answer.
    if len(parts) >= 2:
        _assert_same(merge_partials([merge_partials(parts[:1]), merge_partials(parts[1:])]), whole)


@settings(max_examples=100)
@given(tables(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(table, rnd):
    keys, vals, dist = table
    order = list(range(len(keys)))
    rnd.shuffle(order)
    shuffled = group_partials(_arr([keys[i] for i in order]), _arr([vals[i] for i in order]),
                              distinct=_arr([dist[i] for i in order]))
    _assert_same(shuffled, group_partials(_arr(keys), _arr(vals), distinct=_arr(dist)))


@settings(max_examples=50)
@given(tables())
def test_read_only_and_non_contiguous_input(table):
    keys, vals, dist = table
    block = np.array([keys, vals, dist], dtype=np.int64).reshape(3, -1).T.copy()  # rows of (key, value, distinct)
    block.flags.writeable = False
    p = group_partials(block[:, 0], block[:, 1], distinct=block[:, 2])
    _assert_same(p, group_partials(_arr(keys), _arr(vals), distinct=_arr(dist)))


def test_empty_input_and_empty_merge():
    p = group_partials(np.empty(0, np.int64), np.empty(0, np.int64), distinct=np.empty(0, np.int64))
    assert len(p) == 0 and p.sum.size == 0 and p.distinct_count().size == 0
    _assert_same(merge_partials([p, p]), p)
    nothing = merge_partials([])
    assert len(nothing) == 0 and nothing.sum is None


def test_a_value_seen_on_two_shards_counts_once():
    a = group_partials(_arr([7, 7]), distinct=_arr([100, 101]))
    b = group_partials(_arr([7, 8]), distinct=_arr([101, 100]))
    merged = merge_partials([a, b])
    assert merged.keys.tolist() == [7, 8]
    assert merged.distinct_count().tolist() == [2, 1]
    assert merged.count.tolist() == [3, 1]


def test_extreme_values_are_exact():
    keys = _arr([INT64_MAX, INT64_MIN, INT64_MAX, 0])
    vals = _arr([INT64_MAX, INT64_MIN, -1, INT64_MIN])
    p = group_partials(keys, vals, distinct=vals)
    assert _as_reference(p) == group(keys.tolist(), vals.tolist(), vals.tolist())


@pytest.mark.parametrize("vals", [[INT64_MAX, 1], [INT64_MIN, -1]])
def test_sum_overflow_raises_instead_of_wrapping(vals):
    with pytest.raises(InvalidInput, match="overflows"):
        group_partials(_arr([3, 3]), _arr(vals))
    halves = [group_partials(_arr([3]), _arr(vals[:1])), group_partials(_arr([3]), _arr(vals[1:]))]
    with pytest.raises(InvalidInput, match="overflows"):
        merge_partials(halves)


def test_merging_unlike_partials_is_refused():
    with_values = group_partials(_arr([1]), _arr([1]))
    counts_only = group_partials(_arr([1]))
    with_distinct = group_partials(_arr([1]), _arr([1]), distinct=_arr([1]))
    with pytest.raises(InvalidInput):
        merge_partials([with_values, counts_only])
    with pytest.raises(InvalidInput):
        merge_partials([with_values, with_distinct])
    with pytest.raises(InvalidInput):
        merge_partials([with_values, "shard 2"])


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"keys": np.array([1.0])}, "keys"),
    ({"keys": np.array([True])}, "keys"),
    ({"keys": np.zeros((2, 2), np.int64)}, "keys"),
    ({"keys": _arr([1, 2]), "values": _arr([1])}, "values"),
    ({"keys": _arr([1, 2]), "distinct": _arr([1, 2, 3])}, "distinct"),
    ({"keys": _arr([1]), "values": np.array([1.5])}, "values"),
    ({"keys": np.array([2**63], dtype=np.uint64)}, "keys"),
])
def test_invalid_input_names_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as err:
        group_partials(**kwargs)
    assert err.value.field == field


def test_narrower_integer_dtypes_are_accepted():
    p = group_partials(np.array([2, 1, 2], dtype=np.int16), np.array([5, 6, 7], dtype=np.uint32))
    assert p.keys.tolist() == [1, 2] and p.sum.tolist() == [6, 12] and p.max.tolist() == [6, 7]
