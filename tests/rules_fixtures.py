"""Shared builders for the rules tests: hand-made shards and a small generated base loaded into two shards."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from grid.bills import BILL_SCHEMA
from grid.partitions import PARTITIONS
from grid.shard import Shard

RULES_DIR = Path(__file__).resolve().parents[1] / "rules"


def entity(eid, name, address, tax=None, parent=None) -> dict:
    return {"entity_id": eid, "legal_name": name, "tax_id": tax, "mailing_address": address,
            "parent_entity_id": parent}


def chain(entities: dict[str, dict], eid: str | None) -> list[dict]:
    out = []
    while eid is not None:
        e = entities[eid]
        out.append(dict(e))
        eid = e["parent_entity_id"]
    return out


def account(aid: str, sps: list[dict] | None = None, programs=(), status="active", plan="com-demand") -> dict:
    if sps is None:
        sps = [service_point("S" + aid[1:], f"{aid} Premise Rd, Fresno, CA")]
    return {"account_id": aid, "status": status, "rate_plan_id": plan, "bill_cycle_day": 1,
            "billing_address": "", "programs": [{"code": c, "enrolled": "2024-01-01"} for c in programs],
            "service_points": sps}


def service_point(spid: str, premise: str, priority="normal", interval=60, solar=False) -> dict:
    return {"service_point_id": spid, "premise_address": premise, "meter_id": "M" + spid,
            "interval_minutes": interval, "has_solar": solar, "load_priority": priority}


def customer(cid: str, accounts: list[dict], ownership: list[dict], kind="commercial", segment="office",
             attributes=None) -> dict:
    return {"customer_id": cid, "name": f"Customer {cid}", "kind": kind, "segment": segment,
            "created_at": "2020-01-01T00:00:00", "version": 1, "attributes": attributes or {},
            "ownership": ownership, "accounts": accounts, "contacts": [], "payments": [], "events": [],
            "notes": [], "classification": {}}


def shard_of(records: list[dict], shard_id: int = 0) -> Shard:
    s = Shard(shard_id, list(range(PARTITIONS)))
    for rec in records:
        s.records[rec["customer_id"]] = rec
        for a in rec["accounts"]:
            for sp in a["service_points"]:
                s.sp_owner[sp["service_point_id"]] = (rec["customer_id"], int(sp["interval_minutes"]))
    return s


def add_bills(shard: Shard, rows: list[tuple]) -> None:
    """rows: (bill_id, account_id, customer_id, period_start date, period_end date, total_cents)."""
    lines = [[{"code": "FIXED", "quantity": 1, "unit": "month", "amount_cents": r[5]}] for r in rows]
    shard.bills.append(pa.table({"bill_id": [r[0] for r in rows], "account_id": [r[1] for r in rows],
                                 "customer_id": [r[2] for r in rows], "period_start": [r[3] for r in rows],
                                 "period_end": [r[4] for r in rows], "lines": lines,
                                 "total_cents": [r[5] for r in rows]}, schema=BILL_SCHEMA))


def add_usage(shard: Shard, month: str, interval: int, series: dict[str, np.ndarray]) -> None:
    store = shard._store(interval)
    ids = list(series)
    rows = store.add_service_points(ids, [False] * len(ids))
    store.put_month(month, rows, np.stack([series[i] for i in ids]).astype(np.int32), None)


def load_base(base_dir: str, n_shards: int = 2) -> list[Shard]:
    """A generated base loaded into ``n_shards`` plain shards (partition p on shard p % n_shards)."""
    from grid.base import read_manifest

    manifest = read_manifest(base_dir)
    shards = [Shard(i, [p for p in range(PARTITIONS) if p % n_shards == i]) for i in range(n_shards)]
    for s in shards:
        for c in range(manifest["chunks"]):
            s.load_chunk(base_dir, c)
        s.finish_load()
    return shards
