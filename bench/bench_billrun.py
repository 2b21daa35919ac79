"""Whole-base bill run + reconciliation through Ray: 1 shard vs 2 shards on the same base.

The path measured is the one ``POST /v1/bill-runs`` takes: ``Grid.abill_run`` (here through its sync facade),
each shard billing its partitions in batches and logging every account's outcome as a ``bill_outcomes`` write.
The base - synthetic accounts (residential TOU, one month hourly) and legacy bills equal to what the kernel
computes - is built per shard as a plain :class:`grid.shard.Shard` and written as that shard's snapshot
before the grid starts, so the shard actors recover it as they would any state. Size: BENCH_BILLRUN_SP service
points in total (default 200k; the issue's figure is 1M, which needs ~3 GB of usage per run).
Run: ``.venv/bin/python -m pytest bench/bench_billrun.py -s``.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa

from grid import billrun
from grid.cluster import Grid
from grid.partitions import partition_of
from grid.timegrid import month_bounds

TOTAL = int(os.environ.get("BENCH_BILLRUN_SP", "200000"))
PERIOD = "2026-07"
PLAN = "res-tou"


def fill(shard, n_total: int, seed: int) -> int:
    """Make this shard hold its share of ``n_total`` synthetic accounts (by partition), with legacy bills."""
    from grid.usage import UsageStore
    from kernels.billing import bill_intervals

    rng = np.random.default_rng(seed)
    ids = [f"C{i:08d}" for i in range(n_total)]
    mine = [c for c in ids if shard.owned[partition_of(c)]]
    store = shard.usage.setdefault(60, UsageStore(60, shard.timezone))
    sps = [f"S{c[1:]}" for c in mine]
    rows = store.add_service_points(sps, [False] * len(sps))
    start, end = month_bounds(PERIOD)
    block = store.block(PERIOD)
    hours = np.arange(block.n_intervals) % 24
    shape = (400 + 300 * np.sin((hours - 6) / 24 * 2 * np.pi)).astype(np.int32)
    # put_month, as a load does: the rows' data then reaches through the month (filled_through)
    store.put_month(PERIOD, rows, shape + rng.integers(0, 400, size=(len(rows), block.n_intervals), dtype=np.int32),
                    None)
    for c, sp in zip(mine, sps):
        shard.records[c] = {"customer_id": c, "name": c, "kind": "residential", "segment": "mass", "version": 1,
                            "created_at": "", "attributes": {}, "ownership": [], "contacts": [], "payments": [],
                            "events": [], "notes": [], "classification": {},
                            "accounts": [{"account_id": "A" + c[1:], "status": "active", "rate_plan_id": PLAN,
                                          "bill_cycle_day": 1, "billing_address": "", "programs": [],
                                          "service_points": [{"service_point_id": sp, "interval_minutes": 60,
                                                              "has_solar": False, "load_priority": "normal"}]}]}
        shard.sp_owner[sp] = (c, 60)
    batch = bill_intervals(billrun.catalogue(billrun.DEFAULT_TARIFF_DIR).get(PLAN), start, end, 60, block.imp[rows])
    mask = (batch.quantity != 0) | (batch.amount_cents != 0)
    i, j = np.nonzero(mask)
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32)
    lines = pa.StructArray.from_arrays(
        [pa.array(np.array(batch.codes, dtype=object)[j], pa.string()), pa.array(batch.quantity[i, j]),
         pa.array(np.array(batch.units, dtype=object)[j], pa.string()), pa.array(batch.amount_cents[i, j])],
        names=["code", "quantity", "unit", "amount_cents"])
    shard.bills.append(pa.table({
        "bill_id": pa.array([f"B{c[1:]}" for c in mine]), "account_id": pa.array(["A" + c[1:] for c in mine]),
        "customer_id": pa.array(mine), "period_start": pa.array([start] * len(mine), pa.date32()),
        "period_end": pa.array([end] * len(mine), pa.date32()),
        "lines": pa.ListArray.from_arrays(pa.array(offsets), lines), "total_cents": pa.array(batch.total_cents)}))
    return len(mine)


def build(data_dir, shards: int) -> None:
    """Write each shard's part of the base as its snapshot (seq 0), one shard at a time (bounded memory)."""
    from pathlib import Path

    from grid.partitions import PartitionTable
    from grid.shard import Shard, to_snapshot
    from grid.snapshots import SnapshotStore

    data_dir = Path(data_dir)
    table = PartitionTable.load_or_create(data_dir / "partition_table.json", shards)
    for i in range(shards):
        shard = Shard(i, table.partitions_of_shard(i))
        fill(shard, TOTAL, 1)
        SnapshotStore(data_dir / "shards" / f"shard-{i}" / "snapshots").write(0, *to_snapshot(shard))
        del shard


def test_bill_run_scales_with_shards(ray_session, tmp_path, benchmark):
    results = {}
    for shards in (1, 2):
        t0 = time.perf_counter()
        build(tmp_path / f"s{shards}", shards)
        grid = Grid.start(data_dir=str(tmp_path / f"s{shards}"), shards=shards, namespace=f"cg-bench-br{shards}")
        fill_s = time.perf_counter() - t0
        assert sum(s["customers"] for s in grid.stats()) == TOTAL
        grid.bill_run(PERIOD)  # warm: catalogue, calendar caches, billing index
        times = []

        def one_run():
            t0 = time.perf_counter()
            out = grid.bill_run(PERIOD)
            times.append(time.perf_counter() - t0)
            return out

        report = benchmark.pedantic(one_run, rounds=1, iterations=1) if shards == 2 else one_run()
        for _ in range(2):
            report = one_run()
        assert report["bills"] == TOTAL and report["counts"]["match"] == TOTAL
        results[shards] = min(times)
        print(f"\n{shards} shard(s): {TOTAL} bills + reconciliation in {min(times):.3f} s "
              f"({TOTAL / min(times):,.0f} bills/s; build + recover {fill_s:.1f} s)")
        grid.shutdown()
    print(f"2-shard speed-up over 1 shard: {results[1] / results[2]:.2f}x")
