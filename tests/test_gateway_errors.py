"""Bad input gets a 4xx problem naming the field, and nothing is partially written."""
import asyncio

import pytest
from conftest import auth

CID = "C0000007"
SP = "S00000007"
H = auth("operator")


async def problem(r):
    assert r.content_type == "application/problem+json", await r.text()
    return await r.json(content_type="application/problem+json")


async def ctx(api, cid=CID):
    return await (await api.get(f"/v1/customers/{cid}", headers=H)).json()


@pytest.mark.parametrize("body, status, field", [
    ({"attributes": {"x": 1}, "nickname": "Bo"}, 422, "nickname"),                      # unknown field
    ({"name": 42}, 422, "name"),                                                       # wrong type
    ({"contacts": {"upsert": [{"contact_id": "K1", "channels": [{"type": "fax", "address": "1"}]}]}},
     422, "contacts.upsert[0].channels[0].type"),                                      # out of enum
    ({"contacts": {"upsert": [{"contact_id": "K1", "channels": [
        {"type": "sms", "address": "+1555", "preference": 99}]}]}},
     422, "contacts.upsert[0].channels[0].preference"),                                # out of range
    ({}, 422, "body"),                                                                 # empty patch
    ({"programs": {"add": [{"account_id": "A-nope", "code": "EV_RATE"}]}}, 422, "programs.add[0].account_id"),
    ({"notes": {"add": [{"author": "x"}]}}, 422, "notes.add[0].text"),                # missing required
])
async def test_bad_patch_is_rejected_and_changes_nothing(api, body, status, field):
    before = await ctx(api)
    r = await api.patch(f"/v1/customers/{CID}", json=body, headers=H)
    assert r.status == status
    assert (await problem(r))["field"] == field
    assert await ctx(api) == before


async def test_malformed_json(api):
    r = await api.patch(f"/v1/customers/{CID}", data=b'{"name": "x"', headers={**H, "Content-Type": "application/json"})
    assert r.status == 422 and (await problem(r))["field"] == "body"


async def test_oversized_body_is_413(api):
    big = {"notes": {"add": [{"text": "x" * 4000}] * 20}}  # ~80 KB > the 64 KiB test limit
    r = await api.patch(f"/v1/customers/{CID}", json=big, headers=H)
    assert r.status == 413 and (await problem(r))["field"] == "body"


async def test_unknown_customer_is_404(api):
    r = await api.get("/v1/customers/C9999999", headers=H)
    assert r.status == 404 and (await problem(r))["field"] == "id"
    r = await api.patch("/v1/customers/C9999999", json={"name": "Ghost"}, headers=H)
    assert r.status == 404


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"), ("kind=alien", "kind"),
    ("has_solar=maybe", "has_solar"), ("colour=red", "colour"), ("cursor=%%%", "cursor"),
])
async def test_bad_listing_parameters(api, query, field):
    r = await api.get(f"/v1/customers?{query}", headers=H)
    assert r.status in (400, 422)
    assert (await problem(r))["field"] == field


async def test_bad_path_id_and_unknown_route(api):
    r = await api.get("/v1/customers/bad%20id!", headers=H)
    assert r.status == 422 and (await problem(r))["field"] == "id"
    r = await api.get("/v1/nothing-here", headers=H)
    assert r.status == 404 and (await problem(r))["field"] == "path"


async def test_usage_batch_with_one_bad_reading_writes_nothing(api):
    month = "2026-09"
    good = {"service_point_id": SP, "start": "2026-09-03T07:00:00Z", "import_wh": 777}
    cases = [
        ({"service_point_id": "S-unknown", "start": "2026-09-03T08:00:00Z", "import_wh": 1},
         "readings[1].service_point_id"),
        ({"service_point_id": SP, "start": "2026-09-03T08:30:00Z", "import_wh": 1}, "readings[1].start"),
        ({"service_point_id": SP, "start": "2026-09-03T08:00:00Z", "import_wh": -5}, "readings[1].import_wh"),
        ({"service_point_id": SP, "start": "yesterday", "import_wh": 5}, "readings[1].start"),
    ]
    url = f"/v1/customers/{CID}/usage"
    for bad, field in cases:
        r = await api.post(url, json={"readings": [good, bad]}, headers=H)
        assert r.status == 422, await r.text()
        assert (await problem(r))["field"] == field
    r = await api.get(f"{url}?month={month}&resolution=monthly", headers=H)
    assert (await r.json())["items"][0]["import_wh"] == 0
    r = await api.post(url, json={"readings": [good]}, headers=H)
    assert r.status == 200 and (await r.json())["written"] == 1
    r = await api.get(f"{url}?month={month}&resolution=monthly", headers=H)
    assert (await r.json())["items"][0]["import_wh"] == 777


