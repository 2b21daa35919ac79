"""What-ifs run in the shard's worker threads, not on its event loop (issue 10: one key's heavy scenario must not
stall every other customer of that shard). Exercised on the actor's body in-process: no Ray needed."""
from __future__ import annotations

import asyncio
import time

from grid.cluster import make_op
from grid.partitions import PARTITIONS

CUSTOMER = {"name": "Loop Test", "kind": "residential", "accounts": [{
    "account_id": "A-LOOP-1", "rate_plan_id": "res-tou",
    "service_points": [{"service_point_id": "SP-LOOP-1", "interval_minutes": 60}]}]}


async def test_a_heavy_whatif_does_not_hold_the_shards_event_loop(tmp_path, monkeypatch):
    from grid import shard_actor, whatif

    server = shard_actor.ShardServer(0, list(range(PARTITIONS)), str(tmp_path / "shard"), "America/Los_Angeles")
    await server.write(make_op("replace", "C0000001", CUSTOMER))

    def heavy(shard, customer_id, *args):  # stands for a long computation: it holds its thread, not the loop
        time.sleep(0.8)
        return {"customer_id": customer_id, "version": shard.record(customer_id)["version"]}

    monkeypatch.setattr(whatif, "scenarios", heavy)
    t0 = time.perf_counter()
    running = asyncio.ensure_future(server.scenarios("C0000001", {}, None, None))
    await asyncio.sleep(0.1)  # the what-if is under way (on the loop it would hold this sleep for 0.8 s)
    rec = await server.get("C0000001")
    out = await server.write(make_op("patch", "C0000001", {"attributes": {"tier": "gold"}}))
    waited = time.perf_counter() - t0
    assert waited < 0.5, f"a read and a write waited {waited:.2f} s behind a what-if"
    assert rec["customer_id"] == "C0000001" and out["version"] == rec["version"] + 1
    assert (await running)["customer_id"] == "C0000001"


async def test_whatif_errors_still_reach_the_caller(tmp_path):
    """A what-if on an unknown customer raises the same NotFound from the worker thread."""
    import pytest

    from grid import shard_actor
    from grid.errors import NotFound

    server = shard_actor.ShardServer(0, list(range(PARTITIONS)), str(tmp_path / "shard"), "America/Los_Angeles")
    with pytest.raises(NotFound):
        await server.forecast("C0000404", 12, None, None)
