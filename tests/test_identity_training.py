"""EM recovers m from comparison vectors drawn with known m, u and lambda; u from random pairs of a base."""
from __future__ import annotations

import numpy as np
import pytest

from grid.identity.rules import DEFAULT_RULES_DIR, load_identity_rules
from grid.identity.training import estimate_m, estimate_u

RULES = load_identity_rules(DEFAULT_RULES_DIR)


def _draw(rng, probs, n):
    return rng.choice(len(probs), size=n, p=np.asarray(probs) / np.sum(probs))


def test_em_recovers_m_and_lambda_from_known_parameters():
    rng = np.random.default_rng(3)
    comps = RULES.comparators
    true_m = {c.field: np.asarray(c.m) / np.sum(c.m) for c in comps}
    u = {c.field: (np.asarray(c.u) / np.sum(c.u)).tolist() for c in comps}
    # a blocked set with 30 % matches; a third of the fields missing at random (absence is no evidence)
    n, lam = 20_000, 0.3
    match = rng.random(n) < lam
    vectors = np.zeros((n, len(comps)), dtype=np.int8)
    for k, c in enumerate(comps):
        vectors[match, k] = _draw(rng, true_m[c.field], int(match.sum()))
        vectors[~match, k] = _draw(rng, u[c.field], int((~match).sum()))
        vectors[rng.random(n) < 0.33, k] = -1
    m, est_lam = estimate_m(RULES, vectors, u, iterations=100)
    assert est_lam == pytest.approx(lam, abs=0.01)
    for c in comps:
        for i, level in enumerate(c.levels):
            if level == "generation_differs":
                assert m[c.field][i] == c.m[i]  # the veto is kept as the rules say
            elif true_m[c.field][i] > 0.01:
                assert m[c.field][i] == pytest.approx(true_m[c.field][i], abs=0.02), (c.field, level)


def test_em_on_no_pairs_keeps_the_rules():
    m, lam = estimate_m(RULES, np.zeros((0, len(RULES.comparators)), np.int8),
                        {c.field: list(c.u) for c in RULES.comparators})
    assert lam == 0.0 and m == {c.field: list(c.m) for c in RULES.comparators}


def test_u_from_random_pairs_says_unrelated_customers_rarely_agree():
    from test_identity_resolver import _ctx

    from grid.synth.names import FIRST_NAMES, LAST_NAMES, STREET_NAMES

    contexts = [_ctx(f"C{i}", f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {LAST_NAMES[(7 * i) % len(LAST_NAMES)]}",
                     address=f"{100 + 13 * i} {STREET_NAMES[i % len(STREET_NAMES)]} St, Town, CA 9{i % 97:04d}",
                     phone=f"{200 + i}-555-{(37 * i) % 10000:04d}", account=f"A{i}", sp=f"S{i}", meter=f"M{i}")
                for i in range(200)]
    u = estimate_u(RULES, contexts, pairs=5000)
    for field in ("name", "address", "phone"):
        levels = dict(zip(next(c.levels for c in RULES.comparators if c.field == field), u[field]))
        assert levels["else"] > 0.9 and levels["exact"] < 0.01
    assert sum(u["name"]) == pytest.approx(1.0)


def test_trained_rules_write_a_file_the_loader_accepts(tmp_path):
    import shutil

    import yaml

    from test_identity_resolver import BASE

    from grid.identity.evidence import Evidence
    from grid.identity.rules import load_identity_rules
    from grid.identity.training import train

    records = [Evidence(source="t", name="Maria Garcia", address="7 Elm Dr, San Jose, CA 95112"),
               Evidence(source="t", name="John Smith", phone="559-555-0102")]
    trained = train(RULES, [dict(r) for r in BASE], records, u_pairs=200)
    (tmp_path / "schema").mkdir()
    shutil.copy(DEFAULT_RULES_DIR / "schema" / "identity.schema.json", tmp_path / "schema")
    (tmp_path / "identity.yaml").write_text(yaml.safe_dump(trained.to_yaml_doc()))
    again = load_identity_rules(tmp_path)
    assert [c.field for c in again.comparators] == [c.field for c in trained.comparators]
    for a, b in zip(again.comparators, trained.comparators):
        assert a.m == pytest.approx(b.m, rel=1e-5) and a.u == pytest.approx(b.u, rel=1e-5)
    assert again.prior == pytest.approx(trained.prior) and 0 < trained.prior < 0.5
