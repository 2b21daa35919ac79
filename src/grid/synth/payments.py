"""Payments against legacy bills, and the ``payment_missed`` events of bills nobody paid.

Most bills are paid in full 15-30 days after the period ends (the due date is 30 days after); customers who
are often late or delinquent pay late, in part, or not at all. Only what happened before the end of the window
(``as_of``) is recorded, so the last month's bills are still open, as in any snapshot of a live system.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from grid.synth.customers import PAY_METHODS
from grid.synth.legacy_bills import BillRows
from grid.synth.plan import account_id
from grid.synth.writer import SCHEMAS

DUE_DAYS = 30
# per payer type: P(on time), P(late), P(partial); the rest is missed
BEHAVIOUR = ((0.95, 0.04, 0.0), (0.6, 0.3, 0.06), (0.4, 0.25, 0.15))
EPOCH = dt.date(1970, 1, 1)


def payments_for(bills: BillRows, bounds: list[tuple[dt.date, dt.date]], account_number: np.ndarray,
                 account_customer: np.ndarray, customer_ids: list[str], payer: list[int], pay_method: list[str],
                 as_of: dt.date, rng: np.random.Generator, events: list[list[dict]]) -> pa.Table:
    """The payments of a chunk's bills; appends ``payment_missed`` events to ``events`` (per customer row)."""
    pid, cust, acct, date, amount, method = [], [], [], [], [], []
    as_of_days = (as_of - EPOCH).days
    draws = rng.random((len(bills.bill_id), 4))
    for b in range(len(bills.bill_id)):
        total = int(bills.total[b])
        if total <= 0:  # a credit: nothing to pay
            continue
        row = int(bills.row[b])
        c = int(account_customer[row])
        end_days = (bounds[int(bills.month[b])][1] - EPOCH).days
        on_time, late, partial = BEHAVIOUR[payer[c]]
        u = draws[b, 0]
        if u < on_time:
            days, paid = end_days + 15 + int(draws[b, 1] * 16), total
        elif u < on_time + late:
            days, paid = end_days + DUE_DAYS + 1 + int(draws[b, 1] * 45), total
        elif u < on_time + late + partial:
            days, paid = end_days + 15 + int(draws[b, 1] * 16), max(1, total * (30 + int(draws[b, 2] * 60)) // 100)
        else:
            due = end_days + DUE_DAYS
            if due < as_of_days:
                ts = due * 86400 + 17 * 3600  # 17:00 UTC on the due date: the collections run
                events[c].append({"ts": ts, "type": "payment_missed",
                                  "detail": {"bill_id": bills.bill_id[b], "amount_cents": total,
                                             "due": (EPOCH + dt.timedelta(days=due)).isoformat()}})
            continue
        if days >= as_of_days:
            continue
        number = int(account_number[row])
        pid.append(f"P{number:08d}-{bills.bill_id[b].rsplit('-', 1)[1]}")
        cust.append(customer_ids[c])
        acct.append(account_id(number))
        date.append(days)
        amount.append(paid)
        method.append(pay_method[c] if draws[b, 3] < 0.9 else PAY_METHODS[int(draws[b, 3] * 1000) % 5 + 1])
    return pa.Table.from_arrays([
        pa.array(pid, pa.string()), pa.array(cust, pa.string()), pa.array(acct, pa.string()),
        pa.array(np.array(date, dtype=np.int32), pa.date32()), pa.array(amount, pa.int64()),
        pa.array(method, pa.string()),
    ], schema=SCHEMAS["payments"])
