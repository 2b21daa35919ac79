"""Truthful status: portfolio routes say 'being classified' (503), jobs and bill runs are listable and show in
/metrics with every shard's status and WAL position, and two classifications at once do not break each other."""
from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from conftest import auth, follow

from grid.gateway.app import create_app

H = auth("operator")


def _metric(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            got = key[len(name):].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(value)
    return None


async def test_portfolios_answer_503_while_the_first_classification_runs(base_grid, keystore):
    async with TestClient(TestServer(create_app(base_grid, keys=keystore))) as api:
        started = await api.post("/v1/admin/classify", headers=H)
        r = await api.get("/v1/portfolios", headers=H)
        assert r.status == 503 and int(r.headers["Retry-After"]) > 0
        assert "classified" in (await r.json(content_type="application/problem+json"))["detail"]
        job = await follow(api, started, H)
        assert job["state"] == "done"
        assert (await api.get("/v1/portfolios", headers=H)).status == 200


async def test_two_classifications_at_once_both_complete_alike(base_grid, keystore):
    async with TestClient(TestServer(create_app(base_grid, keys=keystore))) as api:
        a, b = await asyncio.gather(api.post("/v1/admin/classify", headers=H),
                                    api.post("/v1/admin/classify", headers=H))
        ja, jb = await asyncio.gather(follow(api, a, H), follow(api, b, H))
        assert ja["state"] == jb["state"] == "done", (ja, jb)
        assert ja["result"] == jb["result"]


async def test_bill_runs_are_listed_and_jobs_shards_and_wal_show_in_metrics(base_grid, keystore):
    async with TestClient(TestServer(create_app(base_grid, keys=keystore))) as api:
        run = await follow(api, await api.post("/v1/bill-runs", json={"period": "2025-12"}, headers=H), H)
        assert run["state"] == "done"
        listed = (await (await api.get("/v1/bill-runs?period=2025-12", headers=H)).json())["items"]
        assert [i["run_id"] for i in listed] == [run["run_id"]]
        item = listed[0]
        assert item["params"]["period"] == "2025-12" and item["counts"] == run["report"]["counts"]
        assert "mismatches" not in item
        assert (await (await api.get("/v1/bill-runs?period=2025-10", headers=H)).json())["items"] == []

        text = await (await api.get("/metrics")).text()
        assert _metric(text, "contextgrid_jobs", kind="bill-run", state="done") == 1
        assert _metric(text, "contextgrid_last_bill_run_bills", period="2025-12",
                       outcome="match") == run["report"]["counts"]["match"]
        stats = base_grid.stats()
        for s in stats:
            assert _metric(text, "contextgrid_shard_status", shard=s["shard"], status="ok") == 1
            assert _metric(text, "contextgrid_shard_wal_seq", shard=s["shard"]) == s["wal_seq"] > 0
        assert _metric(text, "contextgrid_classification_running") == 0
