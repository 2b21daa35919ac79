"""Predicate compiler: vectorized evaluation == the plain-Python per-row reference; validation errors."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid.errors import InvalidInput, RuleError
from grid.rules.columns import ACCOUNT_COLUMNS, ANY, Column
from grid.rules.predicates import compile_predicate, python_column
from reference_rules import matches

COLUMNS = ("i", "f", "s", "b", "l", "m")
CATALOGUE = {name: Column(ANY, "test column") for name in COLUMNS}
WORDS = ("", "a", "ab", "b", "ba", "x", "Z", "é")

ints = st.one_of(st.integers(-5, 5), st.sampled_from([2**53, -(2**53), 2**53 + 1, 2**62, -(2**63), 2**63 - 1]))
floats = st.one_of(st.sampled_from([-2.5, -1.0, 0.0, 0.5, 2.5, 3.0, 1e300, float("nan"), float("inf")]),
                   st.floats(-6, 6, allow_nan=False))
strings = st.sampled_from(WORDS)
string_lists = st.lists(strings, max_size=3)
others = st.sampled_from([{"k": 1}, [1, 2], [], 2**70, {"a": {"b": None}}])
VALUES = {
    "i": st.one_of(st.none(), ints),
    "f": st.one_of(st.none(), floats),
    "s": st.one_of(st.none(), strings),
    "b": st.one_of(st.none(), st.booleans()),
    "l": st.one_of(st.none(), string_lists),
    "m": st.one_of(st.none(), ints, floats, strings, st.booleans(), string_lists, others),
}


@st.composite
def rows(draw, min_size=0, max_size=25):
    n = draw(st.integers(min_size, max_size))
    return [{name: draw(VALUES[name]) for name in COLUMNS} for _ in range(n)]


rule_numbers = st.one_of(st.integers(-6, 6), st.sampled_from([2**53, -(2**53), 2**52 + 0.5, 0.5, 2.5, -1.5]),
                         st.floats(-6, 6, allow_nan=False).map(lambda x: round(x * 4) / 4))
scalars = st.one_of(rule_numbers, strings, st.booleans())


@st.composite
def comparisons(draw):
    field = draw(st.sampled_from(COLUMNS))
    op = draw(st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le", "in", "contains", "exists"]))
    if op == "exists":
        return {"field": field, "op": op}
    if op == "contains":
        return {"field": field, "op": op, "value": draw(strings)}
    if op == "in":
        values = draw(st.one_of(st.lists(rule_numbers, min_size=1, max_size=4),
                                st.lists(strings, min_size=1, max_size=4),
                                st.lists(st.booleans(), min_size=1, max_size=2)))
        return {"field": field, "op": op, "value": values}
    if op in ("eq", "ne"):
        return {"field": field, "op": op, "value": draw(scalars)}
    return {"field": field, "op": op, "value": draw(st.one_of(rule_numbers, strings))}


predicates = st.recursive(
    comparisons(),
    lambda children: st.one_of(st.lists(children, min_size=1, max_size=3).map(lambda ps: {"all": ps}),
                               st.lists(children, min_size=1, max_size=3).map(lambda ps: {"any": ps}),
                               children.map(lambda p: {"not": p})),
    max_leaves=6)


def table_of(data: list[dict]) -> pa.Table:
    return pa.table({name: python_column([r[name] for r in data]) for name in COLUMNS})


def compiled(tree):
    return compile_predicate(tree, CATALOGUE, file="test.yaml", rule="r", path="when")


@settings(max_examples=300)
@given(rows(), predicates)
def test_vectorized_equals_per_row_reference(data, tree):
    got = compiled(tree).evaluate(table_of(data))
    assert got.dtype == bool
    assert got.tolist() == [matches(tree, r) for r in data]


@settings(max_examples=100)
@given(rows(min_size=1), predicates, st.data())
def test_sharded_equals_unsharded(data, tree, split):
    """A row's result does not depend on the other rows (column types differ between the parts)."""
    cut = split.draw(st.integers(0, len(data)))
    p = compiled(tree)
    whole = p.evaluate(table_of(data))
    parts = np.concatenate([p.evaluate(table_of(data[:cut])), p.evaluate(table_of(data[cut:]))])
    assert parts.tolist() == whole.tolist()


@settings(max_examples=50)
@given(rows(), predicates)
def test_mapping_of_lists_and_table_agree(data, tree):
    p = compiled(tree)
    mapping = {name: [r[name] for r in data] for name in COLUMNS}
    assert p.evaluate(mapping, n_rows=len(data)).tolist() == p.evaluate(table_of(data)).tolist()


def test_missing_column_matches_nothing_and_not_matches_everything():
    t = pa.table({"i": pa.array([1, 2, 3])})
    cat = {"i": Column(ANY, ""), "attr.x": Column(ANY, "")}
    eq = compile_predicate({"field": "attr.x", "op": "eq", "value": True}, cat, file="f", rule="r", path="p")
    neg = compile_predicate({"not": {"field": "attr.x", "op": "eq", "value": True}}, cat, file="f", rule="r",
                            path="p")
    assert eq.evaluate(t).tolist() == [False] * 3
    assert neg.evaluate(t).tolist() == [True] * 3


