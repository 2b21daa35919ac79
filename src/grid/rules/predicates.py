"""Rule predicates: a small tree language compiled once, evaluated column-at-a-time (no per-row Python).

A predicate is a mapping, one of::

    {all: [p, ...]}   {any: [p, ...]}   {not: p}
    {field: <column>, op: eq|ne|gt|ge|lt|le, value: <scalar>}
    {field: <column>, op: in, value: [<scalar>, ...]}
    {field: <column>, op: contains, value: <string>}     # substring of a string, or element of a list
    {field: <column>, op: exists}                         # present (a list: present and not empty)

Meaning, row by row (``tests/reference_rules.py`` is the plain-Python statement of it):

- A value is compared only with a rule value of its own family: numbers (int or float, never bool), strings,
  bools. Anything else (a missing value, another family, a list under ``eq``) does not match: there are two
  truth values, and ``not`` is plain negation, so ``not {field: attr.x, op: eq, value: true}`` holds for rows
  without ``attr.x``.
- Numbers compare exactly whatever their types (an int column against ``2.5`` is rounded correctly, not cast
  to float); rule numbers are limited to +-2**53 so that a float column compares exactly too.
- ``in`` on a list column holds when any element is in the set; ``contains`` on a string is a substring test.

Columns come from an Arrow table (or a mapping of column name to array or list). A column a table lacks is all
missing. Free-form attributes whose values mix families across rows are held as an Arrow dense union, one child
per family (see :func:`python_column`); each comparison is evaluated on the children of its family only, so a
row's result never depends on what other rows hold (sharded results equal unsharded ones).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput, RuleError
from grid.rules.columns import ANY, BOOL, INT, STRING, STRINGS, Column, lookup

__all__ = ["OPERATORS", "Predicate", "compile_predicate", "python_column", "evaluate"]

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
OPERATORS = (*COMPARISONS, "in", "contains", "exists")
MAX_EXACT = 2**53  # rule numbers beyond this would not compare exactly against float64 columns
_INT64 = (-(2**63), 2**63 - 1)

_CMP = {"eq": pc.equal, "ne": pc.not_equal, "gt": pc.greater, "ge": pc.greater_equal, "lt": pc.less,
        "le": pc.less_equal}


def family(value) -> str | None:
    """``"number"``, ``"string"``, ``"bool"`` or None (anything else)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


# -- the compiled tree ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cmp:
    field: str
    op: str
    value: object


@dataclass(frozen=True)
class _All:
    children: tuple


@dataclass(frozen=True)
class _Any:
    children: tuple


@dataclass(frozen=True)
class _Not:
    child: object


@dataclass(frozen=True)
class Predicate:
    """A validated predicate: ``evaluate(table)`` gives one bool per row."""

    node: object
    fields: frozenset[str]
    source: object  # the tree as written, for reports

    def evaluate(self, data, n_rows: int | None = None) -> np.ndarray:
        """Boolean mask, shape (rows,): see :func:`evaluate`."""
        return evaluate(self, data, n_rows)


# -- compiling (validation with errors naming file, rule and field) ----------------------------------------------
def compile_predicate(tree, catalogue: Mapping[str, Column], *, file: str, rule: str, path: str) -> Predicate:
    """Check a predicate tree against the columns of ``catalogue`` and compile it.

    Parameters
    ----------
    tree : mapping
        The predicate as read from a rule file.
    catalogue : mapping of str to Column
        The columns the rule may name (:data:`grid.rules.columns.ACCOUNT_COLUMNS` or ``PORTFOLIO_COLUMNS``).
    file, rule, path : str
        Where the predicate sits (file name, rule id, path inside the file such as ``account_rules[2].when``),
        for the error message.

    Raises
    ------
    RuleError
        On an unknown column, an unknown operator, a value of the wrong type for its column or operator, or a
        malformed node; ``field`` is the path of the offending part.
    """
    fields: set[str] = set()
    node = _compile(tree, catalogue, file, rule, path, fields)
    return Predicate(node, frozenset(fields), tree)


def _fail(detail: str, file: str, rule: str, field: str) -> RuleError:
    return RuleError(f"{file}: rule {rule!r}: {field}: {detail}", field=field, file=file, rule=rule)


