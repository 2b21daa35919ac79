"""Portfolios explain themselves: for each member account, the links that put it in (rule, shared value, the
accounts it shares it with), its customer, and the portfolio's root entity (its id and legal name) when an
ownership chain made it.

Built at classification from the same link edges the union-find resolved (``grid.rules.portfolio_links``:
account -> ``"<rule id>\\x1f<value>"``), so an explanation is exactly the evidence that was used: a key only one
account holds links nothing and is left out; an account with no shared key is alone in its portfolio.
"""
from __future__ import annotations

from collections.abc import Sequence

from grid.rules.portfolios import KEY_SEPARATOR

__all__ = ["explain_portfolios", "entity_names", "name_roots", "MAX_WITH"]

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


def entity_names(records: dict[str, dict], entity_ids: Sequence[str]) -> dict[str, str]:
    """Legal names of these entities, from the ownership chains of a shard's contexts (a root entity is the
    last link of the chains it heads; any customer it owns names it)."""
    want, out = set(entity_ids), {}
    for rec in records.values():
        for e in rec.get("ownership") or []:
            eid = e.get("entity_id")
            if eid in want and e.get("legal_name") and eid not in out:
                out[eid] = e["legal_name"]
        if len(out) == len(want):
            break
    return out


def name_roots(explained: dict[str, dict], names: dict[str, str]) -> dict[str, dict]:
    """Give every portfolio with a root entity that entity's legal name (``root_legal_name``)."""
    for p in explained.values():
        name = names.get(p.get("root_entity_id"))
        if name:
            p["root_legal_name"] = name
    return explained
