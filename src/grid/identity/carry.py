"""The usage rows and legacy bills a merge (or unmerge) carries from one shard to the other.

They travel inside the merge step ops, so they are in the receiving shard's WAL: plain lists (msgpack-able,
and small: one customer's service points), not numpy arrays or Arrow tables. Taking them is a read of the
giving shard; dropping them is the giving shard's later step, so a crash in between leaves them on both shards
until the retry completes, never on neither.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from grid.bills import BILL_SCHEMA
from grid.usage import drop_rows, extract_rows, insert_rows

__all__ = ["take", "put", "drop", "service_points", "account_ids"]


def service_points(rec: dict, accounts: set[str] | None = None) -> list[str]:
    """The service point ids of a context (of the given accounts only, when named)."""
    return [sp["service_point_id"] for a in rec.get("accounts") or [] if accounts is None
            or a.get("account_id") in accounts for sp in a.get("service_points") or []]


def account_ids(rec: dict) -> list[str]:
    return [a["account_id"] for a in rec.get("accounts") or []]


def take(shard, sp_ids: list[str], accounts: list[str]) -> dict:
    """Copies of these service points' usage rows (every month) and these accounts' bills, as builtins."""
    usage = []
    for iv, store in sorted(shard.usage.items()):
        ids = [s for s in sp_ids if s in store.row_of]
        if ids:
            p = extract_rows(store, ids)
            usage.append({"interval_minutes": iv, "sp_ids": p["sp_ids"], "has_export": p["has_export"],
                          "filled_through": p["filled_through"].tolist(),
                          "months": {m: [imp.tolist(), exp.tolist()] for m, (imp, exp) in p["months"].items()}})
    bills = shard.bills.for_accounts(accounts) if accounts else []
    return {"usage": usage, "bills": bills}


def put(shard, carried: dict | None, customer_id: str) -> None:
    """Add carried rows and bills (service points and bills already held are left as they are: a replay)."""
    if not carried:
        return
    for p in carried.get("usage") or []:
        store = shard._store(int(p["interval_minutes"]))
        keep = [i for i, s in enumerate(p["sp_ids"]) if s not in store.row_of]
        if not keep:
            continue
        months = {m: (np.asarray(imp, dtype=np.int64)[keep], np.asarray(exp, dtype=np.int64)[keep])
                  for m, (imp, exp) in p["months"].items()}  # put_month casts to the store's dtype
        insert_rows(store, {"sp_ids": [p["sp_ids"][i] for i in keep],
                            "has_export": [p["has_export"][i] for i in keep],
                            "filled_through": np.asarray(p["filled_through"], dtype=np.int64)[keep],
                            "months": months})
    held = set(shard.bills.table.column("bill_id").to_pylist()) if carried.get("bills") else set()
    rows = [dict(b, customer_id=customer_id, period_start=dt.date.fromisoformat(b["period_start"]),
                 period_end=dt.date.fromisoformat(b["period_end"]))
            for b in carried.get("bills") or [] if b["bill_id"] not in held]
    if rows:
        shard.bills.append(pa.Table.from_pylist(rows, schema=BILL_SCHEMA))


def drop(shard, sp_ids: list[str], accounts: list[str]) -> None:
    """Forget these service points' rows and these accounts' bills (they live on the other shard now)."""
    for store in shard.usage.values():
        drop_rows(store, set(sp_ids))
    if accounts:
        shard.bills.drop_accounts(set(accounts))
