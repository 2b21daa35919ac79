"""The rate check: any usage under any tariff, with clear errors for bad input."""
from conftest import auth

from grid.timegrid import calendar
import datetime as dt

H = auth("agent")


def _hours(start, end):
    return calendar(dt.date.fromisoformat(start), dt.date.fromisoformat(end), 60, "America/Los_Angeles").n


async def test_rate_check_by_id_and_inline_agree(api):
    n = _hours("2026-07-01", "2026-08-01")
    usage = [500 + (i % 24) * 40 for i in range(n)]
    body = {"tariff": "res-tou", "start": "2026-07-01", "end": "2026-08-01", "import_wh": usage}
    r = await api.post("/v1/bills/calculate?trace=true", json=body, headers=H)
    assert r.status == 200, await r.text()
    bill = await r.json()
    assert bill["total_cents"] == sum(l["amount_cents"] for l in bill["lines"]) > 0
    assert "trace" in bill
    urdb = await (await api.get("/v1/tariffs/res-tou", headers=H)).json()
    r = await api.post("/v1/bills/calculate", json={**body, "tariff": urdb}, headers=H)
    assert (await r.json())["total_cents"] == bill["total_cents"]


async def test_dst_day_needs_25_hours(api):
    # 2026-11-01 falls back in Los Angeles: 25 hourly values
    body = {"tariff": "res-tou", "start": "2026-11-01", "end": "2026-11-02", "import_wh": [100] * 24}
    r = await api.post("/v1/bills/calculate", json=body, headers=H)
    assert r.status == 422
    problem = await r.json(content_type="application/problem+json")
    assert problem["field"] == "import_wh" and "25" in problem["detail"]
    r = await api.post("/v1/bills/calculate", json={**body, "import_wh": [100] * 25}, headers=H)
    assert r.status == 200


async def test_bad_rate_check_inputs(api):
    good = {"tariff": "res-tou", "start": "2026-07-01", "end": "2026-07-02", "import_wh": [1] * 24}
    for patch, field in [({"import_wh": [-1] + [1] * 23}, "import_wh[0]"),
                         ({"tariff": "no-such-plan"}, "tariff"),
                         ({"end": "2026-06-01"}, "end"),
                         ({"interval_minutes": 7}, "interval_minutes"),
                         ({"tariff": {"energyratestructure": [[{"rate": "x"}]]}}, None)]:
        r = await api.post("/v1/bills/calculate", json={**good, **patch}, headers=H)
        assert r.status == 422, (patch, await r.text())
        problem = await r.json(content_type="application/problem+json")
        if field:
            assert problem["field"] == field
        else:
            assert problem["field"].startswith("energy")


async def test_tariff_put_validates_first(api):
    r = await api.put("/v1/tariffs/bad-one", json={"energyratestructure": [[{"rate": 0.1, "max": -5}]]},
                      headers=auth("operator"))
    assert r.status == 422
    assert "max" in (await r.json(content_type="application/problem+json"))["field"]
    assert (await api.get("/v1/tariffs/bad-one", headers=H)).status == 404
    r = await api.put("/v1/tariffs/res-tou", json={}, headers=H)
    assert r.status == 403
    ids = [t["id"] for t in (await (await api.get("/v1/tariffs", headers=H)).json())["items"]]
    assert "res-tou" in ids and "com-demand" in ids
