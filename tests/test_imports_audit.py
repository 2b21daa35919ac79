"""Import pushes leave an audit trail like every other write: on each customer a push names, who pushed, when,
through which source and batch, and how many of that customer's rows were accepted and quarantined; recorded by
the shard in the WAL record of the rows (so once per push, and through a shard crash)."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from conftest import OWN_CUSTOMER, auth, gateway, grid_with_sources

# payments keyed by customer id; the shard refuses a payment for an account the customer does not have
CASH = {"name": "cash-audit", "kind": "push", "does": "payment", "customer_entry": True,
        "identity": {"customer_id": "customer"},
        "fields": {"payment.account_id": "account", "payment.date": "paid",
                   "payment.amount_cents": {"column": "amount", "unit": "dollars"}}}


@pytest.fixture(scope="module")
def agrid(ray_session, tmp_path_factory):
    with grid_with_sources(tmp_path_factory, "import-audit", [CASH], customers=4) as g:
        yield g


@pytest.fixture(scope="module")
async def aapi(agrid, keystore):
    async with gateway(agrid, keystore) as client:
        yield client


async def _imports_of(api, cid: str) -> list[dict]:
    for _ in range(200):  # a restarting shard answers 503 for a moment
        r = await api.get(f"/v1/audit?customer={cid}", headers=auth("operator"))
        if r.status == 200:
            return [e for e in (await r.json())["items"] if e["kind"] == "import_rows"]
        assert r.status == 503, await r.text()
        await asyncio.sleep(0.05)
    raise AssertionError("audit not readable")


async def test_a_push_is_audited_on_each_customer_it_names_once_and_through_a_crash(aapi, agrid):
    rows = [{"customer": "C0000002", "account": "A00000002", "paid": "2026-01-05", "amount": "12.00"},
            {"customer": "C0000002", "account": "A00000002", "paid": "2026-01-06", "amount": "3.50"},
            {"customer": "C0000003", "account": "A00000099", "paid": "2026-01-05", "amount": "1.00"},  # refused
            {"customer": "C0000003", "account": "A00000003", "paid": "2026-01-07", "amount": "9.99"},
            {"customer": "C7777777", "account": "A1", "paid": "2026-01-05", "amount": "1.00"}]  # nobody's
    headers = {**auth("operator"), "X-Request-Id": "push-audit-1", "Idempotency-Key": "cash-2026-01"}
    r = await aapi.post("/v1/imports/cash-audit", json=rows, headers=headers)
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    assert (rcpt["applied"], rcpt["quarantined"]) == (3, 2)
    batch = rcpt["position"]["batch"]

    two, three = await _imports_of(aapi, "C0000002"), await _imports_of(aapi, "C0000003")
    assert len(two) == len(three) == 1
    e = two[0]
    assert (e["key_id"], e["role"], e["method"], e["route"], e["request_id"]) == (
        "ops", "operator", "POST", "/v1/imports/{source}", "push-audit-1")
    assert e["at"] and e["version"] >= 2
    assert e["changes"] == {"source": "cash-audit", "stream": "push:ops:cash-2026-01", "batch": batch,
                            "push_rows": 5, "accepted": 2, "quarantined": 0}
    assert {k: three[0]["changes"][k] for k in ("accepted", "quarantined")} == {"accepted": 1, "quarantined": 1}
    assert await _imports_of(aapi, "C0000001") == []  # a customer the push did not name

    # the client retries the same push: the same receipt, nothing applied twice, nothing recorded twice
    r = await aapi.post("/v1/imports/cash-audit", json=rows, headers=headers)
    assert r.status == 200 and (await r.json())["applied"] == rcpt["applied"]
    paid = (await (await aapi.get("/v1/customers/C0000002", headers=auth("operator"))).json())["payments"]
    assert sorted(p["amount_cents"] for p in paid if p["date"].startswith("2026-01")) == [350, 1200]
    assert len(await _imports_of(aapi, "C0000002")) == 1

    # the entries are in the WAL with the rows: a shard killed and replayed keeps them exactly
    for s in await agrid.astats():
        os.kill(s["pid"], signal.SIGKILL)
    assert await _imports_of(aapi, "C0000002") == two and await _imports_of(aapi, "C0000003") == three


async def test_customer_entry_push_is_audited_under_the_customers_key(aapi):
    rows = [{"customer": OWN_CUSTOMER, "account": "A00000001", "paid": "2026-02-01", "amount": "20.00"}]
    r = await aapi.post("/v1/imports/cash-audit", json=rows, headers=auth("customer"))
    assert r.status == 200, await r.text()
    [e] = await _imports_of(aapi, OWN_CUSTOMER)
    assert (e["key_id"], e["role"]) == ("portal", "customer")
    assert e["changes"]["accepted"] == 1 and e["changes"]["stream"] == "push"
