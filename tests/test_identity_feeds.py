"""Precision and recall on the generator's messy sources (grid.synth.sources) against their recorded truth."""
from __future__ import annotations

from collections import Counter

import pytest

from grid.identity.batch import BatchResolver
from grid.identity.feeds import SOURCES, feed_records
from grid.identity.rules import DEFAULT_RULES_DIR, load_identity_rules


@pytest.fixture(scope="module")
def feeds(base_dir, tmp_path_factory):
    from grid.base import read_manifest
    from grid.partitions import PARTITIONS
    from grid.shard import Shard
    from grid.synth.sources import generate_sources

    out = tmp_path_factory.mktemp("feeds")
    generate_sources(base_dir, out, meter_days=1)
    shard = Shard(0, list(range(PARTITIONS)))
    for c in range(int(read_manifest(base_dir)["chunks"])):
        shard.load_chunk(str(base_dir), c)
    return list(shard.records.values()), feed_records(out)


def _scores(pairs, results):
    c = Counter()
    for (_, truth), r in zip(pairs, results):
        linked = r.customer_id if r.outcome == "link" else None
        c["tp"] += bool(linked and linked == truth)
        c["fp"] += bool(linked and linked != truth)
        c["fn"] += bool(truth and linked != truth)
    return c["tp"] / max(1, c["tp"] + c["fp"]), c["tp"] / max(1, c["tp"] + c["fn"])


def test_every_source_is_read_with_its_truth(feeds):
    _, pairs = feeds
    by_source = Counter(ev.source for ev, _ in pairs)
    assert set(by_source) == {"web_form", "key_accounts", "tax_roll", "billing"}
    assert all(n > 0 for n in by_source.values())
    assert sum(t is None for _, t in pairs) < len(pairs) / 5


@pytest.mark.parametrize("source", SOURCES)
def test_precision_and_recall_per_source(feeds, source):
    contexts, pairs = feeds
    rules = load_identity_rules(DEFAULT_RULES_DIR)
    name = {"web_contacts": "web_form"}.get(source, source)
    mine = [p for p in pairs if p[0].source == name]
    results = BatchResolver(rules, [dict(c) for c in contexts]).resolve([e for e, _ in mine], write=False)
    precision, recall = _scores(mine, results)
    # measured on this base (150 customers, seed 7); bench/bench_identity.py has the figures at scale
    assert precision >= 0.93, (source, precision, recall)
    assert recall >= 0.80, (source, precision, recall)
