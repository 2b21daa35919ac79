"""What an import builds goes through the one context model: channels validated, defaults filled, bad rows named."""
from __future__ import annotations

import pytest

from grid.errors import InvalidInput
from grid.imports import record_actions

AT = "2026-01-05T00:00:00Z"


def test_typed_contact_channels_are_normalized_and_bad_ones_name_their_field():
    c = record_actions._contact({"name": "Ada Lee", "email": " Ada.Lee@Example.COM ", "phone": "(415) 253-0000"},
                                "ab" * 10)
    assert c["channels"] == [{"type": "email", "address": "Ada.Lee@example.com", "preference": 1, "quiet_hours": None},
                             {"type": "sms", "address": "+14152530000", "preference": 2, "quiet_hours": None}]
    for typed, field in (({"email": "ada at example"}, "contact.email"), ({"phone": "12"}, "contact.phone")):
        with pytest.raises(InvalidInput) as exc:
            record_actions._contact({"name": "Ada", **typed}, "ab" * 10)
        assert exc.value.field == field


def test_conform_fills_defaults_and_refuses_a_misshapen_record_naming_the_field():
    rec = {"customer_id": "C1", "name": "Min", "kind": "residential", "segment": "residential", "created_at": AT,
           "version": 3, "attributes": {}, "ownership": [], "contacts": [], "payments": [], "events": [],
           "notes": [], "supplemental": {"projects": []}, "classification": {},
           "accounts": [{"account_id": "A1", "rate_plan_id": "res-tiered",
                         "service_points": [{"service_point_id": "S1", "interval_minutes": 60}]}]}
    out = record_actions.conform("C1", rec, AT)
    assert out["version"] == 3
    assert {k: out["accounts"][0][k] for k in ("status", "bill_cycle_day", "programs")} == \
        {"status": "active", "bill_cycle_day": 1, "programs": []}
    assert out["accounts"][0]["service_points"][0] == {
        "service_point_id": "S1", "premise_address": "", "meter_id": "", "interval_minutes": 60,
        "has_solar": False, "load_priority": "normal"}
    rec["accounts"][0]["service_points"][0]["load_priority"] = "urgent"
    with pytest.raises(InvalidInput) as exc:
        record_actions.conform("C1", rec, AT)
    assert exc.value.field == "accounts[0].service_points[0].load_priority"
