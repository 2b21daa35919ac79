"""Slow, obviously correct versions of the rules engine: predicates row by row, portfolios by graph search.

Written from the semantics in ``grid.rules.predicates`` and DOMAIN.md section 5, not from the engine's code.
"""
from __future__ import annotations

import math
import operator
from collections import defaultdict, deque

INT64 = (-(2**63), 2**63 - 1)
_OPS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt,
        "le": operator.le}


def family(v):
    """A rule compares numbers with numbers, strings with strings and bools with bools; nothing else."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "number" if INT64[0] <= v <= INT64[1] else None
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return None


def _string_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def matches(tree: dict, row: dict) -> bool:
    """Whether ``row`` (column -> Python value, None or absent = missing) satisfies predicate ``tree``."""
    if "all" in tree:
        return all(matches(p, row) for p in tree["all"])
    if "any" in tree:
        return any(matches(p, row) for p in tree["any"])
    if "not" in tree:
        return not matches(tree["not"], row)
    v = row.get(tree["field"])
    op = tree["op"]
    if op == "exists":
        return v is not None and not (isinstance(v, list) and len(v) == 0)
    if v is None:
        return False
    value = tree["value"]
    if op == "contains":
        if isinstance(v, str):
            return value in v
        if _string_list(v):
            return value in v
        return False
    if op == "in":
        if _string_list(v):
            return any(family(u) == "string" and x == u for x in v for u in value)
        return any(family(v) is not None and family(v) == family(u) and v == u for u in value)
    if family(v) is None or family(v) != family(value):
        return False
    if isinstance(v, float) and math.isnan(v):
        return op == "ne"
    return _OPS[op](v, value)


def portfolios(rows: list[dict], link_rules: list[dict]) -> dict[str, str]:
    """Account -> ``"P" + smallest account id`` of its portfolio, by breadth-first search.

    ``rows`` are account feature rows; ``link_rules`` are ``{id, key, where?, ignore?}``: accounts sharing a
    value of column ``key`` (a string, or any element of a list) are linked, among the rows passing ``where``.
    """
    by_value: dict[tuple[str, str], list[str]] = defaultdict(list)
    values_of: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        for rule in link_rules:
            if rule.get("where") is not None and not matches(rule["where"], row):
                continue
            v = row.get(rule["key"])
            vals = v if isinstance(v, list) else [v]
            for x in vals:
                if isinstance(x, str) and x != "" and x not in rule.get("ignore", ()):
                    by_value[(rule["id"], x)].append(row["account_id"])
                    values_of[row["account_id"]].append((rule["id"], x))
    out: dict[str, str] = {}
    for start in sorted({r["account_id"] for r in rows}):
        if start in out:
            continue
        seen, queue = {start}, deque([start])
        while queue:
            a = queue.popleft()
            for key in values_of.get(a, ()):
                for b in by_value[key]:
                    if b not in seen:
                        seen.add(b)
                        queue.append(b)
        label = "P" + min(seen)
        for a in seen:
            out[a] = label
    return out


def classify_account(row: dict, key_rules: dict, load_rules: dict) -> dict:
    """Key-account status and load priority of one feature row.

    ``key_rules``: ``{eligible: tree | None, rules: [(id, tree)]}``; ``load_rules``: ``{levels, default,
    rules: [(id, level, tree)]}``.
    """
    eligible = key_rules["eligible"] is None or matches(key_rules["eligible"], row)
    reasons = [rid for rid, tree in key_rules["rules"] if eligible and matches(tree, row)]
    levels = load_rules["levels"]
    fired = [(rid, levels.index(level)) for rid, level, tree in load_rules["rules"] if matches(tree, row)]
    rank = max([levels.index(load_rules["default"])] + [r for _, r in fired])
    return {"key_account": bool(reasons), "reasons": reasons, "load_priority": levels[rank],
            "load_priority_reasons": [rid for rid, r in fired if r == rank]}


def portfolio_totals(rows: list[dict], portfolio_of: dict[str, str], classes: dict[str, dict] | None) -> dict:
    """Per-portfolio totals of feature rows (see grid.rules.columns.PORTFOLIO_COLUMNS), by plain iteration.

    ``classes`` (account id -> classify_account result, with ``levels`` under the key ``"__levels__"``) adds
    ``n_key_accounts`` and ``load_priority``.
    """
    out: dict[str, dict] = {}
    for row in rows:
        pid = portfolio_of.get(row["account_id"], "P" + row["account_id"])
        t = out.setdefault(pid, {"n_accounts": 0, "customers": set(), "sites": set(), "spend_12m_cents": 0,
                                 "max_account_spend_12m_cents": None, "peak_demand_w": 0,
                                 "max_account_peak_demand_w": None, "usage_wh": 0, "programs": set(),
                                 "kinds": set(), "n_key_accounts": 0, "level": -1})
        t["n_accounts"] += 1
        t["customers"].add(row["customer_id"])
        t["sites"].update(row["site_keys"])
        spend, peak = row["spend_12m_cents"] or 0, row["peak_demand_w"] or 0
        t["spend_12m_cents"] += spend
        t["peak_demand_w"] += peak
        t["usage_wh"] += row["usage_wh"] or 0
        t["max_account_spend_12m_cents"] = max(spend, t["max_account_spend_12m_cents"] if
                                               t["max_account_spend_12m_cents"] is not None else spend)
        t["max_account_peak_demand_w"] = max(peak, t["max_account_peak_demand_w"] if
                                             t["max_account_peak_demand_w"] is not None else peak)
        t["programs"].update(row["programs"] or ())
        if row["kind"] is not None:
            t["kinds"].add(row["kind"])
        if classes is not None:
            c = classes[row["account_id"]]
            t["n_key_accounts"] += c["key_account"]
            t["level"] = max(t["level"], classes["__levels__"].index(c["load_priority"]))
    result = {}
    for pid, t in out.items():
        r = {"n_accounts": t["n_accounts"], "n_customers": len(t["customers"]), "n_sites": len(t["sites"]),
             "spend_12m_cents": t["spend_12m_cents"], "max_account_spend_12m_cents": t["max_account_spend_12m_cents"],
             "peak_demand_w": t["peak_demand_w"], "max_account_peak_demand_w": t["max_account_peak_demand_w"],
             "usage_wh": t["usage_wh"], "programs": sorted(t["programs"]), "kinds": sorted(t["kinds"])}
        if classes is not None:
            r["n_key_accounts"] = t["n_key_accounts"]
            r["load_priority"] = classes["__levels__"][t["level"]]
        result[pid] = r
    return result
