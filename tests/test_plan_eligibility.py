"""An honest plan comparison: only plans the customer may take, from the tariffs' URDB fields."""
from __future__ import annotations

import pytest
from conftest import auth
from portal_seed import SOLAR, seed

from grid.whatif.eligibility import refusal

HOME = {"kind": "residential", "attributes": {}}
SHOP = {"kind": "commercial", "attributes": {"service_voltage_v": 480}}


@pytest.mark.parametrize("urdb, rec, peak, solar, why", [
    ({"sector": "Residential"}, HOME, 5, False, None),
    ({"sector": "Commercial"}, HOME, 5, False, "a commercial plan"),
    ({"sector": "Residential"}, SHOP, 50, False, "a residential plan"),
    ({"sector": "Industrial"}, SHOP, 50, False, None),
    ({"sector": "Commercial", "peakkwcapacitymin": 500, "peakkwcapacitymax": 999}, SHOP, 50, False, "at least 500"),
    ({"sector": "Commercial", "peakkwcapacitymax": 20}, SHOP, 50, False, "at most 20"),
    ({"sector": "Commercial", "peakkwcapacitymin": 20, "peakkwcapacitymax": 499}, SHOP, 50, False, None),
    ({"sector": "Commercial", "voltageminimum": 2400}, SHOP, 50, False, "service at 2400"),
    ({"sector": "Commercial", "voltagemaximum": 600}, SHOP, 50, False, None),
    ({"sector": "Residential", "voltagemaximum": 600}, HOME, 5, False, "do not know"),
    ({"sector": "Residential", "contextgrid": {"net_metering": "net"}}, HOME, 5, False, "with solar"),
    ({"sector": "Residential", "contextgrid": {"net_metering": "net"}}, HOME, 5, True, None),
    ({"sector": "Residential", "contextgrid": {"net_metering": "none"}}, HOME, 5, False, None),
    ({}, SHOP, 50, False, None),  # a tariff that says nothing limits nothing
])
def test_refusal_reads_the_urdb_fields(urdb, rec, peak, solar, why):
    got = refusal(urdb, rec, peak, solar)
    assert (got is None) if why is None else (got is not None and why in got), got


async def test_a_residential_solar_customer_is_offered_residential_plans_only(api, grid):
    seed(grid)
    r = await api.get(f"/v1/customers/{SOLAR}/plans", headers=auth("operator"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["has_solar"] and body["peak_kw"] > 0
    by_id = {p["plan_id"]: p for p in body["items"]}
    assert by_id["res-tou-nem"]["eligible"] and by_id["res-tou-nem"]["net_metering"]
    assert by_id["res-tou"]["current"] and by_id["res-tou"]["eligible"]
    for pid in ("com-demand", "ind-tou-demand"):
        assert not by_id[pid]["eligible"] and by_id[pid]["reason"]
    other = await api.get(f"/v1/customers/{SOLAR}/plans", headers=auth("customer"))  # not this key's customer
    assert other.status == 404
