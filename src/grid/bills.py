"""Bills of one shard, held columnar (an Arrow table) with an index by account.

Legacy bills arrive in bulk from the system of record (one Arrow table per loaded chunk) and are read back per
customer or per period; the bill run reads whole periods as columns, so a table beats a dict per bill.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pyarrow as pa
import pyarrow.compute as pc

LINE_TYPE = pa.struct([("code", pa.string()), ("quantity", pa.int64()), ("unit", pa.string()),
                       ("amount_cents", pa.int64())])
BILL_SCHEMA = pa.schema([("bill_id", pa.string()), ("account_id", pa.string()), ("customer_id", pa.string()),
                         ("period_start", pa.date32()), ("period_end", pa.date32()),
                         ("lines", pa.list_(LINE_TYPE)), ("total_cents", pa.int64())])


class BillStore:
    """Append-only bills with a per-account row index."""

    def __init__(self, table: pa.Table | None = None):
        self._parts: list[pa.Table] = []
        self._table = table if table is not None else BILL_SCHEMA.empty_table()
        self._by_account: dict[str, list[int]] | None = None

    def append(self, table: pa.Table) -> None:
        if table.num_rows:
            self._parts.append(table.select(BILL_SCHEMA.names).cast(BILL_SCHEMA))
            self._by_account = None

    @property
    def table(self) -> pa.Table:
        if self._parts:
            self._table = pa.concat_tables([self._table, *self._parts]).combine_chunks()
            self._parts = []
        return self._table

    def _index(self) -> dict[str, list[int]]:
        if self._by_account is None:
            idx = defaultdict(list)
            for i, a in enumerate(self.table.column("account_id").to_pylist()):
                idx[a].append(i)
            self._by_account = dict(idx)
        return self._by_account

    def for_accounts(self, account_ids, period: str | None = None) -> list[dict]:
        """Bills of these accounts (optionally one month), newest first, as JSON-able dicts."""
        rows = sorted(i for a in account_ids for i in self._index().get(a, ()))
        if not rows:
            return []
        sub = self.table.take(pa.array(rows, pa.int64()))
        if period:
            y, m = (int(x) for x in period.split("-"))
            sub = sub.filter(pc.equal(sub.column("period_start"), pa.scalar(dt.date(y, m, 1), pa.date32())))
        out = sub.to_pylist()
        for b in out:
            b["period_start"] = b["period_start"].isoformat()
            b["period_end"] = b["period_end"].isoformat()
        out.sort(key=lambda b: (b["period_start"], b["account_id"]), reverse=True)
        return out

    def drop_accounts(self, account_ids: set[str]) -> pa.Table:
        """Remove and return the bills of these accounts (a merge carried them to another shard)."""
        return self._drop("account_id", account_ids)

    def drop_customers(self, customer_ids: set[str]) -> pa.Table:
        """Remove and return the bills of these customers (used when partitions move away)."""
        return self._drop("customer_id", customer_ids)

    def _drop(self, column: str, values: set[str]) -> pa.Table:
        t = self.table
        mask = pc.is_in(t.column(column), value_set=pa.array(sorted(values), pa.string()))
        moved = t.filter(mask)
        self._table = t.filter(pc.invert(mask))
        self._by_account = None
        return moved