def test_int_column_against_fraction_is_exact():
    """2**53 + 1 > 2**53 + 0.5 must hold, which a cast to float64 would get wrong."""
    big = 2**53 + 1
    t = pa.table({"i": pa.array([big, 2**53, None], pa.int64())})
    cat = {"i": Column(ANY, "")}
    for op, expected in (("gt", [True, False, False]), ("le", [False, True, False]), ("eq", [False, False, False]),
                         ("ne", [True, True, False])):
        p = compile_predicate({"field": "i", "op": op, "value": 2**52 + 0.5}, cat, file="f", rule="r", path="p")
        row_ref = [matches({"field": "i", "op": op, "value": 2**52 + 0.5}, {"i": v}) for v in (big, 2**53, None)]
        assert p.evaluate(t).tolist() == row_ref
    p = compile_predicate({"field": "i", "op": "gt", "value": 2**53}, cat, file="f", rule="r", path="p")
    assert p.evaluate(t).tolist() == [True, False, False]


def test_read_only_and_chunked_columns():
    arr = np.arange(10, dtype=np.int64)
    arr.setflags(write=False)
    t = pa.table({"i": pa.chunked_array([pa.array(arr[:4]), pa.array(arr[4:])])})
    p = compile_predicate({"field": "i", "op": "in", "value": [1, 5, 9.0, 9.5]}, {"i": Column(ANY, "")}, file="f",
                          rule="r", path="p")
    assert np.flatnonzero(p.evaluate(t)).tolist() == [1, 5, 9]


def test_columns_of_different_lengths_are_refused():
    p = compile_predicate({"all": [{"field": "i", "op": "gt", "value": 0}, {"field": "s", "op": "exists"}]},
                          {"i": Column(ANY, ""), "s": Column(ANY, "")}, file="f", rule="r", path="p")
    with pytest.raises(InvalidInput) as info:
        p.evaluate({"i": [1, 2, 3], "s": ["a"]})
    assert info.value.field == "s"


def test_empty_table():
    p = compile_predicate({"any": [{"field": "kind", "op": "eq", "value": "public"},
                                   {"field": "programs", "op": "contains", "value": "X"}]}, ACCOUNT_COLUMNS,
                          file="f", rule="r", path="p")
    t = pa.table({"kind": pa.array([], pa.string()), "programs": pa.array([], pa.list_(pa.string()))})
    assert p.evaluate(t).shape == (0,)
    assert p.fields == {"kind", "programs"}


@pytest.mark.parametrize("tree, field, words", [
    ({"field": "spend_12m", "op": "ge", "value": 1}, "when.field", "unknown column 'spend_12m'"),
    ({"field": "spend_12m_cents", "op": "gte", "value": 1}, "when.op", "unknown operator 'gte'"),
    ({"field": "spend_12m_cents", "op": "ge", "value": "lots"}, "when.value", "type mismatch"),
    ({"field": "kind", "op": "eq", "value": "comercial"}, "when.value", "not a value of kind"),
    ({"field": "programs", "op": "eq", "value": "X"}, "when.value", "use 'contains' or 'in'"),
    ({"field": "has_solar", "op": "eq", "value": 1}, "when.value", "type mismatch"),
    ({"field": "kind", "op": "exists", "value": True}, "when.value", "takes no value"),
    ({"field": "kind", "op": "eq"}, "when.value", "needs a value"),
    ({"field": "kind", "op": "in", "value": ["public", 3]}, "when.value", "must all be numbers"),
    ({"field": "attr.x", "op": "gt", "value": True}, "when.value", "does not order bools"),
    ({"field": "attr.x", "op": "contains", "value": 3}, "when.value", "needs a string"),
    ({"field": "peak_demand_w", "op": "ge", "value": 2**60}, "when.value", "2**53"),
    ({"field": "peak_demand_w", "op": "ge", "value": float("inf")}, "when.value", "finite"),
    ({"all": [{"field": "kind", "op": "eq", "value": "public"}, {"nor": []}]}, "when.all[1]", "needs 'all'"),
    ({"all": []}, "when.all", "non-empty list"),
    ({"not": {"field": "kind", "op": "exists"}, "any": []}, "when", "takes no other keys"),
    ({"field": "kind", "op": "exists", "valu": 1}, "when.valu", "unknown key 'valu'"),
])
def test_invalid_predicates_name_file_rule_and_field(tree, field, words):
    with pytest.raises(RuleError) as info:
        compile_predicate(tree, ACCOUNT_COLUMNS, file="key_accounts.yaml", rule="big_spender", path="when")
    err = info.value
    assert err.extra["file"] == "key_accounts.yaml"
    assert err.extra["rule"] == "big_spender"
    assert err.field == field
    assert words in err.detail
    assert err.problem()["field"] == field


def test_python_column_types():
    assert python_column([1, None, 3]).type == pa.int64()
    assert python_column([None, None]).type == pa.null()
    assert python_column([["a"], []]).type == pa.list_(pa.string())
    mixed = python_column([1, "1", 1.5, True, {"a": 1}, None])
    assert pa.types.is_union(mixed.type)
    assert [f.name for f in mixed.type] == ["bool", "int", "float", "string", "other"]
