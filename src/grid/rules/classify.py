"""Key-account and load-priority classification of accounts, portfolios and customers.

Every rule is evaluated once over the whole feature table (a boolean column per rule); rows are then grouped by
the set of rules that fired, so the per-row results share one reasons list per distinct pattern and building
them costs a dict per row, not a rule evaluation per row. Each result carries the ids of the rules that fired
and the rule-set version, so a stored classification says which rules made it.

Portfolio totals are per-shard partials (:func:`portfolio_partials`, run on every shard) merged on the caller
(:func:`grid.rules.partials.merge_keyed`) and classified there (:func:`classify_portfolios`).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from grid.errors import InvalidInput
from grid.rules.columns import NEEDS_ACCOUNT_RULES
from grid.rules.features import gc_paused
from grid.rules.partials import KeyedPartials, aligned, label_digests, local_keys
from grid.rules.portfolios import portfolio_id_of
from grid.rules.ruleset import RuleSet
from kernels.aggregate import group_partials

__all__ = ["account_classes", "classify_accounts", "portfolio_partials", "classify_portfolios",
           "customer_classification"]


def _fired(masks: list[np.ndarray], ids: list[str], n: int) -> tuple[np.ndarray, list[list[str]]]:
    """(pattern index per row, the rule ids of each pattern) from one boolean column per rule."""
    if not masks or n == 0:
        return np.zeros(n, dtype=np.int64), [[]]
    if len(masks) <= 63:  # one int64 code per row: a 1-D unique, several times faster than unique(axis=0)
        code = np.zeros(n, dtype=np.int64)
        for j, m in enumerate(masks):
            code |= m.astype(np.int64) << j
        patterns, inverse = np.unique(code, return_inverse=True)
        return inverse.reshape(-1), [[ids[j] for j in range(len(ids)) if (int(p) >> j) & 1] for p in patterns]
    bits = np.stack(masks, axis=1)
    patterns, inverse = np.unique(np.packbits(bits, axis=1), axis=0, return_inverse=True)
    unpacked = np.unpackbits(patterns, axis=1)[:, : len(ids)].astype(bool)
    return inverse.reshape(-1), [[ids[j] for j in np.flatnonzero(row)] for row in unpacked]


def account_classes(features: pa.Table, rules: RuleSet) -> dict[str, np.ndarray]:
    """The per-rule masks and results of account classification, as columns.

    Returns
    -------
    dict
        ``key_account`` (bool, n), ``key_masks`` (bool, rules x n: the rules that fired, eligibility applied),
        ``level`` (int64, n: index into ``rules.load_priority.levels``), ``level_masks`` (bool, rules x n:
        rules that fired *at the resulting level*).
    """
    n = features.num_rows
    ka = rules.key_accounts
    eligible = ka.account_eligible.evaluate(features) if ka.account_eligible is not None else np.ones(n, bool)
    key_masks = [r.when.evaluate(features) & eligible for r in ka.account_rules]
    key = np.logical_or.reduce(key_masks) if key_masks else np.zeros(n, dtype=bool)
    lp = rules.load_priority
    default = lp.rank(lp.default)
    level = np.full(n, default, dtype=np.int64)
    raw = []
    for r in lp.rules:
        m = r.when.evaluate(features)
        raw.append(m)
        np.maximum(level, np.where(m, lp.rank(r.level), default), out=level)
    level_masks = [m & (level == lp.rank(r.level)) for r, m in zip(lp.rules, raw)]
    return {"key_account": key, "key_masks": key_masks, "level": level, "level_masks": level_masks}


def classify_accounts(features: pa.Table, rules: RuleSet) -> list[dict]:
    """Key-account status and load priority of every account of a feature table.

    Parameters
    ----------
    features : pyarrow.Table
        :func:`grid.rules.features.account_features` of a shard (or any table with the columns the rules name).
    rules : RuleSet

    Returns
    -------
    list of dict, one per row, in row order
        ``{account_id, customer_id, key_account, reasons, load_priority, load_priority_reasons,
        rules_version}``: ``reasons`` are the key-account rules that fired (file order; none when the account is
        not eligible), ``load_priority`` the highest level of the load-priority rules that fired (else the
        default) and ``load_priority_reasons`` the rules that fired at that level.
    """
    n = features.num_rows
    got = account_classes(features, rules)
    key_pat, key_reasons = _fired(got["key_masks"], [r.id for r in rules.key_accounts.account_rules], n)
    lvl_pat, lvl_reasons = _fired(got["level_masks"], [r.id for r in rules.load_priority.rules], n)
    levels = rules.load_priority.levels
    version = rules.version
    accounts = features.column("account_id").to_pylist()
    customers = (features.column("customer_id").to_pylist() if "customer_id" in features.column_names
                 else [None] * n)
    with gc_paused():
        return [{"account_id": a, "customer_id": c, "key_account": k, "reasons": list(key_reasons[kp]),
                 "load_priority": levels[lv], "load_priority_reasons": list(lvl_reasons[lp]),
                 "rules_version": version}
                for a, c, k, kp, lv, lp in zip(accounts, customers, got["key_account"].tolist(), key_pat.tolist(),
                                               got["level"].tolist(), lvl_pat.tolist())]


# -- portfolios ---------------------------------------------------------------------------------------------------
def _list_rows(features: pa.Table, name: str) -> tuple[np.ndarray, pa.Array]:
    col = features.column(name).combine_chunks()
    return (pc.list_parent_indices(col).to_numpy(zero_copy_only=False).astype(np.int64), pc.list_flatten(col))


def portfolio_partials(features: pa.Table, portfolio_of: Mapping[str, str], rules: RuleSet | None = None
                       ) -> KeyedPartials:
    """One shard's contribution to every portfolio's totals.

    Parameters
    ----------
    features : pyarrow.Table
        :func:`grid.rules.features.account_features` of the shard.
    portfolio_of : mapping of str to str
        Account id -> portfolio id (:func:`grid.rules.portfolios.resolve_portfolios`); an account it lacks (added
        since the last resolution) is a portfolio of its own.
    rules : RuleSet, optional
        With it, the partials also count key accounts and carry the highest load priority, which the portfolio
        columns ``n_key_accounts`` and ``load_priority`` need.

    Returns
    -------
    KeyedPartials
        Merge the shards' with :func:`grid.rules.partials.merge_keyed`, then :func:`classify_portfolios`.

    Notes
    -----
    Customers are counted distinctly on the shard and the counts added across shards: a customer lives on one
    shard (the grid's shard key), so no customer is counted twice. Sites (premise digests) and program codes are
    counted distinctly across shards.
    """
    n = features.num_rows
    pids = [portfolio_of.get(a) or portfolio_id_of(a) for a in features.column("account_id").to_pylist()]
    keys, ids = local_keys(pids)

    def ints(name: str) -> np.ndarray:
        if not n:
            return np.zeros(0, np.int64)
        return pc.fill_null(features.column(name), 0).to_numpy().astype(np.int64)

    columns = {"spend": group_partials(keys, ints("spend_12m_cents")),
               "peak": group_partials(keys, ints("peak_demand_w")),
               "usage": group_partials(keys, ints("usage_wh"))}
    customer_codes, _ = local_keys(features.column("customer_id").combine_chunks())
    per_shard = group_partials(keys, distinct=customer_codes)
    columns["customers"] = group_partials(per_shard.keys, per_shard.distinct_count())
    rows, sites = _list_rows(features, "site_keys")
    columns["sites"] = group_partials(keys[rows], distinct=sites.to_numpy(zero_copy_only=False).astype(np.int64))
    labels: dict[int, str] = {}
    rows, programs = _list_rows(features, "programs")
    kinds = features.column("kind").combine_chunks()
    kind_rows = np.flatnonzero(pc.is_valid(kinds).to_numpy(zero_copy_only=False))
    for name, rows, values in (("programs", rows, programs), ("kinds", kind_rows,
                                                             kinds.take(pa.array(kind_rows, pa.int64())))):
        codes, names = label_digests(values.cast(pa.string()))
        columns[name] = group_partials(keys[rows], distinct=codes)
        labels.update(names)
    meta = {}
    if rules is not None:
        got = account_classes(features, rules)
        columns["key_accounts"] = group_partials(keys, got["key_account"].astype(np.int64))
        columns["level"] = group_partials(keys, got["level"])
        meta = {"rules_version": rules.version, "levels": list(rules.load_priority.levels)}
    return KeyedPartials(columns, ids, labels, meta)


def _label_column(part, keys: np.ndarray, labels: dict[int, str]) -> pa.Array:
    """The labels each key counted, sorted by text, as a list<string> column aligned with ``keys``."""
    pos, held = aligned(part, keys)
    n = keys.shape[0]
    if not held.any():
        return pa.array([[] for _ in range(n)], pa.list_(pa.string()))
    offsets = part.distinct_offsets
    counts = np.where(held, offsets[pos + 1] - offsets[pos], 0)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=out_offsets[1:])
    total = int(out_offsets[-1])
    gather = np.arange(total) - np.repeat(out_offsets[:-1], counts) + np.repeat(offsets[pos], counts)
    digests = part.distinct[gather]
    label_keys = np.array(sorted(labels), dtype=np.int64)
    texts = np.array([labels[k] for k in label_keys.tolist()], dtype=object)
    text_rank = np.empty(len(texts), dtype=np.int64)
    text_rank[np.argsort(texts.astype(str), kind="stable")] = np.arange(len(texts))
    which = np.searchsorted(label_keys, digests)
    order = np.lexsort((text_rank[which], np.repeat(np.arange(n), counts)))
    values = pa.array(texts[which[order]].tolist(), pa.string())
    return pa.ListArray.from_arrays(pa.array(out_offsets, pa.int64()).cast(pa.int32()), values)


def _aligned_values(part, keys: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    pos, held = aligned(part, keys)
    v = part.distinct_count() if values is None else values
    return np.where(held, v[pos], 0) if len(part) else np.zeros(keys.shape[0], dtype=np.int64)


def portfolio_table(merged: KeyedPartials) -> pa.Table:
    """The portfolio columns (:data:`grid.rules.columns.PORTFOLIO_COLUMNS`) of merged partials, by portfolio id."""
    c = merged.columns
    if not c:
        return pa.table({"portfolio_id": pa.array([], pa.string())})
    keys = c["spend"].keys  # every account adds to "spend": its keys are every portfolio, ascending by id
    cols = {
        "portfolio_id": merged.ids.take(pa.array(keys)),
        "n_accounts": c["spend"].count,
        "n_customers": _aligned_values(c["customers"], keys, c["customers"].sum),
        "n_sites": _aligned_values(c["sites"], keys),
        "spend_12m_cents": c["spend"].sum,
        "max_account_spend_12m_cents": c["spend"].max,
        "peak_demand_w": c["peak"].sum,
        "max_account_peak_demand_w": c["peak"].max,
        "usage_wh": c["usage"].sum,
        "programs": _label_column(c["programs"], keys, merged.labels),
        "kinds": _label_column(c["kinds"], keys, merged.labels),
    }
    if "key_accounts" in c:
        cols["n_key_accounts"] = c["key_accounts"].sum
        levels = pa.array(merged.meta["levels"], pa.string())
        cols["load_priority"] = levels.take(pa.array(c["level"].max))
    return pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in cols.items()})


def classify_portfolios(merged: KeyedPartials, rules: RuleSet) -> dict[str, dict]:
    """Key-account status of every portfolio, with its totals.

    Parameters
    ----------
    merged : KeyedPartials
        Every shard's :func:`portfolio_partials`, merged.
    rules : RuleSet
        ``key_accounts.portfolio_rules`` are evaluated on the portfolio columns.

    Returns
    -------
    dict of portfolio id to dict
        ``{portfolio_id, key_account, reasons, rules_version, load_priority (when the partials were made with
        rules), totals: {n_accounts, n_customers, n_sites, spend_12m_cents, max_account_spend_12m_cents,
        peak_demand_w, max_account_peak_demand_w, usage_wh, programs, kinds, n_key_accounts}}``.

    Raises
    ------
    InvalidInput
        If a rule needs ``n_key_accounts`` or ``load_priority`` and the partials were made without these rules
        (or with another version of them).
    """
    needed = {f for r in rules.key_accounts.portfolio_rules for f in r.when.fields} & NEEDS_ACCOUNT_RULES
    made_with = merged.meta.get("rules_version")
    if needed and made_with != rules.version:
        raise InvalidInput(f"portfolio rules use {sorted(needed)}, which need partials made with rules "
                           f"{rules.version}; these were made with {made_with or 'no rules'}", field="rules")
    table = portfolio_table(merged)
    n = table.num_rows
    masks = [r.when.evaluate(table) for r in rules.key_accounts.portfolio_rules]
    pattern, reasons = _fired(masks, [r.id for r in rules.key_accounts.portfolio_rules], n)
    ids = table.column("portfolio_id").to_pylist()
    level = table.column("load_priority").to_pylist() if "load_priority" in table.column_names else [None] * n
    names = [c for c in table.column_names if c not in ("portfolio_id", "load_priority")]
    version = rules.version
    out = {}
    with gc_paused():
        values = [_as_lists(table.column(c)) if c in ("programs", "kinds") else table.column(c).to_pylist()
                  for c in names]
        for pid, p, lvl, row in zip(ids, pattern.tolist(), level, zip(*values)):
            result = {"portfolio_id": pid, "key_account": bool(reasons[p]), "reasons": list(reasons[p]),
                      "rules_version": version}
            if lvl is not None:
                result["load_priority"] = lvl
            result["totals"] = dict(zip(names, row))
            out[pid] = result
    return out


def _as_lists(col) -> list[list[str]]:
    """A list<string> column as Python lists, by slicing one flat list (Arrow's to_pylist is slower per row)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(arr).to_pylist()
    offsets = arr.offsets.to_numpy(zero_copy_only=False).tolist()
    return [flat[a:b] for a, b in zip(offsets, offsets[1:])]


def customer_classification(accounts: list[dict], portfolio_of: Mapping[str, str],
                            portfolios: Mapping[str, dict], rules: RuleSet) -> dict[str, dict]:
    """Roll account and portfolio results up to each customer (the context's ``classification``).

    A customer is a key account when any of its accounts is, or a portfolio it belongs to is; ``reasons`` lists
    the account rules (``account:<id>``) and portfolio rules (``portfolio:<id>``) behind it. Its load priority
    is the highest of its accounts' (reasons: the rules behind that level); ``portfolio_id`` is its first
    account's portfolio (a customer's accounts share one when the rules link them by customer, as
    ``rules/portfolios.yaml`` does), ``portfolio_ids`` all of them.
    """
    rank = rules.load_priority.rank
    out: dict[str, dict] = {}
    for acc in accounts:
        pid = portfolio_of.get(acc["account_id"]) or portfolio_id_of(acc["account_id"])
        c = out.get(acc["customer_id"])
        if c is None:
            c = out[acc["customer_id"]] = {
                "key_account": False, "reasons": [], "portfolio_id": pid, "portfolio_ids": [],
                "load_priority": acc["load_priority"], "load_priority_reasons": [],
                "rules_version": rules.version}
        if pid not in c["portfolio_ids"]:
            c["portfolio_ids"].append(pid)
        port = portfolios.get(pid)
        for reason in [f"account:{r}" for r in acc["reasons"]] + [
                f"portfolio:{r}" for r in (port["reasons"] if port is not None else ())]:
            if reason not in c["reasons"]:
                c["reasons"].append(reason)
        c["key_account"] = bool(c["reasons"])
        if rank(acc["load_priority"]) > rank(c["load_priority"]):
            c["load_priority"], c["load_priority_reasons"] = acc["load_priority"], []
        if acc["load_priority"] == c["load_priority"]:
            c["load_priority_reasons"] += [r for r in acc["load_priority_reasons"]
                                           if r not in c["load_priority_reasons"]]
    return out
