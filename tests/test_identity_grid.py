"""Identity through the real thing: Ray shard actors, their WALs, and the HTTP gateway."""
from __future__ import annotations

import pytest
from conftest import auth

from test_identity_resolver import BASE

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="session")
def id_grid(ray_session, tmp_path_factory):
    """A two-shard grid holding the hand-built base of test_identity_resolver."""
    from grid.cluster import Grid

    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("idgrid")), shards=2, namespace="cg-test-identity")
    for rec in BASE:
        body = {k: v for k, v in rec.items() if k not in ("customer_id", "version")}
        g.replace(rec["customer_id"], body)
    yield g
    g.shutdown()


@pytest.fixture(scope="session")
async def id_api(id_grid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(id_grid, keys=keystore))) as client:
        yield client


async def test_resolve_route_answers_in_order_and_writes_nothing(id_api, id_grid):
    before = id_grid.checksum()
    records = [{"source": "billing", "account_id": "A5"},
               {"source": "key_accounts", "name": "Acme Holdings", "address": "100 Main Street, Suite 4, Springfield IL 62701"},
               {"source": "web_form", "name": "Nobody Known", "phone": "707-555-0000"}]
    r = await id_api.post("/v1/identity/resolve", json={"records": records}, headers=auth("agent"))
    assert r.status == 200, await r.text()
    results = (await r.json())["results"]
    assert [(x["outcome"], x.get("customer_id")) for x in results] == [("link", "C5"), ("link", "C1"),
                                                                       ("new", None)]
    assert results[0]["key"] == "account_id"
    assert {c["field"]: c["level"] for c in results[1]["comparisons"]} == {"name": "exact", "address": "exact"}
    assert id_grid.checksum() == before


async def test_resolve_route_rejects_bad_records_naming_the_field(id_api):
    r = await id_api.post("/v1/identity/resolve", json={"records": [{"source": "s", "colour": "red"}]},
                          headers=auth("agent"))
    assert r.status == 422 or r.status == 400
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "colour" in (await r.text())
    r = await id_api.post("/v1/identity/resolve", json={"records": [{"name": "x"}]}, headers=auth("agent"))
    assert r.status in (400, 422) and "source" in await r.text()
    r = await id_api.post("/v1/identity/resolve", json={"records": []}, headers=auth("customer"))
    assert r.status == 403


async def test_links_are_written_through_the_wal_and_explained(id_api, id_grid):
    res = (await id_grid.aresolve([{"source": "key_accounts", "record_id": "KA-7", "name": "ACME Holdings, LLC",
                                    "address": "100 Main St., Ste. 4, Springfield, IL 62701",
                                    "phone": "415-555-0111", "at": "2026-03-01T00:00:00Z"}], write=True))[0]
    assert (res.outcome, res.customer_id) == ("link", "C1")
    r = await id_api.get("/v1/customers/C1/identity", headers=auth("operator"))
    assert r.status == 200, await r.text()
    view = await r.json()
    (link,) = [lk for lk in view["links"] if lk["record_key"] == "key_accounts:KA-7"]
    ev = link["resolution"]
    assert ev["outcome"] == "link" and ev["score"] >= id_grid.identity_rules.current.link
    assert {c["field"] for c in ev["comparisons"]} >= {"name", "address"}
    # golden record: the context outranks the spreadsheet for the name; the phone only the spreadsheet... and the
    # context (contacts) has one too, so the context's wins and the spreadsheet's is listed beside it
    assert view["golden"]["name"]["source"] == "context"
    assert {o["record_key"] for o in view["golden"]["phone"]["others"]} == {"key_accounts:KA-7"}
    # the linked record now finds the customer by its own key, and its new phone by the phone block
    again = (await id_grid.aresolve([{"source": "key_accounts", "record_id": "KA-7"}]))[0]
    assert (again.outcome, again.customer_id, again.key) == ("link", "C1", "record")


