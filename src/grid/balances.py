"""What a customer owes: the one computation of the amount due, for the portal and the payment-due notice.

The portal's Bills & payments card (``GET /v1/customers/{id}/bills``, ``amount_due_cents``) and the
``payment_due`` message (``grid.contacts.targets``) both read :func:`amount_due`, so the figure a customer
sees on the page is the figure the reminder states.

The rule, per account (DOMAIN.md section 1: bills and payments belong to accounts):

* the account's **latest bill** is the newest one issued by ``as_of`` (its ``period_end`` on or before the day:
  a bill goes out when its period ends, so a later one does not exist yet on that day);
* **paid** is the sum of the account's payments dated on or after that bill's ``period_end`` and on or before
  ``as_of`` (earlier payments settled earlier bills); a payment that names no account counts against the
  customer's first account, as a cashier posts an unreferenced payment;
* the account's amount due is the latest bill's total less what was paid (negative: a credit), due
  ``due_days`` after the bill's period end.

The customer's amount due is the sum over its accounts (a credit on one account offsets another), in integer
cents; its due date is the earliest due date of an account that owes money.
"""
from __future__ import annotations

import datetime as dt

DUE_DAYS = 21  # days from a bill's period end to its due date (the notices' default since issue 13)


def amount_due(bills: list[dict], payments: list[dict], accounts: list[str], as_of: str | None = None,
               due_days: int = DUE_DAYS, account_id: str | None = None) -> dict:
    """The amount due of one customer on ``as_of``.

    Parameters
    ----------
    bills : list of dict
        The customer's bills (``account_id``, ``bill_id``, ``period_end`` as YYYY-MM-DD, ``total_cents``).
    payments : list of dict
        The customer's payments (``date`` YYYY-MM-DD, ``amount_cents``, optional ``account_id``).
    accounts : list of str
        The customer's account ids in the record's order (the first takes unreferenced payments).
    as_of : YYYY-MM-DD, optional
        The day looked from; None: every bill and payment on record.
    due_days : int
        Days from a bill's period end to its due date.
    account_id : str, optional
        Count this account only.

    Returns
    -------
    dict
        ``{"as_of", "amount_due_cents", "due_date", "accounts": [{"account_id", "bill_id", "period_end",
        "billed_cents", "paid_cents", "amount_due_cents", "due_date"}]}``; an account without a bill by
        ``as_of`` is not listed; ``due_date`` is None when nothing is owed.
    """
    as_of = None if as_of is None else str(as_of)  # a date or its ISO text: compared as text below
    day = as_of or "9999-12-31"
    latest: dict[str, dict] = {}
    for b in bills:
        acct = b["account_id"]
        if acct in accounts and b["period_end"] <= day:
            cur = latest.get(acct)
            if cur is None or (b["period_end"], b["bill_id"]) > (cur["period_end"], cur["bill_id"]):
                latest[acct] = b
    rows = []
    for acct in accounts:  # the record's order, so the answer does not depend on how bills were stored
        bill = latest.get(acct)
        if bill is None or account_id not in (None, acct):
            continue
        paid = sum(int(p.get("amount_cents", 0)) for p in payments
                   if (p.get("account_id") or accounts[0]) == acct
                   and bill["period_end"] <= str(p.get("date", "")) <= day)
        due_date = dt.date.fromisoformat(bill["period_end"]) + dt.timedelta(days=due_days)
        rows.append({"account_id": acct, "bill_id": bill["bill_id"], "period_end": bill["period_end"],
                     "billed_cents": int(bill["total_cents"]), "paid_cents": paid,
                     "amount_due_cents": int(bill["total_cents"]) - paid, "due_date": due_date.isoformat()})
    owing = [r["due_date"] for r in rows if r["amount_due_cents"] > 0]
    return {"as_of": as_of, "amount_due_cents": sum(r["amount_due_cents"] for r in rows),
            "due_date": min(owing) if owing else None, "accounts": rows}


def bill_statement(shard, customer_id: str, account_id: str | None = None, as_of: str | None = None) -> dict:
    """A customer's legacy bills (one account's, if given; issued by ``as_of``, if given), newest first, the
    rate plan of each account (bill lines are named from it) and the amount due: what ``GET
    /v1/customers/{id}/bills`` answers, read in one call to the owning shard.
    """
    rec = shard.record(customer_id)
    bills = shard.customer_bills(customer_id, None, account_id)  # NotFound names an unknown account_id
    accounts = [a["account_id"] for a in rec["accounts"]]
    due = amount_due(bills, rec.get("payments", []), accounts, as_of, account_id=account_id)
    if as_of is not None:
        bills = [b for b in bills if b["period_end"] <= as_of]
    return {"items": bills, "plans": {a["account_id"]: a.get("rate_plan_id") for a in rec["accounts"]},
            "amount_due": due}
