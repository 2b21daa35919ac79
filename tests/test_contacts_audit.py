"""The audit trail of contact management: console edits of contacts and load priority say who, when and
exactly what changed; declaring and restoring an outage say who, when and with what.

Regression: an outage declared or restored left no audit entry, and a load priority changed by writing the
whole context back was recorded only as "replaced: accounts, contacts, ...".
"""
from __future__ import annotations

from conftest import auth

from grid.audit import diff

OP, AGENT = auth("operator"), auth("agent")
CID, SP, ACCOUNT = "C0000037", "S00000037", "A00000037"  # written to by this file only


def test_diff_matches_parts_by_their_id():
    before = {"version": 3, "name": "A", "accounts": [{"account_id": "A1", "service_points": [
        {"service_point_id": "S1", "load_priority": "normal"}, {"service_point_id": "S2", "load_priority": "normal"}]}],
              "contacts": [{"contact_id": "K1", "name": "Pat"}]}
    after = {"version": 4, "name": "A", "accounts": [{"account_id": "A1", "service_points": [
        {"service_point_id": "S2", "load_priority": "normal"}, {"service_point_id": "S1", "load_priority": "critical"}]}],
             "contacts": [{"contact_id": "K1", "name": "Pat"}, {"contact_id": "K2", "name": "Sam"}]}
    assert diff(before, after) == [
        {"path": "accounts[A1].service_points[S1].load_priority", "from": "normal", "to": "critical"},
        {"path": "contacts[K2]", "from": None, "to": {"contact_id": "K2", "name": "Sam"}}]
    assert diff(before, before) == []
    many = diff({"attributes": {f"a{i}": i for i in range(80)}}, {"attributes": {}})
    assert len(many) == 51 and many[-1]["to"] == "30 more changes"


async def test_console_edits_of_load_priority_and_contacts_record_what_changed(api):
    ctx = await (await api.get(f"/v1/customers/{CID}", headers=OP)).json()
    body = {k: v for k, v in ctx.items() if k != "version"}  # as the console writes a context back
    for a in body["accounts"]:
        for sp in a["service_points"]:
            if sp["service_point_id"] == SP:
                assert sp["load_priority"] == "normal"
                sp["load_priority"] = "critical"
    r = await api.put(f"/v1/customers/{CID}", json=body, headers={**OP, "X-Request-Id": "prio-1"})
    assert r.status == 200, await r.text()
    contact = {"contact_id": "K-night", "name": "Night Desk", "roles": ["outage"],
               "channels": [{"type": "sms", "address": "+14155550137", "preference": 1}]}
    r = await api.patch(f"/v1/customers/{CID}", json={"contacts": {"upsert": [contact]}}, headers=AGENT)
    assert r.status == 200, await r.text()
    items = (await (await api.get(f"/v1/audit?customer={CID}", headers=OP)).json())["items"]
    patch, put = items[0], items[1]
    assert (put["key_id"], put["role"], put["method"], put["request_id"]) == ("ops", "operator", "PUT", "prio-1")
    assert {"path": f"accounts[{ACCOUNT}].service_points[{SP}].load_priority", "from": "normal",
            "to": "critical"} in put["diff"]
    assert put["at"] and put["version"] is not None
    assert (patch["key_id"], patch["role"], patch["method"]) == ("desk", "agent", "PATCH")
    added = [d for d in patch["diff"] if d["path"] == "contacts[K-night]"]
    assert added and added[0]["from"] is None and added[0]["to"]["name"] == "Night Desk"


async def test_declaring_and_restoring_an_outage_are_audited(api):
    r = await api.post("/v1/outages", json={"service_point_ids": [SP], "cause": "tree on line"},
                       headers={**AGENT, "X-Request-Id": "out-1"})
    assert r.status == 201, await r.text()
    oid = (await r.json())["outage_id"]
    r = await api.post(f"/v1/outages/{oid}/restore", json={"restored_at": "2026-12-01T14:00:00Z"}, headers=OP)
    assert r.status == 200, await r.text()
    got = await (await api.get(f"/v1/outages/{oid}/audit", headers=OP)).json()
    restore, declare = got["items"]
    assert got["outage_id"] == oid
    assert (declare["action"], declare["key_id"], declare["role"], declare["request_id"]) == (
        "declare", "desk", "agent", "out-1")
    assert declare["route"] == "/v1/outages" and declare["changes"]["selector"] == {"service_point_ids": [SP]}
    assert declare["changes"]["cause"] == "tree on line" and declare["at"]
    assert (restore["action"], restore["key_id"], restore["role"]) == ("restore", "ops", "operator")
    assert restore["changes"] == {"restored_at": "2026-12-01T14:00:00Z"} and restore["at"] >= declare["at"]
    status = await (await api.get(f"/v1/outages/{oid}", headers=OP)).json()
    assert [e["action"] for e in status["event"]["audit"]] == ["declare", "restore"]
    assert status["event"]["state"] == "restored"


async def test_outage_audit_is_for_operators(api):
    r = await api.post("/v1/outages", json={"service_point_ids": [SP]}, headers=OP)
    oid = (await r.json())["outage_id"]
    assert (await api.get(f"/v1/outages/{oid}/audit", headers=AGENT)).status == 403
    assert (await api.get(f"/v1/outages/{oid}/audit?limit=1", headers=OP)).status == 200
    r = await api.get("/v1/outages/OUT-000000000000/audit", headers=OP)
    assert r.status == 404 and (await r.json())["field"] == "id"