def _compile(tree, catalogue, file, rule, path, fields):
    if not isinstance(tree, Mapping):
        raise _fail(f"a predicate must be a mapping, got {type(tree).__name__}", file, rule, path)
    keys = set(tree)
    for combinator in ("all", "any"):
        if combinator in keys:
            if keys != {combinator}:
                raise _fail(f"'{combinator}' takes no other keys, got {sorted(keys - {combinator})}", file, rule,
                            path)
            items = tree[combinator]
            if not isinstance(items, list) or not items:
                raise _fail(f"'{combinator}' needs a non-empty list of predicates", file, rule,
                            f"{path}.{combinator}")
            children = tuple(_compile(p, catalogue, file, rule, f"{path}.{combinator}[{i}]", fields)
                             for i, p in enumerate(items))
            return _All(children) if combinator == "all" else _Any(children)
    if "not" in keys:
        if keys != {"not"}:
            raise _fail(f"'not' takes no other keys, got {sorted(keys - {'not'})}", file, rule, path)
        return _Not(_compile(tree["not"], catalogue, file, rule, f"{path}.not", fields))
    if "field" not in keys:
        raise _fail(f"a predicate needs 'all', 'any', 'not' or 'field', got {sorted(map(str, keys))}", file, rule,
                    path)
    extra = keys - {"field", "op", "value"}
    if extra:
        raise _fail(f"unknown key {sorted(map(str, extra))[0]!r} (a comparison has field, op, value)", file, rule,
                    f"{path}.{sorted(map(str, extra))[0]}")
    name, op = tree["field"], tree.get("op")
    if not isinstance(name, str):
        raise _fail("field must be a column name", file, rule, f"{path}.field")
    column = lookup(name, catalogue)
    if column is None:
        raise _fail(f"unknown column {name!r}", file, rule, f"{path}.field")
    if op not in OPERATORS:
        raise _fail(f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}", file, rule, f"{path}.op")
    value = tree.get("value")
    _check_value(name, column, op, "value" in tree, value, file, rule, f"{path}.value")
    fields.add(name)
    if op == "in":
        value = tuple(value)
    return _Cmp(name, op, value)


def _check_number(v, file, rule, where) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise _fail(f"numbers must be finite, got {v!r}", file, rule, where)
    if abs(v) > MAX_EXACT:
        raise _fail(f"numbers must lie within +-2**53 to compare exactly, got {v!r}", file, rule, where)


def _check_value(name: str, column: Column, op: str, given: bool, value, file, rule, where) -> None:
    ctype = column.type
    if op == "exists":
        if given:
            raise _fail("'exists' takes no value", file, rule, where)
        return
    if not given:
        raise _fail(f"operator {op!r} needs a value", file, rule, where)
    if op == "in":
        if not isinstance(value, list) or not value:
            raise _fail(f"'in' needs a non-empty list of values, got {value!r}", file, rule, where)
        families = {family(v) for v in value}
        if None in families or len(families) > 1:
            raise _fail(f"'in' values must all be numbers, all strings or all bools, got {value!r}", file, rule,
                        where)
        fam = families.pop()
        scalars = value
    else:
        fam = family(value)
        if fam is None:
            raise _fail(f"operator {op!r} needs a number, string or bool, got {type(value).__name__}", file, rule,
                        where)
        scalars = [value]
    for v in scalars:
        if fam == "number":
            _check_number(v, file, rule, where)
    if op == "contains":
        if fam != "string":
            raise _fail(f"'contains' needs a string value, got {value!r}", file, rule, where)
        if ctype not in (STRING, STRINGS, ANY):
            raise _fail(f"'contains' does not apply to {name} ({ctype})", file, rule, where)
    elif op in ("gt", "ge", "lt", "le") and fam == "bool":
        raise _fail(f"operator {op!r} does not order bools", file, rule, where)
    expected = {INT: "number", STRING: "string", BOOL: "bool", STRINGS: "string"}.get(ctype)
    if ctype == STRINGS and op not in ("in", "contains"):
        raise _fail(f"operator {op!r} does not apply to {name} (a list of strings); use 'contains' or 'in'",
                    file, rule, where)
    if expected is not None and fam != expected:
        raise _fail(f"type mismatch: {name} is {ctype}, got {value!r}", file, rule, where)
    if column.values is not None and op in ("eq", "ne", "in"):
        for v in scalars:
            if v not in column.values:
                raise _fail(f"{v!r} is not a value of {name} (one of {', '.join(column.values)})", file, rule,
                            where)


