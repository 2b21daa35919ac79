"""Merge and unmerge across two shards, with a shard killed between any two steps."""
from __future__ import annotations

import asyncio

import pytest
from conftest import auth

from test_identity_incremental import _crash

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def mgrid(ray_session, tmp_path_factory):
    from grid.cluster import Grid

    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("mergegrid")), shards=2, namespace="cg-test-identity-merge")
    yield g
    g.shutdown()


@pytest.fixture(scope="module")
async def mapi(mgrid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(mgrid, keys=keystore))) as client:
        yield client


_counter = iter(range(1000))


def _pair(grid, same_shard: bool = False) -> tuple[str, str]:
    """Two fresh customers on different shards (or one shard): a duplicate keyed twice."""
    n = next(_counter)
    ids = []
    i = 0
    while len(ids) < 2:
        cid = f"M{n:03d}{i:04d}"
        i += 1
        if ids and (grid.shard_index(cid) == grid.shard_index(ids[0])) != same_shard:
            continue
        ids.append(cid)
    for k, cid in enumerate(ids):
        grid.replace(cid, {
            "name": "Dana Whitfield" if k == 0 else "WHITFIELD, DANA", "kind": "residential",
            "attributes": {"tenure_years": 3} if k == 0 else {"paperless": True},
            "accounts": [{"account_id": f"A-{cid}", "rate_plan_id": "res-tou",
                          "billing_address": "9 Quarry Rd, Merced, CA 95340",
                          "service_points": [{"service_point_id": f"S-{cid}", "meter_id": f"MT-{cid}",
                                              "premise_address": "9 Quarry Rd, Merced, CA 95340",
                                              "interval_minutes": 60}]}],
            "contacts": [{"contact_id": f"K-{cid}", "name": "Dana", "roles": ["billing"],
                          "channels": [{"type": "email", "address": f"dana{k}@mail.example"}]}],
            "payments": [{"payment_id": f"P-{cid}", "date": "2026-01-0%d" % (k + 1), "amount_cents": 1000 + k,
                          "method": "card"}]})
    return ids[0], ids[1]


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "version"}


async def test_merge_moves_the_context_across_shards_and_unmerge_restores_both(mgrid, mapi):
    s, m = _pair(mgrid)
    assert mgrid.shard_index(s) != mgrid.shard_index(m)
    before_s, before_m = await mgrid.aget(s), await mgrid.aget(m)
    r = await mapi.post("/v1/identity/merges", json={"survivor": s, "merged": m}, headers=auth("operator"))
    assert r.status == 200, await r.text()
    merged = await mgrid.aget(s)
    assert [a["account_id"] for a in merged["accounts"]] == [f"A-{s}", f"A-{m}"]
    assert {c["contact_id"] for c in merged["contacts"]} == {f"K-{s}", f"K-{m}"}
    assert len(merged["payments"]) == 2 and merged["attributes"] == {"tenure_years": 3, "paperless": True}
    # the old id answers where it went, over HTTP too
    r = await mapi.get(f"/v1/customers/{m}", headers=auth("operator"))
    assert r.status == 410 and (await r.json())["merged_into"] == s
    r = await mapi.get(f"/v1/customers/{m}/identity", headers=auth("operator"))
    assert (await r.json())["merged_into"] == s
    # the merged customer's keys find the survivor now; the golden record says where each value came from
    (res,) = await mgrid.aresolve([{"source": "billing", "account_id": f"A-{m}"}])
    assert (res.outcome, res.customer_id) == ("link", s)
    (res,) = await mgrid.aresolve([{"source": "billing", "customer_id": m}])
    assert (res.outcome, res.customer_id) == ("link", s)
    view = await mgrid.aidentity(s)
    assert view["golden"]["name"]["value"] == "Dana Whitfield"
    assert {o["record_key"] for o in view["golden"]["name"]["others"]} == {f"merged:{m}"}
    # unmerge: both come back as they were
    r = await mapi.post("/v1/identity/unmerges", json={"merged": m}, headers=auth("operator"))
    assert r.status == 200, await r.text()
    assert _strip(await mgrid.aget(s)) == _strip(before_s)
    assert _strip(await mgrid.aget(m)) == _strip(before_m)
    (res,) = await mgrid.aresolve([{"source": "billing", "account_id": f"A-{m}"}])
    assert res.customer_id == m
    # and a second unmerge is a no-op, a merge into itself is refused
    assert (await mgrid.aunmerge(m))["state"] == "undone"
    r = await mapi.post("/v1/identity/merges", json={"survivor": s, "merged": s}, headers=auth("operator"))
    assert r.status == 422
    r = await mapi.post("/v1/identity/merges", json={"survivor": s, "merged": m}, headers=auth("agent"))
    assert r.status == 403


async def test_merge_on_one_shard_keeps_usage_reachable(mgrid):
    s, m = _pair(mgrid, same_shard=True)
    mgrid.append_usage(m, [{"service_point_id": f"S-{m}", "start": "2026-01-05T10:00:00Z", "import_wh": 750}])
    await mgrid.amerge(s, m)
    usage = await mgrid.acustomer_usage(s, "2026-01", f"S-{m}", "monthly")
    assert sum(i["import_wh"] for i in usage["items"]) == 750
    await mgrid.aunmerge(m)
    usage = await mgrid.acustomer_usage(m, "2026-01", f"S-{m}", "monthly")
    assert sum(i["import_wh"] for i in usage["items"]) == 750


