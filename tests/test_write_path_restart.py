"""Everything a shard holds survives a restart: contexts, usage, bills, bill outcomes, classification.

The state is built through the grid client's operations (load, classification, bill runs, writes), partly
before a snapshot and partly only in the write-ahead log; a new grid on the same directory must hold exactly
the same state (the shards' checksums cover every capability's state) and answer the same reads.
"""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from grid.cluster import Grid
from grid.rules import load_ruleset


@pytest.fixture
def grids(ray_session, tmp_path):
    made = []

    def make(name: str) -> Grid:
        g = Grid.start(data_dir=str(tmp_path), shards=2, namespace=f"cg-restart-{name}")
        made.append(g)
        return g

    yield make
    for g in made:
        g.shutdown()


def _statuses(g: Grid, accounts: list[dict], period: str) -> dict[str, str | None]:
    out = {}
    for a in accounts:
        for item in g.customer_period(a["customer_id"], period):
            out[item["account_id"]] = item["status"]
    return out


def test_restart_restores_bill_outcomes_and_classification(grids, base_dir):
    truth = pq.read_table(base_dir / "truth" / "bill_errors.parquet").to_pylist()
    accounts = pq.read_table(base_dir / "accounts", columns=["account_id", "customer_id"]).to_pylist()
    held = {t["account_id"] for t in truth if t["period_start"].isoformat()[:7] == "2025-11"}
    sample = [a for a in accounts if a["account_id"] in held][:3] + [a for a in accounts if a["account_id"] not in held][:3]

    g = grids("first")
    g.load(base_dir)
    loaded = g.checksum()
    g.classify(load_ruleset("rules"))
    classified = g.checksum()
    assert classified != loaded  # the classification is part of the state
    report = g.bill_run("2025-11")
    assert {m["account_id"] for m in report["mismatches"]} == held
    assert g.checksum() != classified  # so are the bill outcomes
    g.snapshot()
    # after the snapshot, only in the log: another run, a write that re-classifies its customer
    g.bill_run("2025-12")
    cid = accounts[0]["customer_id"]
    g.patch(cid, {"attributes": {"life_support": True}})
    before = g.checksum()
    statuses = {p: _statuses(g, sample, p) for p in ("2025-11", "2025-12")}
    assert {statuses["2025-11"][a["account_id"]] for a in sample[:3]} == {"held"}
    assert {statuses["2025-11"][a["account_id"]] for a in sample[3:]} == {"released"}
    ctx = g.get(cid)
    assert ctx["classification"]["load_priority"] == "critical"
    g.shutdown()

    g2 = grids("second")
    assert g2.checksum() == before
    assert {p: _statuses(g2, sample, p) for p in ("2025-11", "2025-12")} == statuses
    assert g2.get(cid) == ctx
    # re-classification after a write goes on after the restart (the rules in force were restored)
    g2.patch(cid, {"attributes": {"life_support": None}})
    assert g2.get(cid)["classification"]["load_priority"] != "critical"
