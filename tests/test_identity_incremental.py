"""Incremental resolution against live shards gives the batch path's answers; identity state survives a crash."""
from __future__ import annotations

import asyncio

import pytest
import ray

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def feeds(base_dir, tmp_path_factory):
    from grid.identity.feeds import feed_records
    from grid.synth.sources import generate_sources

    out = tmp_path_factory.mktemp("incfeeds")
    generate_sources(base_dir, out, meter_days=1)
    pairs = feed_records(out, ("web_contacts", "key_accounts", "billing"))
    return [ev for ev, _ in pairs]


@pytest.fixture(scope="module")
def inc_grid(ray_session, base_dir, tmp_path_factory):
    from grid.cluster import Grid

    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("incgrid")), shards=2, namespace="cg-test-identity-inc")
    g.load(base_dir)
    yield g
    g.shutdown()


def _base_contexts(base_dir):
    from grid.base import read_manifest
    from grid.partitions import PARTITIONS
    from grid.shard import Shard

    shard = Shard(0, list(range(PARTITIONS)))
    for c in range(int(read_manifest(base_dir)["chunks"])):
        shard.load_chunk(str(base_dir), c)
    return list(shard.records.values())


async def test_incremental_equals_batch(inc_grid, base_dir, feeds):
    from grid.identity.batch import BatchResolver

    rules = inc_grid.identity_rules.current
    batch = BatchResolver(rules, _base_contexts(base_dir)).resolve(feeds, write=True)
    incremental = []
    for ev in feeds:  # one record at a time, each against the live base as the earlier ones left it
        incremental += await inc_grid.aresolve([ev], write=True)
    assert [(r.outcome, r.customer_id, r.review_id) for r in incremental] == \
           [(r.outcome, r.customer_id, r.review_id) for r in batch]
    outcomes = {r.outcome for r in batch}
    assert outcomes >= {"link", "new"}  # the sample exercises more than one path

    def clusters(results):
        by = {}
        for i, r in enumerate(results):
            if r.customer_id and r.outcome != "review":
                by.setdefault(r.customer_id, set()).add(i)
        return sorted(sorted(v) for v in by.values())

    assert clusters(incremental) == clusters(batch)


async def _crash(grid, shard) -> dict:
    """Kill a shard actor's process (Ray restarts it from snapshot + WAL); its stats once back."""
    pid = (await grid._aget(shard.ready.remote(), timeout=10))["pid"]
    ray.kill(shard, no_restart=False)
    for _ in range(300):
        try:
            st = await grid._aget(shard.ready.remote(), timeout=2)
            if st["pid"] != pid:
                return st
        except Exception:  # noqa: BLE001 - restarting
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the shard did not come back")


async def test_identity_state_survives_a_shard_crash(inc_grid):
    rec = {"source": "crm", "record_id": "crash-1", "name": "Crash Test Person", "phone": "415-555-0911",
           "address": "1 Recovery Rd, Fresno, CA 93701"}
    (res,) = await inc_grid.aresolve([rec], write=True)
    assert res.outcome == "new"
    cid = res.customer_id
    doubt = {"source": "crm", "record_id": "crash-2", "name": "Crash Test Persona", "address": "1 Recovery Rd, Fresno"}
    (rv,) = await inc_grid.aresolve([doubt], write=True)
    assert rv.outcome == "review" and rv.customer_id == cid, (rv.score, rv.comparisons)
    before = await inc_grid.aidentity(cid)
    shard = inc_grid.shards[inc_grid.shard_index(cid)]
    st = await _crash(inc_grid, shard)
    assert st["recovery"]["replayed"] >= 2  # the link and the review came back from the log
    after = await inc_grid.aidentity(cid)
    assert after["links"] == before["links"] and after["golden"] == before["golden"]
    items = await inc_grid.aidentity_reviews("open")
    assert rv.review_id in [i["review_id"] for i in items]
    # and the rebuilt index still finds the customer by its keys
    (again,) = await inc_grid.aresolve([{"source": "x", "phone": "(415) 555-0911", "name": "Crash Test Person"}])
    assert (again.outcome, again.customer_id) == ("link", cid)
    # a snapshot holds the identity state too (restart from the snapshot, nothing to replay)
    await inc_grid._aget(shard.snapshot.remote(), timeout=30)
    st = await _crash(inc_grid, shard)
    assert st["recovery"]["replayed"] == 0
    assert (await inc_grid.aidentity(cid))["links"] == before["links"]
    assert rv.review_id in [i["review_id"] for i in await inc_grid.aidentity_reviews("open")]
