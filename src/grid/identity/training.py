"""m and u estimated from the data, as Splink estimates them: u from random pairs, m by expectation-maximisation.

- **u** (the probability of each level among non-matches) from random pairs of customers: two customers drawn
  at random are almost never the same, so their level frequencies are the non-match distribution.
- **m** (among matches) by EM over the pairs the blocking keys produce, u held fixed (Splink's default): the
  E-step gives each pair its match probability under the current m, u and lambda; the M-step sets m to the
  probability-weighted level frequencies and lambda to the mean probability. Deterministic-key hits are left
  out, so the keys do not teach the fuzzy fields what a match looks like twice.
- **prior**: the expected matching pairs (lambda times the blocked pairs, plus the pairs a key decided)
  spread over all record-customer pairs.

Levels never seen get a small floor (Laplace smoothing), so no weight is infinite. ``generation_differs``
keeps its veto: EM has no evidence about fathers and sons and must not learn one away.
"""
from __future__ import annotations

import numpy as np

from grid.identity.compare import compare
from grid.identity.evidence import record_key
from grid.identity.members import Member, member_of_context
from grid.identity.resolver import query

__all__ = ["comparison_vectors", "estimate_u", "estimate_m", "train"]

FLOOR = 1e-6
MIN_SUPPORT = 20.0  # expected matching pairs a field needs before EM's m replaces the rules' m
FIXED = {("name", "generation_differs")}  # rule-set levels training leaves as the rules say


def _vector(rules, a: Member, b: Member) -> np.ndarray:
    fields = [c.field for c in rules.comparators]
    v = np.full(len(fields), -1, dtype=np.int8)
    for f, lv, _, _ in compare(a, b, tuple(fields)):
        v[fields.index(f)] = lv
    return v


def _best_vector(rules, a: Member, members: list[Member]) -> np.ndarray:
    """The comparison vector of ``a`` against the customer's best-scoring member (as the resolver scores)."""
    best, best_w = None, -np.inf
    w = _weights(rules)
    for m in members:
        v = _vector(rules, a, m)
        s = sum(w[i][lv] for i, lv in enumerate(v) if lv >= 0)
        if s > best_w:
            best, best_w = v, s
    return best


def _weights(rules) -> list[np.ndarray]:
    return [np.log2(np.asarray(c.m) / np.asarray(c.u)) for c in rules.comparators]


def comparison_vectors(rules, shard, evidences) -> tuple[np.ndarray, int]:
    """Vectors (pairs x fields, level index or -1) of every record against every customer its blocks find,
    deterministic-key hits left out; and how many record-customer pairs a key decided."""
    from grid.identity import reads

    out = []
    keyed_pairs = 0
    for ev in evidences:
        m, keys = query(rules, ev)
        (found,) = reads.lookup(shard, [(record_key(ev), keys)], rules.deterministic, rules.max_block)
        keyed = {c for kind, cs in found["hits"].items() for c in cs}
        keyed_pairs += len(keyed)
        for cid, ms in found["members"].items():
            if cid not in keyed:
                out.append(_best_vector(rules, m, ms))
    return np.array(out, dtype=np.int8).reshape(-1, len(rules.comparators)), keyed_pairs


def estimate_u(rules, contexts: list[dict], pairs: int = 20_000, seed: int = 0) -> dict[str, list[float]]:
    """u per field and level from random pairs of customers' context members."""
    rng = np.random.default_rng(seed)
    members = [member_of_context(c, rules.region, rules.ignore_tax_ids) for c in contexts]
    n = len(members)
    counts = {c.field: np.zeros(len(c.levels)) for c in rules.comparators}
    if n >= 2:
        i = rng.integers(0, n, pairs)
        j = rng.integers(0, n, pairs)
        for a, b in zip(i[i != j], j[i != j]):
            v = _vector(rules, members[a], members[b])
            for k, c in enumerate(rules.comparators):
                if v[k] >= 0:
                    counts[c.field][v[k]] += 1
    return {f: _smooth(cnt) for f, cnt in counts.items()}


def _smooth(cnt: np.ndarray) -> list[float]:
    p = (cnt + 1.0) / (cnt.sum() + len(cnt))
    return np.maximum(p, FLOOR).tolist()


def estimate_m(rules, vectors: np.ndarray, u: dict[str, list[float]], iterations: int = 25,
               tol: float = 1e-6) -> tuple[dict[str, list[float]], float]:
    """m per field and level, and lambda among the pairs, by EM with u fixed."""
    comps = rules.comparators
    m = [np.asarray(c.m, dtype=float) for c in comps]
    uu = [np.asarray(u[c.field], dtype=float) for c in comps]
    lam = 0.5
    if len(vectors) == 0:
        return {c.field: list(c.m) for c in comps}, 0.0
    for _ in range(iterations):
        log_m = np.zeros(len(vectors))
        log_u = np.zeros(len(vectors))
        for k in range(len(comps)):
            v = vectors[:, k]
            seen = v >= 0
            log_m[seen] += np.log(m[k][v[seen]])
            log_u[seen] += np.log(uu[k][v[seen]])
        a = np.log(lam) + log_m
        b = np.log1p(-lam) + log_u
        p = 1.0 / (1.0 + np.exp(np.clip(b - a, -700, 700)))
        new_lam = float(np.clip(p.mean(), 1e-9, 1 - 1e-9))
        delta = abs(new_lam - lam)
        lam = new_lam
        for k, c in enumerate(comps):
            v = vectors[:, k]
            seen = v >= 0
            w = np.bincount(v[seen].astype(np.int64), weights=p[seen], minlength=len(c.levels))
            est = np.maximum((w + 1e-3) / (w.sum() + 1e-3 * len(c.levels)), FLOOR)
            for i, level in enumerate(c.levels):
                if (c.field, level) in FIXED:
                    est[i] = c.m[i]
            if w.sum() < MIN_SUPPORT:  # too few likely matches compare this field: keep what the rules say
                est = np.asarray(c.m, dtype=float)
            delta = max(delta, float(np.abs(est - m[k]).max()))
            m[k] = est
        if delta < tol:
            break
    return {c.field: m[k].tolist() for k, c in enumerate(comps)}, lam


def train(rules, contexts: list[dict], evidences, u_pairs: int = 20_000, seed: int = 0):
    """Rules with u, m and prior estimated on a base (``contexts``) and the records to link to it."""
    from grid.identity.batch import BatchResolver

    u = estimate_u(rules, contexts, u_pairs, seed)
    for c in rules.comparators:  # the fixed levels keep their u too (no random pair is a father and son)
        for i, level in enumerate(c.levels):
            if (c.field, level) in FIXED:
                u[c.field][i] = c.u[i]
    shard = BatchResolver(rules, contexts).shard
    evidences = list(evidences)
    vectors, keyed = comparison_vectors(rules, shard, evidences)
    m, lam = estimate_m(rules, vectors, u)
    total = max(len(contexts), 1) * max(len(evidences), 1)
    prior = float(np.clip((lam * len(vectors) + keyed) / total, 1e-9, 0.5))
    return rules.with_parameters(m, u, prior)
