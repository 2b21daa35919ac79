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
from grid.rules.partials import KeyedPartials, aligned, digests
from grid.rules.portfolios import portfolio_id_of
from grid.rules.ruleset import RuleSet
from kernels.aggregate import group_partials

__all__ = ["account_classes", "classify_accounts", "portfolio_partials", "classify_portfolios",
           "customer_classification"]


def _fired(masks: list[np.ndarray], ids: list[str], n: int) -> tuple[np.ndarray, list[list[str]]]:
    """(pattern index per row, the rule ids of each pattern) from one boolean column per rule."""
    if not masks or n == 0:
        return np.zeros(n, dtype=np.int64), [[]]
    bits = np.stack(masks, axis=1)  # (n, rules)
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
    return [{"account_id": a, "customer_id": c, "key_account": k, "reasons": list(key_reasons[kp]),
             "load_priority": levels[lv], "load_priority_reasons": list(lvl_reasons[lp]), "rules_version": version}
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
    """
    n = features.num_rows
    accounts = features.column("account_id").to_pylist()
    pids = [portfolio_of.get(a) or portfolio_id_of(a) for a in accounts]
    cache: dict[str, int] = {}
    keys = digests(pids, cache)
    ids = {cache[p]: p for p in set(pids)}

    def ints(name: str) -> np.ndarray:
        return pc.fill_null(features.column(name), 0).to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)

    columns = {"spend": group_partials(keys, ints("spend_12m_cents")),
               "peak": group_partials(keys, ints("peak_demand_w")),
               "usage": group_partials(keys, ints("usage_wh")),
               "customers": group_partials(keys, distinct=digests(features.column("customer_id").to_pylist(), {}))}
    rows, sites = _list_rows(features, "site_keys")
    columns["sites"] = group_partials(keys[rows], distinct=sites.to_numpy(zero_copy_only=False).astype(np.int64))
    labels: dict[int, str] = {}
    for name, column, listed in (("programs", "programs", True), ("kinds", "kind", False)):
        if listed:
            rows, values = _list_rows(features, column)
            texts = values.to_pylist()
        else:
            texts = features.column(column).to_pylist()
            rows = np.flatnonzero([t is not None for t in texts])
            texts = [texts[i] for i in rows.tolist()]
        label_cache: dict[str, int] = {}
        columns[name] = group_partials(keys[rows], distinct=digests(texts, label_cache))
        labels.update({d: t for t, d in label_cache.items()})
    meta = {}
    if rules is not None:
        got = account_classes(features, rules)
        columns["key_accounts"] = group_partials(keys, got["key_account"].astype(np.int64))
        columns["level"] = group_partials(keys, got["level"])
        meta = {"rules_version": rules.version, "levels": list(rules.load_priority.levels)}
    return KeyedPartials(columns, ids, labels, meta)


def _label_lists(part, keys: np.ndarray, labels: dict[int, str]) -> list[list[str]]:
    pos, held = aligned(part, keys)
    offsets = part.distinct_offsets
    values = part.distinct.tolist()
    out = []
    for p, h in zip(pos.tolist(), held.tolist()):
        out.append(sorted(labels[v] for v in values[offsets[p]:offsets[p + 1]]) if h else [])
    return out


def _counts(part, keys: np.ndarray, how: str) -> np.ndarray:
    pos, held = aligned(part, keys)
    if how == "distinct":
        v = part.distinct_count()
    else:
        v = getattr(part, how)
    if len(part) == 0:
        return np.zeros(keys.shape[0], dtype=np.int64)
    return np.where(held, v[pos], 0)


def portfolio_table(merged: KeyedPartials) -> pa.Table:
    """The portfolio columns (:data:`grid.rules.columns.PORTFOLIO_COLUMNS`) of merged partials, by portfolio id."""
    c = merged.columns
    if not c:
        return pa.table({"portfolio_id": pa.array([], pa.string())})
    keys = c["spend"].keys
    cols = {
        "portfolio_id": pa.array([merged.ids[k] for k in keys.tolist()], pa.string()),
        "n_accounts": c["spend"].count,
        "n_customers": _counts(c["customers"], keys, "distinct"),
        "n_sites": _counts(c["sites"], keys, "distinct"),
        "spend_12m_cents": c["spend"].sum,
        "max_account_spend_12m_cents": c["spend"].max,
        "peak_demand_w": c["peak"].sum,
        "max_account_peak_demand_w": c["peak"].max,
        "usage_wh": c["usage"].sum,
        "programs": pa.array(_label_lists(c["programs"], keys, merged.labels), pa.list_(pa.string())),
        "kinds": pa.array(_label_lists(c["kinds"], keys, merged.labels), pa.list_(pa.string())),
    }
    if "key_accounts" in c:
        cols["n_key_accounts"] = c["key_accounts"].sum
        levels = merged.meta["levels"]
        cols["load_priority"] = pa.array([levels[i] for i in c["level"].max.tolist()], pa.string())
    table = pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v)) for k, v in cols.items()})
    return table.sort_by("portfolio_id")


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
    rows = table.to_pylist()
    out = {}
    for row, p in zip(rows, pattern.tolist()):
        pid = row.pop("portfolio_id")
        result = {"portfolio_id": pid, "key_account": bool(reasons[p]), "reasons": list(reasons[p]),
                  "rules_version": rules.version}
        if "load_priority" in row:
            result["load_priority"] = row.pop("load_priority")
        result["totals"] = row
        out[pid] = result
    return out


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
