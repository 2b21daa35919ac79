"""The rules engine: portfolios, key accounts, load priority and profitability, driven by rule files in ``rules/``.

Per shard (pure functions of the shard's state, run inside a shard actor)::

    features = account_features(shard)                  # one row per account
    links = portfolio_links(features, rules)            # edges of this shard's accounts
    accounts = classify_accounts(features, rules)       # key account + load priority, with reasons
    part = portfolio_partials(features, portfolio_of, rules)
    prof = profitability_partials(shard, portfolio_of, rules.prices, rules.costs)

On the caller::

    portfolio_of = resolve_portfolios([links of every shard], all_account_ids)
    portfolios = classify_portfolios(merge_keyed(parts), rules)
    ranking = rank_profitability(merge_keyed(profs))
"""
from grid.rules.classify import (account_classes, classify_accounts, classify_portfolios, customer_classification,
                                 portfolio_partials, portfolio_table)
from grid.rules.costs import CostToServe, PriceCurve
from grid.rules.features import account_features
from grid.rules.partials import KeyedPartials, merge_keyed
from grid.rules.portfolios import portfolio_links, resolve_portfolios
from grid.rules.predicates import Predicate, compile_predicate
from grid.rules.profitability import account_profitability, profitability_partials, rank_profitability
from grid.rules.ruleset import ActiveRules, RuleSet, load_ruleset

__all__ = ["RuleSet", "load_ruleset", "ActiveRules", "account_features", "portfolio_links", "resolve_portfolios",
           "classify_accounts", "account_classes", "portfolio_partials", "portfolio_table", "classify_portfolios",
           "customer_classification", "KeyedPartials", "merge_keyed", "profitability_partials",
           "account_profitability", "rank_profitability", "PriceCurve", "CostToServe", "Predicate",
           "compile_predicate"]