async def test_concurrent_patches_are_all_applied(api):
    cid = "C0000011"
    n = 60

    async def one(i):
        r = await api.patch(f"/v1/customers/{cid}", headers=auth("agent"),
                            json={"attributes": {f"k{i}": i}, "notes": {"add": [{"text": f"note {i}"}]}})
        assert r.status == 200, await r.text()

    before = await ctx(api, cid)
    await asyncio.gather(*(one(i) for i in range(n)))
    after = await ctx(api, cid)
    assert after["version"] == before["version"] + n
    assert all(after["attributes"][f"k{i}"] == i for i in range(n))
    assert sorted(x["text"] for x in after["notes"][-n:]) == sorted(f"note {i}" for i in range(n))


async def test_read_after_write_through_the_near_cache(api):
    cid = "C0000012"
    for i in range(5):
        await ctx(api, cid)  # warm the cache
        r = await api.patch(f"/v1/customers/{cid}", json={"attributes": {"step": i}}, headers=H)
        assert r.status == 200
        assert (await ctx(api, cid))["attributes"]["step"] == i


async def test_if_match_and_idempotency_key(api):
    cid = "C0000013"
    version = (await ctx(api, cid))["version"]
    r = await api.patch(f"/v1/customers/{cid}", json={"segment": "x"}, headers={**H, "If-Match": f'"{version - 1}"'})
    assert r.status == 412
    h = {**H, "Idempotency-Key": "retry-me-1"}
    body = {"notes": {"add": [{"text": "only once"}]}}
    r1 = await api.patch(f"/v1/customers/{cid}", json=body, headers=h)
    r2 = await api.patch(f"/v1/customers/{cid}", json=body, headers=h)
    assert r1.status == r2.status == 200
    notes = (await ctx(api, cid))["notes"]
    assert [n["text"] for n in notes].count("only once") == 1


async def test_write_made_elsewhere_reaches_readers_through_the_near_cache(api, grid):
    cid = "C0000014"
    await ctx(api, cid)  # cached now
    out = grid.patch(cid, {"attributes": {"set_by": "python-client"}})  # not through the gateway
    for _ in range(50):  # the shard's change log is polled every 0.1 s
        got = await ctx(api, cid)
        if got["version"] >= out["version"]:
            break
        await asyncio.sleep(0.1)
    assert got["attributes"]["set_by"] == "python-client"


async def test_put_creates_and_replaces_a_context(api):
    from factories import context

    cid, body = context(777)
    r = await api.put(f"/v1/customers/{cid}", json=body, headers=H)
    assert r.status == 200, await r.text()
    got = await ctx(api, cid)
    assert got["name"] == "Customer 777" and got["accounts"][0]["account_id"] == "A00000777"
    r = await api.put(f"/v1/customers/{cid}", json={**body, "kind": "martian"}, headers=H)
    assert r.status == 422 and (await problem(r))["field"] == "kind"
    stolen = {**body, "accounts": [{**body["accounts"][0], "account_id": "A-x",
                                    "service_points": [{"service_point_id": SP, "interval_minutes": 60}]}]}
    r = await api.put(f"/v1/customers/{cid}", json=stolen, headers=H)
    assert r.status == 409  # that service point belongs to C0000007
    assert (await ctx(api, cid))["accounts"][0]["account_id"] == "A00000777"
    r = await api.put(f"/v1/customers/{cid}", json=body, headers=auth("customer"))
    assert r.status == 404  # not this customer's own id: existence does not leak


async def test_customer_records_efficiency_projects(api):
    from conftest import OWN_CUSTOMER

    body = {"supplemental": {"projects": {"add": [{"name": "LED retrofit", "start_date": "2026-03-01",
                                                   "expected_kwh_per_month": 120}]}}}
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", json=body, headers=auth("customer"))
    assert r.status == 200, await r.text()
    [p] = [p for p in (await r.json())["supplemental"]["projects"] if p["name"] == "LED retrofit"]
    got = await (await api.get(f"/v1/customers/{OWN_CUSTOMER}?format=xml", headers=auth("agent"))).read()
    assert b"LED retrofit" in got  # visible in every read
    bad = {"supplemental": {"projects": {"add": [{"name": "x", "start_date": "2026-03-01",
                                                  "expected_kwh_per_month": -3}]}}}
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", json=bad, headers=auth("customer"))
    assert r.status == 422
    assert (await problem(r))["field"] == "supplemental.projects.add[0].expected_kwh_per_month"
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", headers=auth("customer"),
                        json={"supplemental": {"projects": {"remove": [p["project_id"]]}}})
    assert r.status == 200 and not [x for x in (await r.json())["supplemental"]["projects"] if x["name"] == "LED retrofit"]
