"""Bill runs reconcile every computed bill against the legacy bill and find exactly the injected errors."""
import io

import pyarrow.parquet as pq
import pytest
from conftest import auth, follow

from grid.gateway.formats import decode_csv

H = auth("operator")


async def _run(api, period):
    r = await api.post("/v1/bill-runs", json={"period": period}, headers=H)
    assert r.status == 202
    return r.headers["Location"], await follow(api, r, H)


@pytest.mark.parametrize("period", ["2025-11", "2025-12"])
async def test_bill_run_finds_exactly_the_injected_errors(base_api, base_dir, period):
    url, run = await _run(base_api, period)
    assert run["state"] == "done" and run["progress"]["done"] == run["progress"]["total"] > 0
    report = run["report"]
    truth = pq.read_table(base_dir / "truth" / "bill_errors.parquet").to_pylist()
    want = {t["account_id"] for t in truth if t["period_start"].isoformat()[:7] == period}
    got = {m["account_id"] for m in report["mismatches"]}
    assert want, "the generator injected errors this month"
    assert got == want  # no miss, no false alarm
    assert report["held"] == len(want) and report["released"] == report["bills"] - len(want)
    assert report["counts"]["match"] == report["released"]
    assert report["diff_cents"] == sum(m["diff_cents"] for m in report["mismatches"]) > 0

    rows = decode_csv(await (await base_api.get(f"{url}?format=csv", headers=H)).read())
    assert {r["account_id"] for r in rows} == want
    r = await base_api.get(f"{url}/report.parquet", headers=H)
    assert r.status == 200
    table = pq.read_table(io.BytesIO(await r.read()))
    assert set(table.column("account_id").to_pylist()) == want

    # the held bill shows as held, beside its legacy bill, with the comparison
    m = report["mismatches"][0]
    r = await base_api.get(f"/v1/customers/{m['customer_id']}/bills?period={period}&account_id={m['account_id']}",
                           headers=H)
    [item] = (await r.json())["items"]
    assert item["status"] == "held" and item["comparison"]["outcome"] == m["outcome"]
    assert item["computed"]["total_cents"] == m["computed_total_cents"]
    assert item["legacy"]["total_cents"] == m["legacy_total_cents"]


async def test_bill_run_rejects_bad_period_and_non_operators(base_api):
    r = await base_api.post("/v1/bill-runs", json={"period": "2025-13"}, headers=H)
    assert r.status == 422 and (await r.json(content_type="application/problem+json"))["field"] == "period"
    r = await base_api.post("/v1/bill-runs", json={"period": "2025-11"}, headers=auth("agent"))
    assert r.status == 403
    r = await base_api.get("/v1/bill-runs/nope", headers=H)
    assert r.status == 404
