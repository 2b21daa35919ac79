"""Portfolios and key accounts over the whole grid, through the API; re-classification after a write."""
import shutil

import pyarrow.parquet as pq
from aiohttp.test_utils import TestClient, TestServer
from conftest import auth, follow

from grid.gateway.app import create_app
from grid.gateway.config import GatewayConfig

H = auth("operator")


async def _job(api, r):
    job = await follow(api, r, H)
    assert job["state"] == "done", job
    return job


async def test_portfolios_match_the_generators_truth_across_shards(base_api, base_dir):
    await _job(base_api, await base_api.post("/v1/admin/classify", headers=H))
    customers = pq.read_table(base_dir / "customers", columns=["customer_id", "entity_id"]).to_pylist()
    truth = {r["entity_id"]: r["portfolio_key"] for r in pq.read_table(base_dir / "truth" / "portfolios.parquet").to_pylist()}
    accounts = pq.read_table(base_dir / "accounts", columns=["account_id", "customer_id"]).to_pylist()
    entity_of = {c["customer_id"]: c["entity_id"] for c in customers}
    want: dict[str, set] = {}
    for a in accounts:
        want.setdefault(truth[entity_of[a["customer_id"]]], set()).add(a["account_id"])

    got: dict[str, set] = {}
    cursor = None
    while True:
        url = "/v1/portfolios?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = await (await base_api.get(url, headers=H)).json()
        for item in page["items"]:
            p = await (await base_api.get(f"/v1/portfolios/{item['portfolio_id']}", headers=H)).json()
            got[item["portfolio_id"]] = set(p["accounts"])
        cursor = page["next"]
        if not cursor:
            break
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, want.values()))
    multi = [g for g in want.values() if len({a for a in g}) > 1]
    assert multi, "the base has multi-account portfolios"

    keyed = await (await base_api.get("/v1/portfolios?key_account=true&limit=1000", headers=H)).json()
    assert keyed["items"] and all(i["key_account"] and i["reasons"] for i in keyed["items"])
    ranking = await (await base_api.get("/v1/profitability?limit=5", headers=H)).json()
    assert ranking["total"] == len(got)
    top = ranking["items"][0]
    one = await (await base_api.get(f"/v1/portfolios/{top['portfolio_id']}/profitability", headers=H)).json()
    assert one == top


async def test_customer_context_shows_classification_and_follows_writes(base_api, base_dir):
    await _job(base_api, await base_api.post("/v1/admin/classify", headers=H))
    cid = pq.read_table(base_dir / "customers", columns=["customer_id"]).column(0)[3].as_py()
    ctx = await (await base_api.get(f"/v1/customers/{cid}", headers=H)).json()
    cls = ctx["classification"]
    assert cls["portfolio_id"].startswith("P") and cls["rules_version"]
    r = await base_api.patch(f"/v1/customers/{cid}", json={"attributes": {"life_support": True}}, headers=H)
    assert r.status == 200
    after = (await r.json())["classification"]
    assert after["load_priority"] == "critical" and "life_support" in after["load_priority_reasons"]


async def test_bad_rule_file_is_rejected_and_changes_nothing(base_grid, keystore, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree("rules", rules, ignore=shutil.ignore_patterns("tariffs"))
    config = GatewayConfig(rules_dir=str(rules))
    async with TestClient(TestServer(create_app(base_grid, config, keystore))) as api:
        from grid.gateway.keys import RULES

        before = api.app[RULES].version
        text = (rules / "key_accounts.yaml").read_text()
        for broken, field in [(text.replace("op: ge", "op: bigger", 1), "op"),
                              (text.replace("spend_12m_cents", "spend_13m_cents", 1), "field")]:
            (rules / "key_accounts.yaml").write_text(broken)
            r = await api.post("/v1/admin/rules/reload", headers=H)
            assert r.status == 422, await r.text()
            problem = await r.json(content_type="application/problem+json")
            assert field in problem["field"] and "key_accounts.yaml" in problem["detail"] + str(problem.get("file"))
            assert api.app[RULES].version == before
        (rules / "key_accounts.yaml").write_text(text.replace("description:", "description: v2 -", 1))
        job = await _job(api, await api.post("/v1/admin/rules/reload", headers=H))
        assert api.app[RULES].version != before and job["result"]["portfolios"] > 0
