"""A cross-shard merge carries the merged customer's usage rows and legacy bills, and an unmerge brings them
back (plain shards, no Ray: the steps as the grid client runs them, each op replayed once more as a WAL replay
after a crash would)."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from grid.bills import BILL_SCHEMA
from grid.cluster import make_op
from grid.identity import client
from grid.identity.merge import merge_id
from grid.partitions import PARTITIONS, partition_of
from grid.shard import Shard

pytestmark = pytest.mark.asyncio(loop_scope="session")


class _TwoShards:
    """The part of the grid client the merge steps use: ``awrite`` routed by partition."""

    def __init__(self):
        self.shards = [Shard(i, [p for p in range(PARTITIONS) if p % 2 == i]) for i in range(2)]

    def of(self, cid: str) -> Shard:
        return self.shards[partition_of(cid) % 2]

    async def awrite(self, op: dict) -> dict:
        shard = self.of(op["customer_id"])
        op = shard.prepare(dict(op))
        out = shard.apply(op)
        shard.applied.pop(op["write_id"])  # a replay after a crash: applied again, changes nothing twice
        assert shard.apply(shard.prepare(dict(op))) == out
        return out


def _customer(g: _TwoShards, cid: str) -> None:
    g.of(cid).apply(g.of(cid).prepare(make_op("replace", cid, {
        "name": f"Customer {cid}", "kind": "residential",
        "accounts": [{"account_id": f"A-{cid}", "rate_plan_id": "res-tou",
                      "service_points": [{"service_point_id": f"S-{cid}", "interval_minutes": 60}]}]})))


def _ids(g: _TwoShards) -> tuple[str, str]:
    ids = [f"C{i:04d}" for i in range(50)]
    s = ids[0]
    m = next(c for c in ids if g.of(c) is not g.of(s))
    return s, m


async def test_usage_and_bills_move_with_the_merged_context_and_come_back_on_unmerge():
    g = _TwoShards()
    s, m = _ids(g)
    _customer(g, s)
    _customer(g, m)
    ms = g.of(m)
    ms.apply(ms.prepare(make_op("usage", m, {"readings": [
        {"service_point_id": f"S-{m}", "start": "2026-01-05T10:00:00Z", "import_wh": 700},
        {"service_point_id": f"S-{m}", "start": "2026-01-06T10:00:00Z", "import_wh": 55}]})))
    ms.bills.append(pa.Table.from_pylist([{
        "bill_id": "B1", "account_id": f"A-{m}", "customer_id": m, "period_start": dt.date(2026, 1, 1),
        "period_end": dt.date(2026, 1, 31), "lines": [{"code": "energy", "quantity": 755, "unit": "Wh",
                                                       "amount_cents": 123}], "total_cents": 123}],
        schema=BILL_SCHEMA))
    usage_before = ms.customer_usage(m, "2026-01", f"S-{m}")["items"]
    bills_before = ms.customer_bills(m)
    assert sum(i["import_wh"] for i in usage_before) == 755 and len(bills_before) == 1

    mid = merge_id(s, m, ms.records[m]["version"])
    await client.merge_steps(g, s, m, mid)
    ss = g.of(s)
    assert ss.customer_usage(s, "2026-01", f"S-{m}")["items"] == usage_before
    assert [{k: v for k, v in b.items() if k != "customer_id"} for b in ss.customer_bills(s, account_id=f"A-{m}")] \
        == [{k: v for k, v in b.items() if k != "customer_id"} for b in bills_before]
    # the merged shard let go of them: nothing is held twice
    assert f"S-{m}" not in ms._store(60).row_of and ms.bills.table.num_rows == 0

    back = await g.awrite(make_op("identity_unmerge_out", s, {"merge_id": mid}, f"{mid}:unmerge-out"))
    # the survivor's shard restarts from its snapshot between the steps: what it gave back is still there
    ss.identity = type(ss.identity).from_blob(ss.identity.to_blob())
    ss.applied.clear()
    again = await g.awrite(make_op("identity_unmerge_out", s, {"merge_id": mid}, f"{mid}:unmerge-out"))
    assert again["carried"] == back["carried"]
    await g.awrite(make_op("identity_unmerge_restore", m, {"merge_id": mid, "carried": again["carried"]},
                           f"{mid}:unmerge-restore"))
    assert ms.customer_usage(m, "2026-01", f"S-{m}")["items"] == usage_before
    assert ms.customer_bills(m) == bills_before
    assert f"S-{m}" not in ss._store(60).row_of and ss.bills.table.num_rows == 0
