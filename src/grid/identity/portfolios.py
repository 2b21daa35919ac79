"""Portfolios explain themselves: for each member account, the links that put it in (rule, shared value, the
accounts it shares it with), its customer, and the portfolio's root entity when an ownership chain made it.

Built at classification from the same link edges the union-find resolved (``grid.rules.portfolio_links``:
account -> ``"<rule id>\\x1f<value>"``), so an explanation is exactly the evidence that was used: a key only one
account holds links nothing and is left out; an account with no shared key is alone in its portfolio.
"""
from __future__ import annotations

from collections.abc import Sequence

from grid.rules.portfolios import KEY_SEPARATOR

__all__ = ["explain_portfolios", "MAX_WITH"]

MAX_WITH = 5  # accounts named per shared key (the count says how many share it)


def explain_portfolios(links: Sequence[tuple[Sequence[str], Sequence[str]]],
                       portfolio_of: dict[str, str]) -> dict[str, dict]:
    """``{portfolio id: {root_entity_id, customers, members: [{account_id, customer_id, why: [...]}]}}``."""
    by_key: dict[str, set[str]] = {}
    for accounts, keys in links:
        for a, k in zip(accounts, keys):
            by_key.setdefault(k, set()).add(a)
    why: dict[str, list[dict]] = {}
    customer: dict[str, str] = {}
    roots: dict[str, str] = {}
    for k in sorted(by_key):
        members = sorted(by_key[k])
        rule, _, value = k.partition(KEY_SEPARATOR)
        if rule == "same_customer":
            for a in members:
                customer[a] = value
        if rule == "common_root":
            for a in members:
                roots.setdefault(portfolio_of.get(a, ""), value)
        if len(members) < 2:
            continue
        for a in members:
            others = [b for b in members if b != a]
            why.setdefault(a, []).append({"rule": rule, "value": value, "shared_by": len(members),
                                          "with": others[:MAX_WITH]})
    out: dict[str, dict] = {}
    for a in sorted(portfolio_of):
        pid = portfolio_of[a]
        p = out.setdefault(pid, {"root_entity_id": roots.get(pid), "customers": set(), "members": []})
        if a in customer:
            p["customers"].add(customer[a])
        p["members"].append({"account_id": a, "customer_id": customer.get(a),
                             "why": why.get(a) or [{"rule": "alone", "value": a, "shared_by": 1, "with": []}]})
    for p in out.values():
        p["customers"] = sorted(p["customers"])
        if p["root_entity_id"] is None:
            del p["root_entity_id"]
    return out
