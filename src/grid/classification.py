"""Classifying the whole base: portfolios, key accounts, load priority, profitability (DOMAIN section 5).

Three scatter rounds, each a pure function run inside every shard next to its data (``grid.rules`` holds the
logic; this module only moves the pieces):

1. ``features_and_links``: account features (kept on the shard) and the shard's portfolio links;
2. the caller resolves portfolios over every shard's links (union-find kernel), then ``account_round`` classifies
   the shard's accounts and returns its portfolio partials (and profitability partials);
3. the caller merges partials and classifies portfolios; ``store_round`` writes each customer's classification
   into its context and keeps what later single-customer re-classification needs.

After a write that changes a customer's inputs, the owning shard re-classifies that customer at account level
against the portfolios of the last full run (``reclassify``); portfolio totals move at the next full run.
"""
from __future__ import annotations

from grid.rules import (account_features, classify_accounts, classify_portfolios, customer_classification,
                        merge_keyed, portfolio_links, portfolio_partials, profitability_partials,
                        rank_profitability, resolve_portfolios)
from grid.rules.portfolios import portfolio_id_of


def features_and_links(shard, rules) -> tuple[list[str], list[str], list[str]]:
    features = account_features(shard)
    shard._features = features
    a, b = portfolio_links(features, rules)
    return list(a), list(b), features.column("account_id").to_pylist()


def account_round(shard, portfolio_of: dict, rules):
    features = shard._features
    shard._accounts_classified = classify_accounts(features, rules)
    return (portfolio_partials(features, portfolio_of, rules),
            profitability_partials(shard, portfolio_of, rules.prices, rules.costs))


def store_round(shard, portfolio_of: dict, portfolios: dict, rules) -> int:
    by_customer = customer_classification(shard._accounts_classified, portfolio_of, portfolios, rules)
    for cid, cls in by_customer.items():
        rec = shard.records.get(cid)
        if rec is not None:
            shard.records[cid] = {**rec, "classification": _keep_churn(rec, cls)}
            shard.changed(cid)
    shard._rules = rules
    shard._portfolio_of = portfolio_of
    shard._portfolios = portfolios
    shard._features = None
    shard._accounts_classified = None
    return len(by_customer)


def reclassify(shard, customer_id: str) -> None:
    """Account-level re-classification of one customer after a write (no-op before the first full run)."""
    rules = getattr(shard, "_rules", None)
    if rules is None or customer_id not in shard.records:
        return
    accounts = classify_accounts(account_features(shard, [customer_id]), rules)
    cls = customer_classification(accounts, shard._portfolio_of, shard._portfolios, rules).get(customer_id)
    if cls is not None:
        rec = shard.records[customer_id]
        shard.records[customer_id] = {**rec, "classification": _keep_churn(rec, cls)}


def _keep_churn(rec: dict, cls: dict) -> dict:
    """``cls`` with the churn score the record already had (set by grid.decisions, not by these rules)."""
    old = rec.get("classification") or {}
    return {**cls, "churn_risk": old["churn_risk"]} if "churn_risk" in old else cls


async def classify_base(grid, rules, progress=None) -> dict:
    """Run the three rounds over every shard; returns portfolios, members and the profitability ranking."""
    step = (lambda d: progress(d, 4)) if progress else (lambda d: None)
    step(0)
    rounds = await grid.ascatter(features_and_links, rules)
    step(1)
    accounts = [a for _, _, accts in rounds for a in accts]
    portfolio_of = resolve_portfolios([(a, b) for a, b, _ in rounds], accounts)
    per_shard = [{a: portfolio_of[a] for a in accts} for _, _, accts in rounds]
    parts = await _each(grid, account_round, [(m, rules) for m in per_shard])
    step(2)
    portfolios = classify_portfolios(merge_keyed([p for p, _ in parts]), rules)
    ranking = rank_profitability(merge_keyed([q for _, q in parts]))
    mine = [{pid: portfolios[pid] for pid in set(m.values()) if pid in portfolios} for m in per_shard]
    await _each(grid, store_round, [(m, ps, rules) for m, ps in zip(per_shard, mine)])
    step(3)
    members: dict[str, list[str]] = {}
    for a, pid in portfolio_of.items():
        members.setdefault(pid, []).append(a)
    for pid in portfolios:
        members.setdefault(pid, [])
    step(4)
    return {"rules_version": rules.version, "portfolio_of": portfolio_of, "portfolios": portfolios,
            "members": {k: sorted(v) for k, v in members.items()}, "profitability": ranking}


async def _each(grid, fn, args_per_shard: list[tuple]):
    import asyncio

    return await asyncio.gather(*(grid._aget(s.run.remote(fn, *args), grid.config.call_timeout_s * 20)
                                  for s, args in zip(grid.shards, args_per_shard)))


__all__ = ["classify_base", "reclassify", "portfolio_id_of"]
