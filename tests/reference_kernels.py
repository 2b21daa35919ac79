"""Slow, obviously correct versions of the reconciliation, aggregation and union-find kernels.

Plain Python over lists and dicts, written from the rules in DOMAIN.md section 4 and the kernels' docstrings,
not from the kernels. Tests hold each kernel equal to its reference exactly.
"""
from __future__ import annotations

from collections import defaultdict

# Outcome and line-status codes, written out here rather than imported, so a reordering in the kernel shows up.
MATCH, AMOUNT_MISMATCH, MISSING_LINE, MISSING_BILL = 0, 1, 2, 3
EQUAL, DIFFERS, COMPUTED_ONLY, LEGACY_ONLY = 0, 1, 2, 3


def reconcile(comp_lines, legacy_lines, n_bills, legacy_present, tolerance_cents=0):
    """Compare bills line by line by code.

    ``comp_lines`` and ``legacy_lines`` are lists of (bill, code, amount_cents). Returns
    ``(outcome, diff_cents, pairs)``: two lists of length ``n_bills`` and a list of
    ``(bill, code, computed, legacy, status)`` sorted by (bill, code).
    """
    computed: dict[tuple[int, int], int] = defaultdict(int)
    legacy: dict[tuple[int, int], int] = defaultdict(int)
    for bill, code, amount in comp_lines:
        computed[(bill, code)] += amount
    for bill, code, amount in legacy_lines:
        legacy[(bill, code)] += amount

    outcome = [MATCH if legacy_present[b] else MISSING_BILL for b in range(n_bills)]
    diff = [0] * n_bills
    pairs = []
    for bill, code in sorted(set(computed) | set(legacy)):
        c = computed.get((bill, code), 0)
        leg = legacy.get((bill, code), 0)
        if (bill, code) in computed and (bill, code) in legacy:
            status = EQUAL if abs(c - leg) <= tolerance_cents else DIFFERS
            severity = MATCH if status == EQUAL else AMOUNT_MISMATCH
        else:
            status = COMPUTED_ONLY if (bill, code) in computed else LEGACY_ONLY
            severity = MISSING_LINE
        pairs.append((bill, code, c, leg, status))
        diff[bill] += abs(c - leg)
        outcome[bill] = max(outcome[bill], severity)
    return outcome, diff, pairs


def group(keys, values=None, distinct=None):
    """Per key: ``{key: (sum, max, count, sorted distinct values)}``; sum/max None without values."""
    rows: dict[int, list[int]] = defaultdict(list)
    seen: dict[int, set[int]] = defaultdict(set)
    for i, key in enumerate(keys):
        rows[key].append(values[i] if values is not None else 0)
        if distinct is not None:
            seen[key].add(distinct[i])
    out = {}
    for key, vals in rows.items():
        out[key] = (sum(vals) if values is not None else None,
                    max(vals) if values is not None else None,
                    len(vals),
                    sorted(seen[key]) if distinct is not None else None)
    return out


def components(n, edges):
    """Smallest node id of each node's component, by repeated relabelling until nothing changes."""
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            low = min(label[a], label[b])
            if label[a] != low or label[b] != low:
                label[a] = label[b] = low
                changed = True
    return label
