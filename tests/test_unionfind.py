"""Union-find kernel: labels equal the plain reference and networkx's connected components."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput
from kernels.unionfind import components_from_links, union_find_roots
from reference_kernels import components


@st.composite
def graphs(draw, max_nodes=40, max_edges=80):
    n = draw(st.integers(0, max_nodes))
    if n == 0:
        return 0, []
    node = st.integers(0, n - 1)
    edges = draw(st.lists(st.tuples(node, node), max_size=max_edges))
    return n, edges


def _arrays(edges):
    a = np.array([e[0] for e in edges], dtype=np.int64)
    b = np.array([e[1] for e in edges], dtype=np.int64)
    return a, b


def _networkx_labels(n, edges):
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    labels = np.empty(n, dtype=np.int64)
    for component in nx.connected_components(graph):
        members = np.fromiter(component, dtype=np.int64)
        labels[members] = members.min()
    return labels


@settings(max_examples=200)
@given(graphs())
def test_labels_equal_reference_and_networkx(graph):
    n, edges = graph
    labels = union_find_roots(n, *_arrays(edges))
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert labels.tolist() == components(n, edges)
    np.testing.assert_array_equal(labels, _networkx_labels(n, edges))


@settings(max_examples=100)
@given(graphs(), st.randoms(use_true_random=False))
def test_edge_order_and_direction_do_not_change_labels(graph, rnd):
    n, edges = graph
    shuffled = [(b, a) if rnd.random() < 0.5 else (a, b) for a, b in edges]
    rnd.shuffle(shuffled)
    np.testing.assert_array_equal(union_find_roots(n, *_arrays(shuffled)), union_find_roots(n, *_arrays(edges)))


@settings(max_examples=50)
@given(graphs())
def test_read_only_and_non_contiguous_edges(graph):
    n, edges = graph
    a, b = _arrays(edges)
    wide = np.empty((len(edges), 2), dtype=np.int64)
    wide[:, 0], wide[:, 1] = a, b
    wide.flags.writeable = False
    col_a, col_b = wide[:, 0], wide[:, 1]  # strided, read-only views
    assert not col_a.flags.c_contiguous or len(edges) <= 1
    np.testing.assert_array_equal(union_find_roots(n, col_a, col_b), union_find_roots(n, a, b))


def test_no_nodes_and_no_edges():
    assert union_find_roots(0, [], []).shape == (0,)
    np.testing.assert_array_equal(union_find_roots(5, np.empty(0, np.int64), np.empty(0, np.int64)),
                                  np.arange(5))


def test_long_chains_linked_from_the_far_end():
    # A path linked from its last node backwards, and a star, in one graph: deep trees for naive linking.
    n = 50_000
    path_a = np.arange(n // 2 - 1, 0, -1)
    path_b = path_a - 1
    star_b = np.arange(n // 2, n - 1)
    star_a = np.full(star_b.size, n - 1)
    a = np.concatenate([path_a, star_a])
    b = np.concatenate([path_b, star_b])
    expected = np.concatenate([np.zeros(n // 2, np.int64), np.full(n - n // 2, n // 2)])
    np.testing.assert_array_equal(union_find_roots(n, a, b), expected)


def test_random_graph_larger_than_hypothesis_draws():
    rng = np.random.default_rng(7)
    n = 20_000
    a = rng.integers(0, n, 15_000)
    b = rng.integers(0, n, 15_000)
    np.testing.assert_array_equal(union_find_roots(n, a, b), _networkx_labels(n, list(zip(a.tolist(), b.tolist()))))


def test_narrower_integer_dtypes_are_accepted():
    a = np.array([2, 3], dtype=np.int32)
    b = np.array([1, 0], dtype=np.uint8)
    assert union_find_roots(4, a, b).tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize(("n", "a", "b", "field"), [
    (3, [0, 3], [1, 1], "a"),
    (3, [0, 1], [1, -1], "b"),
    (3, [0, 1], [1], "b"),
    (3, np.array([0.0]), np.array([1.0]), "a"),
    (3, np.array([True]), np.array([False]), "a"),
    (3, np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64), "a"),
    (-1, [], [], "n"),
    (2.0, [], [], "n"),
])
def test_invalid_input_names_the_field(n, a, b, field):
    with pytest.raises(InvalidInput) as err:
        union_find_roots(n, a, b)
    assert err.value.field == field


@settings(max_examples=100)
@given(st.lists(st.tuples(st.text("abcdef", min_size=1, max_size=3), st.text("abcdef", min_size=1, max_size=3)),
                max_size=40))
def test_components_from_links_maps_to_smallest_string(links):
    keys_a = [a for a, _ in links]
    keys_b = [b for _, b in links]
    graph = nx.Graph()
    graph.add_edges_from(links)
    expected = {node: min(component) for component in nx.connected_components(graph) for node in component}
    assert components_from_links(keys_a, keys_b) == expected


def test_components_from_links_rejects_non_strings_and_unequal_lengths():
    with pytest.raises(InvalidInput):
        components_from_links(["a"], [1])
    with pytest.raises(InvalidInput):
        components_from_links(["a", "b"], ["c"])
