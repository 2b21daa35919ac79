"""Portfolio resolution: links gathered on every shard, connected components once on the caller.

# Design: a portfolio is a connected component of a bipartite graph whose nodes are accounts and link keys
# (``"<rule id>\x1f<value>"``: a tax id, a root entity, an owner key). Each shard emits the edges of its own
# accounts (:func:`portfolio_links`, cheap and local); since entities span shards, only the caller, holding the
# edges of every shard, can resolve. :func:`resolve_portfolios` numbers the nodes with Arrow's dictionary encoder,
# accounts first in sorted order, so the union-find kernel's canonical label (the smallest node of a component)
# is the smallest account id of the portfolio: ``"P" + that id`` is the portfolio id, the same whatever the
# sharding or the edge order.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput
from grid.rules.ruleset import LinkRule, RuleSet
from kernels.unionfind import union_find_roots

__all__ = ["portfolio_links", "resolve_portfolios", "KEY_SEPARATOR", "portfolio_id_of"]

KEY_SEPARATOR = "\x1f"  # ASCII unit separator: never part of an account id, so key nodes cannot meet accounts


def portfolio_id_of(account_id: str) -> str:
    """The portfolio id of a portfolio whose smallest account id is ``account_id``."""
    return "P" + account_id


def _string_values(col: pa.Array, n: int) -> tuple[np.ndarray, pa.Array] | None:
    """(row of each value, the values) of a string or list-of-string column; None for other types."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.arange(n, dtype=np.int64), col.cast(pa.string())
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_string(t.value_type):
        return (pc.list_parent_indices(col).to_numpy(zero_copy_only=False).astype(np.int64),
                pc.list_flatten(col))
    if pa.types.is_union(t):  # a free-form attribute holding strings on some rows: take those rows only
        values = col.to_pylist()
        rows, texts = [], []
        for i, v in enumerate(values):
            for x in (v if isinstance(v, list) else [v]):
                if isinstance(x, str):
                    rows.append(i)
                    texts.append(x)
        return np.array(rows, dtype=np.int64), pa.array(texts, pa.string())
    return None


def _rule_links(features: pa.Table, rule: LinkRule) -> tuple[pa.Array, pa.Array] | None:
    n = features.num_rows
    if rule.key not in features.column_names or n == 0:
        return None
    col = features.column(rule.key).combine_chunks()
    got = _string_values(col, n)
    if got is None:
        return None
    rows, values = got
    keep = pc.and_(pc.is_valid(values), pc.greater(pc.utf8_length(values), 0))
    if rule.ignore:
        keep = pc.and_(keep, pc.invert(pc.is_in(values, value_set=pa.array(sorted(rule.ignore), pa.string()))))
    keep = pc.fill_null(keep, False).to_numpy(zero_copy_only=False)
    if rule.where is not None:
        keep &= rule.where.evaluate(features)[rows]
    sel = np.flatnonzero(keep)
    accounts = features.column("account_id").combine_chunks().take(pa.array(rows[sel]))
    keys = pc.binary_join_element_wise(rule.id + KEY_SEPARATOR, values.take(pa.array(sel)), "")
    return accounts, keys


def portfolio_links(features: pa.Table, rules: RuleSet) -> tuple[list[str], list[str]]:
    """The portfolio links of one shard's accounts.

    Parameters
    ----------
    features : pyarrow.Table
        :func:`grid.rules.features.account_features` of the shard.
    rules : RuleSet
        Its ``links`` say which column values join accounts (and on which accounts, ``where``).

    Returns
    -------
    (list of str, list of str)
        Edge ``i`` joins account ``keys_a[i]`` and link key ``keys_b[i]`` (``"<rule id>\\x1f<value>"``).
        Missing, empty and ignored values give no edge. Pass every shard's pair to :func:`resolve_portfolios`.
    """
    a_parts, b_parts = [], []
    for rule in rules.links:
        got = _rule_links(features, rule)
        if got is not None:
            a_parts.append(got[0])
            b_parts.append(got[1])
    if not a_parts:
        return [], []
    return (pa.concat_arrays(a_parts).to_pylist(), pa.concat_arrays(b_parts).to_pylist())


def _strings(values, name: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values if isinstance(values, list) else list(values), pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInput(f"{name} must hold strings", field=name) from exc
    elif not pa.types.is_string(values.type):
        if not pa.types.is_large_string(values.type) and len(values):
            raise InvalidInput(f"{name} must hold strings, got {values.type}", field=name)
        values = values.cast(pa.string())
    if values.null_count:
        raise InvalidInput(f"{name} must not hold nulls", field=name)
    return values


def resolve_portfolios(links: Sequence[tuple[Sequence[str], Sequence[str]]],
                       account_ids: Sequence[str]) -> dict[str, str]:
    """Portfolio of every account, from the links of every shard.

    Parameters
    ----------
    links : sequence of (keys_a, keys_b)
        One pair per shard, as returned by :func:`portfolio_links` (lists or Arrow string arrays). An edge may
        join any two strings; nodes that are not in ``account_ids`` are link keys.
    account_ids : sequence of str
        Every account of the base (duplicates allowed).

    Returns
    -------
    dict of str to str
        Each account id to its portfolio id, ``"P" + the smallest account id of the portfolio``; an account with
        no link is a portfolio of its own. Deterministic: the same links in any order and any split across
        shards give the same result.

    Raises
    ------
    InvalidInput
        If a pair's lists differ in length or hold non-strings or nulls.
    """
    accounts = _strings(account_ids, "account_ids")
    accounts = pc.unique(accounts)
    accounts = accounts.take(pc.sort_indices(accounts))  # Arrow's byte order is Python's code-point order
    n_acc = len(accounts)
    arrays_a, arrays_b = [], []
    for i, pair in enumerate(links):
        if len(pair) != 2:
            raise InvalidInput(f"links[{i}] must be a pair (keys_a, keys_b)", field=f"links[{i}]")
        a = _strings(pair[0], f"links[{i}][0]")
        b = _strings(pair[1], f"links[{i}][1]")
        if len(a) != len(b):
            raise InvalidInput(f"links[{i}] has {len(a)} keys_a and {len(b)} keys_b", field=f"links[{i}]")
        arrays_a.append(a)
        arrays_b.append(b)
    n_links = sum(len(a) for a in arrays_a)
    nodes = pa.concat_arrays([accounts, *arrays_a, *arrays_b]) if n_links else accounts
    enc = pc.dictionary_encode(nodes)
    index = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # accounts come first and are distinct, so account i is node i
    labels = union_find_roots(len(enc.dictionary), index[n_acc:n_acc + n_links], index[n_acc + n_links:])
    ids = accounts.to_pylist()
    return {a: "P" + ids[label] for a, label in zip(ids, labels[:n_acc].tolist())}
