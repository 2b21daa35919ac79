"""The amount due (grid.balances): one computation behind the portal's Bills & payments card and the
payment-due notice. Plain data here; tests/test_portal_api.py and tests/test_portal_browser.py hold the API, the
page and the message to it."""
from grid.balances import amount_due


def bill(bid, acct, end, total):
    return {"bill_id": bid, "account_id": acct, "period_end": end, "total_cents": total}


BILLS = [bill("S", "A1", "2026-10-01", 13_045), bill("O", "A1", "2026-11-01", 12_439)]


def test_latest_bill_issued_by_the_day_less_payments_since():
    pays = [{"date": "2026-10-02", "amount_cents": 10_000, "account_id": "A1"},
            {"date": "2026-11-03", "amount_cents": 12_000, "account_id": "A1"}]
    on_oct_20 = amount_due(BILLS, pays, ["A1"], "2026-10-20")  # October's bill is not out yet
    assert on_oct_20["amount_due_cents"] == 13_045 - 10_000 and on_oct_20["due_date"] == "2026-10-22"
    assert on_oct_20["accounts"] == [{"account_id": "A1", "bill_id": "S", "period_end": "2026-10-01",
                                      "billed_cents": 13_045, "paid_cents": 10_000, "amount_due_cents": 3_045,
                                      "due_date": "2026-10-22"}]
    # on 2 November the October bill is out and nothing is paid against it yet; a day later 12,000 is
    assert amount_due(BILLS, pays, ["A1"], "2026-11-02")["amount_due_cents"] == 12_439
    assert amount_due(BILLS, pays, ["A1"], "2026-11-05")["amount_due_cents"] == 439
    assert amount_due(BILLS, pays, ["A1"])["amount_due_cents"] == 439  # no day: everything on record


def test_nothing_owed_has_no_due_date_and_an_overpayment_is_a_credit():
    paid = amount_due(BILLS, [{"date": "2026-11-02", "amount_cents": 12_439, "account_id": "A1"}], ["A1"])
    assert paid["amount_due_cents"] == 0 and paid["due_date"] is None
    credit = amount_due(BILLS, [{"date": "2026-11-02", "amount_cents": 13_000, "account_id": "A1"}], ["A1"])
    assert credit["amount_due_cents"] == -561 and credit["due_date"] is None
    none = amount_due([], [{"date": "2026-11-02", "amount_cents": 5, "account_id": "A1"}], ["A1"], "2026-11-05")
    assert none == {"as_of": "2026-11-05", "amount_due_cents": 0, "due_date": None, "accounts": []}


def test_accounts_add_up_and_an_unreferenced_payment_goes_to_the_first_account():
    bills = BILLS + [bill("X", "A2", "2026-10-15", 5_000), bill("Y", "A3", "2026-10-15", 7_000)]
    pays = [{"date": "2026-11-02", "amount_cents": 439},  # no account: the first account's (A1)
            {"date": "2026-10-20", "amount_cents": 1_000, "account_id": "A2"}]
    due = amount_due(bills, pays, ["A1", "A2"], "2026-11-05")  # A3 is not this customer's
    assert [(r["account_id"], r["amount_due_cents"]) for r in due["accounts"]] == [("A1", 12_000), ("A2", 4_000)]
    assert due["amount_due_cents"] == 16_000
    assert due["due_date"] == "2026-11-05"  # A2's bill ended 15 October: the earliest date money is owed
    only = amount_due(bills, pays, ["A1", "A2"], "2026-11-05", account_id="A2")
    assert only["amount_due_cents"] == 4_000 and [r["account_id"] for r in only["accounts"]] == ["A2"]


def test_payments_after_the_day_do_not_count_and_ties_do_not_depend_on_storage_order():
    pays = [{"date": "2026-11-10", "amount_cents": 12_439, "account_id": "A1"}]
    assert amount_due(BILLS, pays, ["A1"], "2026-11-05")["amount_due_cents"] == 12_439
    two = [bill("O2", "A1", "2026-11-01", 100)]  # two bills ending the same day: the larger id, either order
    assert amount_due(BILLS + two, [], ["A1"])["accounts"][0]["bill_id"] == "O2"
    assert amount_due(two + BILLS[::-1], [], ["A1"])["accounts"][0]["bill_id"] == "O2"
