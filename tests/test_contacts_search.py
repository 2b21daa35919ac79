"""Console search on plain records: each way a caller identifies themselves finds the customer."""
from __future__ import annotations

import pytest

from grid.contacts.search import search

RECORDS = {
    "C1": {"customer_id": "C1", "name": "Mercy Hospital", "kind": "public",
           "accounts": [{"account_id": "A-77", "billing_address": "1 Elm St, Springfield",
                         "service_points": [{"service_point_id": "S-1", "meter_id": "M-991",
                                             "premise_address": "1 Elm St"}]}],
           "contacts": [{"name": "Ed Emergency", "channels": [{"type": "sms", "address": "+14155550101"},
                                                              {"type": "email", "address": "ed@mercy.example"}]}],
           "classification": {"portfolio_id": "PF-HEALTH"}, "ownership": [{"legal_name": "Mercy Health Inc"}]},
    "C2": {"customer_id": "C2", "name": "Rachel Green", "kind": "residential",
           "accounts": [{"account_id": "A-12", "service_points": [{"service_point_id": "S-2", "meter_id": "M-5"}]}],
           "contacts": [{"name": "Rachel Green", "channels": [{"type": "email", "address": "rachel@example.com"}]}]},
}


@pytest.mark.parametrize("q, cid, matched", [
    ("(415) 555-0101", "C1", "phone"), ("415.555.0101", "C1", "phone"), ("ed@MERCY", "C1", "email"),
    ("A-77", "C1", "account"), ("m-991", "C1", "meter"), ("PF-HEALTH", "C1", "portfolio"),
    ("elm st", "C1", "address"), ("mercy health inc", "C1", "owner"), ("green", "C2", "name"),
])
def test_each_way_in_finds_the_customer(q, cid, matched):
    [hit] = search(RECORDS, q, 10)
    assert (hit["customer_id"], hit["matched"]) == (cid, matched)


def test_last_four_digits_find_a_phone_but_two_digits_do_not_and_limit_holds():
    assert [(h["customer_id"], h["matched"]) for h in search(RECORDS, "0101", 10)] == [("C1", "phone")]
    assert all(h["matched"] != "phone" for h in search(RECORDS, "01", 10))
    assert len(search(RECORDS, "e", 1)) == 1
    assert search(RECORDS, "nobody", 10) == []