# -- evaluation ---------------------------------------------------------------------------------------------------
def evaluate(predicate: Predicate, data, n_rows: int | None = None) -> np.ndarray:
    """Evaluate ``predicate`` on every row of ``data``.

    Parameters
    ----------
    predicate : Predicate
    data : pyarrow.Table or mapping of str to array-like
        Columns by name. A mapping's values may be Arrow arrays, numpy arrays or Python lists (lists of mixed
        types become dense unions, see :func:`python_column`).
    n_rows : int, optional
        Number of rows, needed only for a mapping whose predicate columns are all missing.

    Returns
    -------
    ndarray of bool, shape (rows,)
    """
    columns = _Columns(data, n_rows)
    return _eval(predicate.node, columns)


class _Columns:
    """Column access with conversion done once per column per evaluation."""

    def __init__(self, data, n_rows):
        self.data = data
        self.cache: dict[str, pa.Array | None] = {}
        if isinstance(data, pa.Table):
            self.n = data.num_rows
        elif n_rows is not None:
            self.n = int(n_rows)
        else:
            self.n = len(next(iter(data.values()))) if len(data) else 0

    def get(self, name: str) -> pa.Array | None:
        if name in self.cache:
            return self.cache[name]
        col = None
        if isinstance(self.data, pa.Table):
            if name in self.data.column_names:
                col = self.data.column(name)
        elif name in self.data:
            col = self.data[name]
        if col is not None:
            col = _as_array(col)
            if len(col) != self.n:
                raise InvalidInput(f"column {name} has {len(col)} rows, expected {self.n}", field=name)
        self.cache[name] = col
        return col


