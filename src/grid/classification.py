"""Classifying the whole base: portfolios, key accounts, load priority, profitability (DOMAIN section 5).

Three scatter rounds, each run inside every shard next to its data (``grid.rules`` holds the logic; this module
holds the shard's side of it; ``grid.cluster.Grid.aclassify`` moves the pieces between shards):

1. :func:`features_and_links`: account features (kept on the shard's :class:`Classification` until round 2)
   and the shard's portfolio links;
2. the grid resolves portfolios over every shard's links (union-find kernel), then :func:`account_round`
   classifies the shard's accounts and returns its portfolio partials (and profitability partials);
3. the grid merges partials and classifies portfolios; :func:`store_round` turns them into one
   ``classification`` write per shard (logged, applied like any write: every changed context gets a new version).

After a write that changes a customer's inputs, the owning shard re-classifies that customer at account level
against the portfolios of the last full run (:func:`reclassify`, inside the write's apply step); portfolio totals
move at the next full run.
"""
from __future__ import annotations

import hashlib
import logging
import pickle

import msgpack

from grid.rules import (account_features, classify_accounts, customer_classification, portfolio_links,
                        portfolio_partials, profitability_partials)
from grid.rules.portfolios import portfolio_id_of

log = logging.getLogger(__name__)


class Classification:
    """A shard's classification state: the rules of the last full run and the portfolios it found.

    ``rules`` is None until the first full run reaches the shard; then every write re-classifies its customer.
    ``features`` / ``accounts`` are scratch between the rounds of one run (the grid runs one at a time) and
    are not state: they are neither logged nor snapshotted. ``failures`` counts re-classifications that failed
    (the write still commits; the customer keeps its previous classification), for ``/metrics``.
    """

    def __init__(self):
        self.rules = None
        self.portfolio_of: dict[str, str] = {}
        self.portfolios: dict[str, dict] = {}
        self.features = None
        self.accounts: list[dict] | None = None
        self.failures = 0

    def to_blob(self) -> bytes:
        # pickle: the rule set is a tree of frozen dataclasses with compiled predicates (no msgpack form);
        # the blob stays inside this shard's own data directory.
        return pickle.dumps((self.rules, self.portfolio_of, self.portfolios), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_blob(cls, blob: bytes) -> "Classification":
        out = cls()
        out.rules, out.portfolio_of, out.portfolios = pickle.loads(blob)
        return out

    # -- moving partitions: the moved accounts' portfolios (and the rules in force) go with them -----------
    def export(self, account_ids: set[str]) -> dict:
        """The rules in force, the portfolio of each of ``account_ids`` and those portfolios' results."""
        mine = {a: p for a, p in self.portfolio_of.items() if a in account_ids}
        pids = set(mine.values())
        return {"state": pickle.dumps((self.rules, mine, {p: v for p, v in self.portfolios.items() if p in pids}),
                                      protocol=pickle.HIGHEST_PROTOCOL)}

    def absorb(self, part: dict | None) -> None:
        """Take an export: a shard new to classification (after a scale-out) takes the rules with it, so the
        moved customers' writes keep re-classifying them against the last full run."""
        if not part:
            return
        rules, mine, portfolios = pickle.loads(part["state"])
        if self.rules is None:
            self.rules = rules
        self.portfolio_of.update(mine)
        self.portfolios.update(portfolios)

    def drop(self, account_ids: set[str]) -> None:
        """Forget ``account_ids``' portfolios, and the portfolios no account held here is in any more."""
        for a in account_ids:
            self.portfolio_of.pop(a, None)
        held = set(self.portfolio_of.values())
        self.portfolios = {p: v for p, v in self.portfolios.items() if p in held}

    def digest(self) -> bytes:
        """Stable across processes (a pickle of frozensets is not): rules version and the portfolios held."""
        return hashlib.sha256(msgpack.packb([
            None if self.rules is None else self.rules.version, sorted(self.portfolio_of.items()),
            repr(sorted(self.portfolios.items()))], use_bin_type=True)).digest()


def features_and_links(shard, rules) -> tuple[list[str], list[str], list[str]]:
    features = account_features(shard)
    shard.classification.features = features
    a, b = portfolio_links(features, rules)
    return list(a), list(b), features.column("account_id").to_pylist()


def account_round(shard, portfolio_of: dict, rules):
    state = shard.classification
    features = state.features if state.features is not None else account_features(shard)
    state.accounts = classify_accounts(features, rules)
    return (portfolio_partials(features, portfolio_of, rules),
            profitability_partials(shard, portfolio_of, rules.prices, rules.costs))


def store_round(shard, portfolio_of: dict, portfolios: dict, rules) -> dict:
    """The body of this shard's ``classification`` write (see :func:`apply_classification`)."""
    state = shard.classification
    accounts = state.accounts if state.accounts is not None else classify_accounts(account_features(shard), rules)
    by_customer = customer_classification(accounts, portfolio_of, portfolios, rules)
    state.features = state.accounts = None
    return {"state": pickle.dumps((rules, portfolio_of, portfolios), protocol=pickle.HIGHEST_PROTOCOL),
            "records": by_customer}


def apply_classification(shard, body: dict) -> list[str]:
    """Put a full run's results in force on the shard; returns the customers whose context changed."""
    loaded = Classification.from_blob(body["state"])
    state = shard.classification
    state.rules, state.portfolio_of, state.portfolios = loaded.rules, loaded.portfolio_of, loaded.portfolios
    changed = []
    for cid, cls in body["records"].items():
        rec = shard.records.get(cid)
        if rec is None:
            continue
        cls = _keep_churn(rec, cls)
        if rec.get("classification") != cls:
            shard.records[cid] = {**rec, "classification": cls}
            changed.append(cid)
    return changed


def reclassify(shard, customer_id: str) -> None:
    """Account-level re-classification of one customer after a write (no-op before the first full run).

    Never raises: a failure leaves the customer's previous classification and is counted; the write it follows
    is committed either way.
    """
    state = shard.classification
    if state.rules is None or customer_id not in shard.records:
        return
    try:
        accounts = classify_accounts(account_features(shard, [customer_id]), state.rules)
        cls = customer_classification(accounts, state.portfolio_of, state.portfolios, state.rules).get(customer_id)
    except Exception:  # noqa: BLE001 - counted and logged; the write is already committed
        state.failures += 1
        log.exception("shard %s: re-classification of %s failed", shard.shard_id, customer_id)
        return
    if cls is not None:
        rec = shard.records[customer_id]
        shard.records[customer_id] = {**rec, "classification": _keep_churn(rec, cls)}


def _keep_churn(rec: dict, cls: dict) -> dict:
    """``cls`` with the churn score the record already had (set by grid.decisions, not by these rules)."""
    old = rec.get("classification") or {}
    return {**cls, "churn_risk": old["churn_risk"]} if "churn_risk" in old else cls


__all__ = ["Classification", "features_and_links", "account_round", "store_round", "apply_classification",
           "reclassify", "portfolio_id_of"]
