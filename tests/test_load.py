"""Loading a generated base: every customer on exactly one shard, as its partition says."""
import json

import pyarrow.parquet as pq

from grid.partitions import partition_of


def test_every_generated_customer_is_on_exactly_its_own_shard(base_grid, base_dir):
    manifest = json.loads((base_dir / "manifest.json").read_text())
    assert base_grid.loaded == manifest["customers"] == sum(base_grid.ticks)
    ids = pq.read_table(base_dir / "customers").column("customer_id").to_pylist()

    per_shard = base_grid.membership()
    seen = {}
    for shard, held in enumerate(per_shard):
        cids, owned = held["customers"], held["partitions"]
        for cid in cids:
            assert cid not in seen, f"{cid} on shards {seen[cid]} and {shard}"
            seen[cid] = shard
            assert partition_of(cid) in owned
    assert sorted(seen) == sorted(ids)
    assert all(base_grid.table.shard_of(c) == s for c, s in seen.items())


def test_loaded_context_carries_usage_bills_and_ownership(base_grid, base_dir):
    cid = pq.read_table(base_dir / "customers").column("customer_id")[0].as_py()
    ctx = base_grid.get(cid)
    assert ctx["accounts"] and ctx["ownership"] and ctx["contacts"]
    bills = base_grid.customer_bills(cid)
    assert bills and all(b["total_cents"] == sum(l["amount_cents"] for l in b["lines"]) for b in bills)
    usage = base_grid.customer_usage(cid, "2025-11", resolution="monthly")
    assert usage["items"][0]["import_wh"] > 0
