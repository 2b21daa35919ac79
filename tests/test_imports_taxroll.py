"""Public records: the generated county tax roll matched to premises by normalized situs address, scored
against the generator's truth, and the ownership evidence it writes used by portfolio resolution without a
false merge (a registered agent shared by unrelated SPVs never links them).
"""
from __future__ import annotations

import collections

import pyarrow.parquet as pq
import pytest

from grid.imports import taxroll
from grid.synth import generate_base
from grid.synth.sources import generate_sources, read_truth


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("rollbase")
    generate_base(base, 260, seed=11, first_month="2026-11", months=1, chunk_customers=130)
    generate_sources(base, meter_days=1)
    return base, base / "feeds"


def _rows(base, folder):
    return [r for p in sorted((base / folder).glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def _index(base) -> taxroll.PremiseIndex:
    kinds = {c["customer_id"]: c["kind"] for c in _rows(base, "customers")}
    idx = taxroll.PremiseIndex()
    for sp in _rows(base, "service_points"):
        idx.add(sp["customer_id"], kinds[sp["customer_id"]], sp["premise_address"])
    return idx


def test_parcels_match_their_premise_and_vacant_land_matches_nothing(world):
    base, feeds = world
    parcels = taxroll.read_roll(feeds / "tax_roll.csv")
    truth = {t["row"]: t for t in read_truth(feeds, "tax_roll")}
    evidence, unmatched = taxroll.match(parcels, _index(base))
    missed = collections.Counter(d for p in unmatched for d in truth[p.row]["defects"])
    assert missed["vacant"] == sum("vacant" in t["defects"] for t in truth.values()) > 0
    assert all({"vacant", "typo"} & set(truth[p.row]["defects"]) for p in unmatched)  # nothing clean is missed
    no_zip = [p for p in parcels if "missing_zip" in truth[p.row]["defects"]]
    assert no_zip and not set(map(id, no_zip)) & set(map(id, unmatched))  # street + city is enough
    holder = {apn: cid for cid, ev in evidence.items() for apn in ev["parcel_apns"]}
    for p in parcels:
        t = truth[p.row]
        if t["customer_id"] and p.apn in holder:
            assert holder[p.apn] == t["customer_id"], p


def test_shared_parcel_owners_are_one_true_portfolio_and_agents_alone_link_nobody(world):
    base, feeds = world
    parcels = taxroll.read_roll(feeds / "tax_roll.csv")
    evidence, _ = taxroll.match(parcels, _index(base))
    kinds = {c["customer_id"]: c for c in _rows(base, "customers")}
    truth = {r["entity_id"]: r["portfolio_key"] for r in pq.read_table(base / "truth" / "portfolios.parquet").to_pylist()}
    by_key = collections.defaultdict(set)
    by_agent = collections.defaultdict(set)
    for cid, ev in evidence.items():
        if kinds[cid]["kind"] == "residential":
            continue
        for k in ev["parcel_owner_keys"]:
            by_key[k].add(cid)
        for a in ev["parcel_agents"]:
            by_agent[a].add(cid)
    shared = [cids for cids in by_key.values() if len(cids) > 1]
    assert shared  # the roll does join customers
    for cids in shared:
        assert len({truth[kinds[c]["entity_id"]] for c in cids}) == 1, cids
    # a registered agent serves unrelated SPVs: grouping by agent would merge different true portfolios
    assert any(len({truth[kinds[c]["entity_id"]] for c in cids}) > 1 for cids in by_agent.values())


@pytest.fixture(scope="module")
def roll_grid(ray_session, world, tmp_path_factory):
    from grid.cluster import Grid

    base, _ = world
    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("rollgrid")), shards=2, namespace="cg-test-taxroll")
    g.load(base)
    yield g
    g.shutdown()


@pytest.mark.slow
async def test_import_writes_evidence_once_and_portfolios_stay_true(world, roll_grid):
    from grid.rules.ruleset import load_ruleset

    base, feeds = world
    report = await taxroll.import_roll(roll_grid, feeds / "tax_roll.csv")
    assert report["failed"] == [] and report["customers"] > 200 and report["matched"] < report["parcels"]
    some = next(c["customer_id"] for c in _rows(base, "customers") if c["kind"] != "residential")
    ctx = await roll_grid.aget(some)
    assert ctx["attributes"]["parcel_apns"] and ctx["attributes"]["parcel_owner_keys"]
    again = await taxroll.import_roll(roll_grid, feeds / "tax_roll.csv")  # the same roll: no new version
    assert again["customers"] == report["customers"]
    assert (await roll_grid.aget(some))["version"] == ctx["version"]

    result = await roll_grid.aclassify(load_ruleset())
    customers = {c["customer_id"]: c for c in _rows(base, "customers")}
    owner_of = {a["account_id"]: customers[a["customer_id"]]["entity_id"] for a in _rows(base, "accounts")}
    truth = {r["entity_id"]: r["portfolio_key"] for r in pq.read_table(base / "truth" / "portfolios.parquet").to_pylist()}
    for pid, accounts in result["members"].items():
        assert len({truth[owner_of[a]] for a in accounts}) <= 1, (pid, accounts)  # no false merge
