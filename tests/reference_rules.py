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