@pytest.mark.parametrize("step,victim", [(1, "merged"), (1, "survivor"), (2, "merged"), (2, "survivor")])
async def test_a_crash_between_merge_steps_is_finished_by_a_retry(mgrid, step, victim):
    from grid.identity import client
    from grid.identity.merge import merge_id

    s, m = _pair(mgrid)
    mgrid.append_usage(m, [{"service_point_id": f"S-{m}", "start": "2026-01-05T10:00:00Z", "import_wh": 640}])
    mid = merge_id(s, m, (await mgrid.aget(m))["version"])
    await client.merge_steps(mgrid, s, m, mid, stop_after=step)
    who = s if victim == "survivor" else m
    await _crash(mgrid, mgrid.shards[mgrid.shard_index(who)])
    if step == 1 and victim == "merged":
        (resumed,) = await mgrid.aresume_merges()  # the begun merge is found on the shard after its restart
        assert resumed["merge_id"] == mid
    out = await mgrid.amerge(s, m)  # idempotent: finishes (or confirms) the same merge
    assert out["merge_id"] == mid
    rec = await mgrid.aget(s)
    assert [a["account_id"] for a in rec["accounts"]] == [f"A-{s}", f"A-{m}"]  # moved once, not twice
    assert len(rec["payments"]) == 2
    assert (await mgrid.aidentity(m))["merged_into"] == s
    assert not await mgrid.aresume_merges()
    # the merged customer's usage history moved with its service point, once
    assert await _monthly_wh(mgrid, s, f"S-{m}") == 640


async def test_a_crash_between_unmerge_steps_is_finished_by_a_retry(mgrid):
    from grid.cluster import make_op

    s, m = _pair(mgrid)
    mgrid.append_usage(m, [{"service_point_id": f"S-{m}", "start": "2026-01-05T10:00:00Z", "import_wh": 910}])
    before_m = await mgrid.aget(m)
    out = await mgrid.amerge(s, m)
    assert await _monthly_wh(mgrid, s, f"S-{m}") == 910
    await mgrid.awrite(make_op("identity_unmerge_out", s, {"merge_id": out["merge_id"]},
                               f"{out['merge_id']}:unmerge-out"))
    await _crash(mgrid, mgrid.shards[mgrid.shard_index(s)])
    await _crash(mgrid, mgrid.shards[mgrid.shard_index(m)])
    assert (await mgrid.aunmerge(m))["state"] == "undone"
    assert _strip(await mgrid.aget(m)) == _strip(before_m)
    assert [a["account_id"] for a in (await mgrid.aget(s))["accounts"]] == [f"A-{s}"]
    # the usage came back with the restored customer (kept by the survivor's shard across its crash)
    assert await _monthly_wh(mgrid, m, f"S-{m}") == 910


async def _monthly_wh(grid, cid: str, sp: str) -> int:
    usage = await grid.acustomer_usage(cid, "2026-01", sp, "monthly")
    return sum(i["import_wh"] for i in usage["items"])


async def test_a_write_to_a_customer_being_merged_is_refused_not_lost(mgrid, mapi):
    from grid.errors import Conflict
    from grid.identity import client
    from grid.identity.merge import merge_id

    s, m = _pair(mgrid)
    mid = merge_id(s, m, (await mgrid.aget(m))["version"])
    await client.merge_steps(mgrid, s, m, mid, stop_after=1)  # step 1 done: m's context is on its way to s
    r = await mapi.patch(f"/v1/customers/{m}", json={"attributes": {"paperless": False}}, headers=auth("operator"))
    assert r.status == 409, await r.text()
    body = await r.json()
    assert body["field"] == "id" and body["merging_into"] == s and int(r.headers["Retry-After"]) >= 1
    with pytest.raises(Conflict):
        mgrid.append_usage(m, [{"service_point_id": f"S-{m}", "start": "2026-01-07T10:00:00Z", "import_wh": 5}])
    # the survivor is not frozen; once the merge is done the old id says where to write
    r = await mapi.patch(f"/v1/customers/{s}", json={"attributes": {"vip": True}}, headers=auth("operator"))
    assert r.status == 200, await r.text()
    await mgrid.amerge(s, m)
    rec = await mgrid.aget(s)
    assert rec["attributes"] == {"tenure_years": 3, "vip": True, "paperless": True}
    r = await mapi.patch(f"/v1/customers/{m}", json={"attributes": {"paperless": False}}, headers=auth("operator"))
    assert r.status == 410 and (await r.json())["merged_into"] == s


async def test_a_merge_moves_the_portfolios_without_waiting_for_the_next_classification(mgrid, mapi):
    from conftest import follow

    s, m = _pair(mgrid)
    H = auth("operator")
    job = await follow(mapi, await mapi.post("/v1/admin/classify", headers=H), H)
    assert job["state"] == "done", job

    async def portfolio(account: str) -> dict:
        page = await (await mapi.get("/v1/portfolios?limit=500", headers=H)).json()
        for item in page["items"]:
            p = await (await mapi.get(f"/v1/portfolios/{item['portfolio_id']}", headers=H)).json()
            if account in p["accounts"]:
                return p
        raise AssertionError(f"no portfolio holds {account}")

    assert f"A-{m}" not in (await portfolio(f"A-{s}"))["accounts"]
    r = await mapi.post("/v1/identity/merges", json={"survivor": s, "merged": m}, headers=H)
    assert r.status == 200, await r.text()
    out = await r.json()
    for _ in range(1200):  # the classification the merge started (polled as its job)
        job = await (await mapi.get(f"/v1/admin/jobs/{out['classification']['job_id']}", headers=H)).json()
        if job["state"] != "running":
            break
        await asyncio.sleep(0.05)
    assert job["state"] == "done", job
    p = await portfolio(f"A-{s}")
    assert f"A-{m}" in p["accounts"] and p["customers"] == [s]