def _as_array(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if isinstance(col, pa.Array):
        return col
    if isinstance(col, np.ndarray):
        return pa.array(col)
    return python_column(list(col))


def _eval(node, cols: _Columns) -> np.ndarray:
    if isinstance(node, _Cmp):
        return _compare(cols.get(node.field), node.op, node.value, cols.n)
    if isinstance(node, _All):
        out = _eval(node.children[0], cols)
        for child in node.children[1:]:
            out &= _eval(child, cols)
        return out
    if isinstance(node, _Any):
        out = _eval(node.children[0], cols)
        for child in node.children[1:]:
            out |= _eval(child, cols)
        return out
    return ~_eval(node.child, cols)


def _compare(col: pa.Array | None, op: str, value, n: int) -> np.ndarray:
    if col is None:
        return np.zeros(n, dtype=bool)
    if pa.types.is_union(col.type):
        out = np.zeros(n, dtype=bool)
        codes = np.asarray(col.type_codes)
        offsets = np.asarray(col.offsets)
        for i, code in enumerate(col.type.type_codes):
            rows = np.flatnonzero(codes == code)
            if rows.size:
                child = col.field(i)
                out[rows] = _compare(child, op, value, len(child))[offsets[rows]]
        return out
    return _to_bool(_compare_plain(col, op, value), n)


def _to_bool(result, n: int) -> np.ndarray:
    if result is None:
        return np.zeros(n, dtype=bool)
    if isinstance(result, np.ndarray):
        return result
    return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _col_family(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
            pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
        return "strings"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    return None


def _any_per_row(col: pa.Array, hits) -> np.ndarray:
    """True for rows of list column ``col`` where any element of the flattened ``hits`` mask is true."""
    out = np.zeros(len(col), dtype=bool)
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    mask = _to_bool(hits, parents.shape[0])
    out[parents[mask]] = True
    return out


def _compare_plain(col: pa.Array, op: str, value):
    fam = _col_family(col.type)
    if op == "exists":
        valid = pc.is_valid(col)
        if fam in ("strings", "list"):
            valid = pc.and_(valid, pc.greater(pc.list_value_length(col), 0))
        return valid
    if fam is None or fam == "list":
        return None
    if op == "contains":
        if fam == "string":
            return pc.match_substring(col, value)
        if fam == "strings":
            return _any_per_row(col, pc.equal(pc.list_flatten(col), pa.scalar(value, pa.string())))
        return None
    if op == "in":
        return _is_in(col, fam, list(value))
    vfam = family(value)
    if vfam == "bool":
        return _CMP[op](col, pa.scalar(value)) if fam == "bool" else None
    if vfam == "string":
        return _CMP[op](col, pa.scalar(value, pa.string())) if fam == "string" else None
    if fam == "int":
        return _compare_int(col, op, value)
    if fam == "float":
        return _CMP[op](pc.cast(col, pa.float64()), pa.scalar(float(value), pa.float64()))
    return None


def _compare_int(col: pa.Array, op: str, value):
    """An integer column against a number, exactly (a fractional value is never cast to float)."""
    col = pc.cast(col, pa.int64())
    if isinstance(value, float) and not value.is_integer():
        below = math.floor(value)  # x > 2.5 <=> x > 2 ; x < 2.5 <=> x <= 2
        if op in ("gt", "ge"):
            return pc.greater(col, pa.scalar(below, pa.int64()))
        if op in ("lt", "le"):
            return pc.less_equal(col, pa.scalar(below, pa.int64()))
        return None if op == "eq" else pc.is_valid(col)  # eq: never; ne: every present value
    return _CMP[op](col, pa.scalar(int(value), pa.int64()))


def _is_in(col: pa.Array, fam: str, values: list):
    vfam = family(values[0])
    if fam == "strings":
        if vfam != "string":
            return None
        flat = pc.list_flatten(col)
        return _any_per_row(col, pc.is_in(flat, value_set=pa.array(values, pa.string())))
    if vfam == "string" and fam == "string":
        return pc.is_in(col, value_set=pa.array(values, pa.string()))
    if vfam == "bool" and fam == "bool":
        return pc.is_in(col, value_set=pa.array(values, pa.bool_()))
    if vfam == "number" and fam == "int":
        ints = [int(v) for v in values if not isinstance(v, float) or v.is_integer()]
        ints = [v for v in ints if _INT64[0] <= v <= _INT64[1]]
        return pc.is_in(pc.cast(col, pa.int64()), value_set=pa.array(ints, pa.int64()))
    if vfam == "number" and fam == "float":
        return pc.is_in(pc.cast(col, pa.float64()), value_set=pa.array([float(v) for v in values], pa.float64()))
    return None


# -- Python values to columns -------------------------------------------------------------------------------------
_FAMILY_ORDER = ("bool", "int", "float", "string", "strings", "other")
_FAMILY_TYPE = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string(),
                "strings": pa.list_(pa.string()), "other": pa.binary()}


def _value_family(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if _INT64[0] <= v <= _INT64[1] else "other"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "strings"
    return "other"


def _other_bytes(v) -> bytes:
    # Values no rule can compare with (maps, mixed lists, huge ints): kept as JSON so `exists` still sees them.
    return json.dumps(v, sort_keys=True, default=str).encode()


def python_column(values: Sequence) -> pa.Array:
    """An Arrow column holding Python values (None = missing) without changing how any of them compares.

    One family of values gives a plain column (bool, int64, float64, string, list<string>); several give a
    dense union with one child per family; values no predicate can compare (maps, lists of non-strings, ints
    beyond int64) are kept as JSON bytes, which only ``exists`` sees. No values at all give a null column.
    """
    fams = [None if v is None else _value_family(v) for v in values]
    present = [f for f in _FAMILY_ORDER if f in set(fams)]
    if not present:
        return pa.nulls(len(values))
    if len(present) == 1:
        f = present[0]
        data = [None if v is None else (_other_bytes(v) if f == "other" else v) for v in values]
        return pa.array(data, type=_FAMILY_TYPE[f])
    code_of = {f: i for i, f in enumerate(present)}
    children_values: list[list] = [[] for _ in present]
    type_codes = np.empty(len(values), dtype=np.int8)
    offsets = np.empty(len(values), dtype=np.int32)
    # a missing value goes into the first child as null (a union has no nulls of its own)
    for i, (v, f) in enumerate(zip(values, fams)):
        c = 0 if f is None else code_of[f]
        type_codes[i] = c
        offsets[i] = len(children_values[c])
        children_values[c].append(None if v is None else (_other_bytes(v) if f == "other" else v))
    children = [pa.array(vals, type=_FAMILY_TYPE[f]) for f, vals in zip(present, children_values)]
    return pa.UnionArray.from_dense(pa.array(type_codes, pa.int8()), pa.array(offsets, pa.int32()), children,
                                    present, list(range(len(present))))
