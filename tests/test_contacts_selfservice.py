"""Self-service contact edits (validated addresses, preferences) and note visibility, through real HTTP."""
from __future__ import annotations

import pytest
from conftest import OWN_CUSTOMER, auth


async def _context(api, role="customer", cid=OWN_CUSTOMER, fmt=None):
    r = await api.get(f"/v1/customers/{cid}" + (f"?format={fmt}" if fmt else ""), headers=auth(role))
    assert r.status == 200, await r.text()
    return await (r.json() if fmt is None else r.text())


@pytest.mark.parametrize("channel, field_suffix", [
    ({"type": "email", "address": "rachel at home"}, "address"),
    ({"type": "email", "address": "rachel@"}, "address"),
    ({"type": "sms", "address": "555-0199"}, "address"),
    ({"type": "voice", "address": "call me maybe"}, "address"),
])
async def test_bad_addresses_are_refused_naming_the_field_and_nothing_is_written(api, channel, field_suffix):
    before = await _context(api)
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"), json={
        "contacts": {"upsert": [{"contact_id": "K-self", "name": "Rachel", "roles": ["outage"],
                                 "channels": [{"type": "email", "address": "ok@example.com"}, channel]}]}})
    assert r.status == 422, await r.text()
    problem = await r.json()
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert problem["field"] == f"contacts.upsert[0].channels[1].{field_suffix}"
    after = await _context(api)
    assert after["version"] == before["version"] and after["contacts"] == before["contacts"]


async def test_contact_and_preferences_are_stored_normalized(api):
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"), json={
        "contacts": {"upsert": [{"contact_id": "K-pref", "name": "Rosa", "roles": ["outage", "billing"],
                                 "language": "es", "messages": ["outage", "bill_ready"],
                                 "channels": [{"type": "sms", "address": "(415) 555-2671", "preference": 1,
                                               "quiet_hours": {"start": "22:00", "end": "07:00"}},
                                              {"type": "email", "address": "Rosa@Example.COM", "preference": 2}]}]}})
    assert r.status == 200, await r.text()
    got = next(c for c in (await r.json())["contacts"] if c["contact_id"] == "K-pref")
    assert [ch["address"] for ch in got["channels"]] == ["+14155552671", "Rosa@example.com"]
    assert got["language"] == "es" and got["messages"] == ["outage", "bill_ready"]
    assert got["channels"][0]["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    bad = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"), json={
        "contacts": {"upsert": [{"contact_id": "K-pref", "messages": ["spam"]}]}})
    assert bad.status == 422 and (await bad.json())["field"].startswith("contacts.upsert[0].messages")
    bad = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"), json={
        "contacts": {"upsert": [{"contact_id": "K-pref", "channels": [
            {"type": "sms", "address": "+14155552671", "quiet_hours": {"start": "25:00", "end": "07:00"}}]}]}})
    assert bad.status == 422 and "quiet_hours" in (await bad.json())["field"]


async def test_internal_notes_never_reach_a_customer_key(api):
    for role, body in (("agent", {"text": "INTERNAL: disputes every bill"}),
                       ("operator", {"text": "INTERNAL-2: credit hold", "visibility": "internal"}),
                       ("agent", {"text": "Your meter was replaced on Monday", "visibility": "customer"}),
                       ("customer", {"text": "Please call after 5 pm"})):
        r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth(role), json={"notes": {"add": [body]}})
        assert r.status == 200, await r.text()
    staff = [n["text"] for n in (await _context(api, "agent"))["notes"]]
    assert {"INTERNAL: disputes every bill", "INTERNAL-2: credit hold"} <= set(staff)
    mine = await _context(api, "customer")
    texts = [n["text"] for n in mine["notes"]]
    assert "Your meter was replaced on Monday" in texts and "Please call after 5 pm" in texts
    assert not any(t.startswith("INTERNAL") for t in texts)
    for fmt in ("xml", "csv"):
        assert "INTERNAL" not in await _context(api, "customer", fmt=fmt)
    # a customer cannot mark its own note internal and then see staff's by that route either
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"),
                        json={"notes": {"add": [{"text": "mine", "visibility": "internal"}]}})
    assert r.status == 200
    assert "mine" in [n["text"] for n in (await r.json())["notes"]]  # stored as the customer's own


async def test_messages_of_another_customer_are_not_found_for_a_customer_key(api):
    r = await api.get("/v1/customers/C0000002/messages", headers=auth("customer"))
    assert r.status == 404
    r = await api.get(f"/v1/customers/{OWN_CUSTOMER}/messages", headers=auth("customer"))
    assert r.status == 200 and (await r.json())["customer_id"] == OWN_CUSTOMER