async def test_new_records_make_customers_and_a_later_row_links_to_them(id_grid):
    rows = [{"source": "web_form", "record_id": "wf-1", "name": "Priya Shah", "phone": "650-555-0142",
             "address": "22 Laurel Ln, Menlo Park, CA 94025"},
            {"source": "web_form", "record_id": "wf-2", "name": "Priya  Shah", "phone": "(650) 555-0142",
             "email": "priya@mail.example", "address": "22 Laurel Lane, Menlo Park CA 94025"}]
    a, b = await id_grid.aresolve(rows, write=True)
    assert a.outcome == "new" and (b.outcome, b.customer_id) == ("link", a.customer_id)
    assert (await id_grid.aget(a.customer_id))["name"] == "Priya Shah"
    # a retry of the same batch (after a crash, say) writes nothing twice
    a2, b2 = await id_grid.aresolve(rows, write=True)
    assert (a2.customer_id, b2.customer_id) == (a.customer_id, a.customer_id)
    assert [lk["record_key"] for lk in (await id_grid.aidentity(a.customer_id))["links"]] == ["web_form:wf-1",
                                                                                          "web_form:wf-2"]


async def test_review_decisions_are_remembered_and_override_scores(id_api, id_grid):
    son = {"source": "web_form", "record_id": "wf-son", "name": "John Smith", "address": "12 Oak Ave, Fresno",
           "email": "johnny.smith@mail.example", "phone": "559-555-0999"}
    res = (await id_grid.aresolve([son], write=True))[0]
    assert (res.outcome, res.customer_id) == ("review", "C2"), (res.score, res.comparisons)
    r = await id_api.get("/v1/identity/reviews?state=open", headers=auth("agent"))
    items = (await r.json())["items"]
    assert [i["review_id"] for i in items] == [res.review_id]
    # asked again, the same record is the same review, not a second one
    assert (await id_grid.aresolve([son], write=True))[0].review_id == res.review_id
    r = await id_api.post(f"/v1/identity/reviews/{res.review_id}", json={"decision": "different"},
                          headers=auth("agent"))
    assert r.status == 200, await r.text()
    assert (await r.json())["decision"] == "different"
    after = (await id_grid.aresolve([son]))[0]
    assert after.outcome == "new" and "C2" not in [c.customer_id for c in after.candidates]
    assert not (await (await id_api.get("/v1/identity/reviews?state=open", headers=auth("agent"))).json())["items"]
    r = await id_api.post(f"/v1/identity/reviews/{res.review_id}", json={"decision": "same"}, headers=auth("agent"))
    assert r.status == 409
    r = await id_api.post("/v1/identity/reviews/R000000000000000", json={"decision": "same"}, headers=auth("agent"))
    assert r.status == 404


async def test_a_same_decision_links_for_good(id_api, id_grid):
    rec = {"source": "call_center", "record_id": "cc-9", "name": "Maria Garcia Lopez", "address": "7 Elm Dr, San Jose"}
    res = (await id_grid.aresolve([rec], write=True))[0]
    assert res.outcome == "review" and res.customer_id == "C5", (res.score, res.comparisons)
    r = await id_api.post(f"/v1/identity/reviews/{res.review_id}", json={"decision": "same"}, headers=auth("agent"))
    assert r.status == 200
    after = (await id_grid.aresolve([rec]))[0]
    assert (after.outcome, after.customer_id) == ("link", "C5")
    assert after.decision == "same" or after.key == "record"


async def test_importer_contract(id_grid):
    from grid.identity import aresolve_batch

    rows = [{"source": "meters", "meter_id": "M5", "entity_id": "E9"},
            {"source": "meters", "meter_id": "M-unknown"},
            {"source": "billing", "customer_id": "C777", "name": "Brand New Customer", "account_id": 12345},
            {"source": "billing", "account_id": "A1", "meter_id": "M5"}]
    out = await aresolve_batch(id_grid, rows)
    assert [(o["outcome"], o["customer_id"]) for o in out] == [("link", "C5"), ("unresolved", None),
                                                               ("new", "C777"), ("review", "C1")]
    assert (out[0]["service_point_id"], out[0]["interval_minutes"]) == ("S5", 60)
    assert out[0]["evidence"]["key"] == "meter_id"
