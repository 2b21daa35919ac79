"""The portal's what-if routes through the gateway: each route, formats, auth, and bad inputs as 4xx problems."""
import csv
import io
import json

import pytest
from conftest import OWN_CUSTOMER, auth
from portal_seed import AS_OF, PLAIN, SOLAR, seed

H = auth("operator")


@pytest.fixture(scope="module")
def seeded(grid):
    return seed(grid)


async def problem(r):
    assert r.content_type == "application/problem+json", await r.text()
    return await r.json(content_type="application/problem+json")


async def test_current_bill(api, seeded):
    r = await api.get(f"/v1/customers/{PLAIN}/bill/current?as_of=2026-10-20", headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert data["as_of"] == "2026-10-20"
    (acct,) = data["items"]
    assert acct["period_start"] == "2026-10-01" and acct["period_end"] == "2026-11-01"
    assert acct["to_date"]["end"] == "2026-10-21" and acct["to_date"]["days"] == 20
    assert acct["to_date"]["total_cents"] == sum(line["amount_cents"] for line in acct["to_date"]["lines"])
    assert 0 < acct["to_date"]["total_cents"] < acct["projected"]["total_cents"]
    assert data["to_date_cents"] == acct["to_date"]["total_cents"]
    # usage after as_of is ignored, so the projection's estimated energy is the 11 days not yet billed
    assert acct["projected"]["estimated_import_wh"] > 0
    # each line is named from res-tou's schedule: October is winter, energy is off-peak or peak
    labels = {line["code"]: line["label"] for line in acct["projected"]["lines"]}
    assert labels["ENERGY_P3_T0"] == "Winter peak energy, tier 1"
    assert all(label != code for code, label in labels.items()), labels


async def test_current_bill_as_csv(api, seeded):
    r = await api.get(f"/v1/customers/{PLAIN}/bill/current?as_of=2026-10-20&format=csv", headers=H)
    assert r.status == 200 and r.content_type == "text/csv"
    header = (await r.text()).splitlines()[0]
    assert "account_id" in header and "projected.total_cents" in header


async def test_scenarios_rank_plans_with_difference_from_current(api, seeded):
    body = {"plans": ["res-tiered", "res-tou-nem", "public-flat"]}
    r = await api.post(f"/v1/customers/{SOLAR}/scenarios?as_of={AS_OF}", json=body, headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert data["current_plan_id"] == "res-tou"
    assert data["months"][0] == "2025-11" and data["months"][-1] == "2026-10"
    items = data["items"]
    assert {i["plan_id"] for i in items} == {"res-tou", "res-tiered", "res-tou-nem", "public-flat"}
    assert [i["rank"] for i in items] == [1, 2, 3, 4]
    assert [i["total_cents"] for i in items] == sorted(i["total_cents"] for i in items)
    current = next(i for i in items if i["is_current"])
    assert current["difference_cents"] == 0
    assert current["total_cents"] == data["baseline"]["total_cents"]  # no changes: the current plan is the baseline
    for item in items:
        assert len(item["bills"]) == 12
        assert item["total_cents"] == sum(b["total_cents"] for b in item["bills"])
        assert item["difference_cents"] == item["total_cents"] - current["total_cents"]
        for b, cb in zip(item["bills"], current["bills"]):
            assert b["total_cents"] == sum(line["amount_cents"] for line in b["lines"])
            assert b["difference_cents"] == b["total_cents"] - cb["total_cents"]


async def test_scenarios_with_load_changes_and_an_inline_tariff(api, seeded):
    flat = {"label": "my-flat", "name": "Flat 30c", "energyratestructure": [[{"rate": 0.30, "unit": "kWh"}]],
            "energyweekdayschedule": [[0] * 24] * 12, "energyweekendschedule": [[0] * 24] * 12,
            "fixedchargefirstmeter": 10, "fixedchargeunits": "$/month"}
    body = {"plans": ["res-tiered", flat],
            "changes": {"solar": {"kw": 4}, "shift": {"percent": 25}, "ev": {"kwh_per_day": 8, "start_hour": 23}}}
    r = await api.post(f"/v1/customers/{PLAIN}/scenarios?as_of={AS_OF}", json=body, headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    inline = next(i for i in data["items"] if i["source"] == "inline")
    assert inline["plan_id"] == "my-flat"
    assert data["changes"]["solar"]["kw"] == 4 and data["changes"]["shift"]["percent"] == 25
    assert data["load"]["scenario_export_wh"] > data["load"]["export_wh"] == 0  # new panels export at noon
    current = next(i for i in data["items"] if i["is_current"])
    assert current["change_from_today_cents"] == current["total_cents"] - data["baseline"]["total_cents"] != 0


@pytest.mark.parametrize("body, status, field", [
    ({"plans": ["no-such-plan"]}, 404, "plans[0]"),
    ({"plans": ["res-tiered", "nope"]}, 404, "plans[1]"),
    ({"plans": ["res-tou", "bad id!"]}, 422, "plans[1]"),
    ({"plans": [{"energyratestructure": [[{"rate": 0.1, "max": -5}, {"rate": 0.2}]],
                 "energyweekdayschedule": [[0] * 24] * 12, "energyweekendschedule": [[0] * 24] * 12}]},
     422, "plans[0].energyratestructure[0][0].max"),
    ({"plans": []}, 422, "plans"),
    ({}, 422, "plans"),
    ({"plans": ["res-tou"], "changes": {"solar": {"kw": -3}}}, 422, "changes.solar.kw"),
    ({"plans": ["res-tou"], "changes": {"shift": {"percent": 120}}}, 422, "changes.shift.percent"),
    ({"plans": ["res-tou"], "changes": {"shift": {"percent": -1}}}, 422, "changes.shift.percent"),
    ({"plans": ["res-tou"], "changes": {"ev": {"kwh_per_day": 200, "charger_kw": 3}}}, 422, "changes.ev.kwh_per_day"),
    ({"plans": ["res-tou"], "changes": {"wind": {"kw": 1}}}, 422, "changes.wind"),
    ({"plans": ["res-tou"], "account_id": "A-nope"}, 404, "account_id"),
])
async def test_bad_scenario_inputs_are_4xx_naming_the_field(api, seeded, body, status, field):
    r = await api.post(f"/v1/customers/{PLAIN}/scenarios?as_of={AS_OF}", json=body, headers=H)
    assert r.status == status, await r.text()
    assert (await problem(r))["field"] == field


async def test_forecast(api, seeded):
    r = await api.get(f"/v1/customers/{PLAIN}/forecast?months=6&as_of={AS_OF}", headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert [i["month"] for i in data["items"]] == ["2026-11", "2026-12", "2027-01", "2027-02", "2027-03", "2027-04"]
    assert data["history_months"] == 24
    for i in data["items"]:
        assert i["low_cents"] <= i["forecast_cents"] <= i["high_cents"]
    assert data["items"][0]["source_month"] == "projection"  # the open month: the bill card's projection
    for i in data["items"][1:]:
        assert i["source_month"] == f"{int(i['month'][:4]) - 1}-{i['month'][5:]}"
    assert data["total_cents"] == sum(i["forecast_cents"] for i in data["items"])
    assert abs(data["levelized_cents"] * 6 - data["total_cents"]) <= 3
    assert data["items"][-1]["balance_cents"] == data["levelized_cents"] * 6 - data["total_cents"]
    assert "method" in data and data["history_average_cents"] > 0


@pytest.mark.parametrize("as_of", [AS_OF, "2026-10-20"])  # no reading yet in the open month; 20 days of them
async def test_bill_card_and_forecast_agree_on_the_open_month(api, seeded, as_of):
    bill = await (await api.get(f"/v1/customers/{PLAIN}/bill/current?as_of={as_of}", headers=H)).json()
    fc = await (await api.get(f"/v1/customers/{PLAIN}/forecast?months=2&as_of={as_of}", headers=H)).json()
    [acct] = bill["items"]
    assert fc["items"][0]["month"] == acct["period_start"][:7]
    assert fc["items"][0]["forecast_cents"] == bill["projected_cents"] == acct["projected"]["total_cents"] > 0
    assert fc["items"][0]["import_wh"] == acct["projected"]["import_wh"]


@pytest.mark.parametrize("query, field", [("months=0", "months"), ("months=25", "months"), ("months=x", "months"),
                                          ("as_of=2026-13-01", "as_of"), ("horizon=3", "horizon")])
async def test_bad_forecast_query(api, seeded, query, field):
    r = await api.get(f"/v1/customers/{PLAIN}/forecast?{query}", headers=H)
    assert r.status == 422
    assert (await problem(r))["field"] == field


async def test_green(api, seeded):
    r = await api.get(f"/v1/customers/{SOLAR}/green?as_of={AS_OF}", headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert data["solar_kw_dc"] == 5.0 and data["solar_kw_source"] == "attribute"
    assert data["export_wh"] > 0 and data["generation_wh"] > 0
    assert data["consumption_wh"] == data["import_wh"] + data["self_consumed_wh"]
    assert 0 < data["solar_share"] < 1
    assert data["green_program_wh"] == data["import_wh"]  # GREEN_POWER matches 100 % of import by default
    assert data["avoided_co2_g"] == sum(i["avoided_co2_g"] for i in data["items"])
    r = await api.get(f"/v1/customers/{PLAIN}/green?as_of={AS_OF}", headers=H)
    plain = await r.json()
    assert plain["solar_kw_dc"] is None and plain["generation_wh"] == 0 and plain["solar_share"] == 0


async def test_green_as_xml(api, seeded):
    r = await api.get(f"/v1/customers/{SOLAR}/green?as_of={AS_OF}", headers={**H, "Accept": "application/xml"})
    assert r.status == 200 and r.content_type == "application/xml"
    assert b"<avoided_co2_g" in await r.read()


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/bill/current", None), ("POST", "/scenarios", {"plans": ["res-tiered"]}),
    ("GET", "/forecast?months=2", None), ("GET", "/green", None)])
async def test_customer_key_sees_only_its_own_what_ifs(api, method, path, body):
    own = await api.request(method, f"/v1/customers/{OWN_CUSTOMER}{path}", json=body, headers=auth("customer"))
    assert own.status == 200, await own.text()
    other = await api.request(method, f"/v1/customers/C0000003{path}", json=body, headers=auth("customer"))
    assert other.status == 404
    none = await api.request(method, f"/v1/customers/{OWN_CUSTOMER}{path}", json=body)
    assert none.status == 401


async def test_portal_page_and_assets_are_served(api):
    r = await api.get("/portal")
    assert r.status == 200 and "text/html" in r.content_type
    html = await r.text()
    for asset in ("/portal/static/app.js", "/portal/static/style.css"):
        assert asset in html
        a = await api.get(asset)
        assert a.status == 200, asset
    assert (await api.get("/portal/static/nope.js")).status == 404


async def test_openapi_lists_the_portal_routes(api):
    import yaml

    spec = yaml.safe_load(await (await api.get("/v1/openapi.yaml")).text())
    for path in ("/v1/customers/{id}/bill/current", "/v1/customers/{id}/scenarios", "/v1/customers/{id}/forecast",
                 "/v1/customers/{id}/green"):
        assert path in spec["paths"]
    assert json.dumps(spec["components"]["schemas"]["ScenarioRequest"])


async def test_bills_answer_the_amount_due_as_of_a_day(api, seeded):
    from portal_seed import SEPTEMBER_DUE_CENTS

    # 20 October: only the September bill is out; 10,000 paid on 2 October is against it
    r = await api.get(f"/v1/customers/{SOLAR}/bills?as_of=2026-10-20", headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    assert [b["bill_id"] for b in data["items"]] == ["B902-2026-09"]
    assert data["amount_due_cents"] == SEPTEMBER_DUE_CENTS
    assert data["amount_due"]["due_date"] == "2026-10-22" and data["amount_due"]["as_of"] == "2026-10-20"
    # without a day: every bill (newest first, as before) and every payment on record: October's bill less the
    # 12,000 paid on 3 November
    data = await (await api.get(f"/v1/customers/{SOLAR}/bills", headers=H)).json()
    assert [b["bill_id"] for b in data["items"]] == ["B902-2026-10", "B902-2026-09"]
    assert all(line["label"] for b in data["items"] for line in b["lines"])
    assert data["amount_due_cents"] == 9_480 + 2_390 + 1_175 - 13_045 + 7_655 + 3_570 + 1_214 - 12_000
    # one account's: the same; an unknown account is a 404 naming the field; a bad day a 4xx naming as_of
    acct = data["items"][0]["account_id"]
    one = await (await api.get(f"/v1/customers/{SOLAR}/bills?account_id={acct}", headers=H)).json()
    assert one["amount_due_cents"] == data["amount_due_cents"]
    r = await api.get(f"/v1/customers/{SOLAR}/bills?account_id=NOPE", headers=H)
    assert r.status == 404 and (await problem(r))["field"] == "account_id"
    r = await api.get(f"/v1/customers/{SOLAR}/bills?as_of=2026-13-01", headers=H)
    assert 400 <= r.status < 500 and "as_of" in json.dumps(await problem(r))
    # a customer with no bills owes nothing
    plain = await (await api.get(f"/v1/customers/{PLAIN}/bills?as_of={AS_OF}", headers=H)).json()
    assert plain["items"] == [] and plain["amount_due_cents"] == 0 and plain["amount_due"]["due_date"] is None


async def test_plan_comparison_bills_only_the_months_with_data(api, grid):
    from portal_seed import NEWCOMER, NEWCOMER_MONTHS, NO_USAGE, seed_newcomers
    from grid.timegrid import months_between

    seed_newcomers(grid)
    r = await api.post(f"/v1/customers/{NEWCOMER}/scenarios?as_of=2026-10-20", json={"plans": ["res-tiered"]},
                       headers=H)
    assert r.status == 200, await r.text()
    data = await r.json()
    looked_at = months_between("2025-10", 12)
    assert data["months"] == NEWCOMER_MONTHS
    assert data["months_without_data"] == [m for m in looked_at if m not in NEWCOMER_MONTHS]
    for item in data["items"]:  # three bills per plan, no fixed-charge-only months in the totals
        assert [b["month"] for b in item["bills"]] == NEWCOMER_MONTHS
        assert all(b["import_wh"] > 0 for b in item["bills"])
        assert item["total_cents"] == sum(b["total_cents"] for b in item["bills"])
    assert len(data["baseline"]["monthly_cents"]) == 3
    # no reading at all: nothing to compare, every plan at zero over no months
    data = await (await api.post(f"/v1/customers/{NO_USAGE}/scenarios?as_of=2026-10-20",
                                 json={"plans": ["res-tiered"]}, headers=H)).json()
    assert data["months"] == [] and data["months_without_data"] == looked_at
    assert [(i["total_cents"], i["bills"]) for i in data["items"]] == [(0, []), (0, [])]


@pytest.mark.parametrize("cid", [SOLAR, PLAIN])  # PLAIN: no bill, so no due date (null in every format)
async def test_bills_with_the_amount_due_in_every_format(api, seeded, cid):
    r = await api.get(f"/v1/customers/{cid}/bills?as_of=2026-10-20&format=csv", headers=H)
    assert r.status == 200 and r.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await r.text())))  # one row per bill, as before the amount due
    assert [row["bill_id"] for row in rows] == (["B902-2026-09"] if cid == SOLAR else [])
    r = await api.get(f"/v1/customers/{cid}/bills?as_of=2026-10-20", headers={**H, "Accept": "application/xml"})
    assert r.status == 200 and r.content_type == "application/xml"
    import defusedxml.ElementTree as ET

    root = ET.fromstring(await r.read())
    want = (await (await api.get(f"/v1/customers/{cid}/bills?as_of=2026-10-20", headers=H)).json())["amount_due_cents"]
    assert root.findtext("amount_due_cents") == str(want)
