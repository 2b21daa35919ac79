"""Portfolios explain themselves: every member account, its customer, and the links that put it in."""
from __future__ import annotations

import pytest
from conftest import auth, follow

from grid.identity.portfolios import entity_names, explain_portfolios, name_roots
from grid.rules.portfolios import KEY_SEPARATOR as S

H = auth("operator")


def test_each_account_says_which_shared_key_put_it_in():
    # shard 1: A1, A2 of customer C1; A3 of C2 files under C1's tax id; shard 2: A4 of C3 reaches C1's root
    links = [(["A1", "A2", "A3", "A1", "A3", "A1"],
              [f"same_customer{S}C1", f"same_customer{S}C1", f"same_customer{S}C2", f"shared_tax_id{S}41-1",
               f"shared_tax_id{S}41-1", f"common_root{S}E9"]),
             (["A4", "A4", "A5", "A5"], [f"same_customer{S}C3", f"common_root{S}E9", f"same_customer{S}C4",
                                         f"shared_tax_id{S}77-7"])]
    portfolio_of = {"A1": "PA1", "A2": "PA1", "A3": "PA1", "A4": "PA1", "A5": "PA5"}
    out = explain_portfolios(links, portfolio_of)
    p = out["PA1"]
    assert p["root_entity_id"] == "E9" and p["customers"] == ["C1", "C2", "C3"]
    why = {m["account_id"]: {(w["rule"], w["value"]): w["with"] for w in m["why"]} for m in p["members"]}
    assert why["A1"] == {("same_customer", "C1"): ["A2"], ("shared_tax_id", "41-1"): ["A3"],
                         ("common_root", "E9"): ["A4"]}
    assert why["A3"] == {("shared_tax_id", "41-1"): ["A1"]}
    assert why["A4"] == {("common_root", "E9"): ["A1"]}
    # a key only one account holds links nothing: A5 is alone
    (alone,) = out["PA5"]["members"]
    assert [w["rule"] for w in alone["why"]] == ["alone"] and out["PA5"]["customers"] == ["C4"]


def test_a_portfolio_names_its_root_entity_by_legal_name():
    records = {"C1": {"ownership": [{"entity_id": "E1", "legal_name": "100 MAIN ST LLC"},
                                    {"entity_id": "E9", "legal_name": "Acme Holdings LLC"}]},
               "C2": {"ownership": [{"entity_id": "E2", "legal_name": "Other LLC"}]}}
    names = entity_names(records, ["E9", "E7"])
    assert names == {"E9": "Acme Holdings LLC"}  # an entity no context holds stays unnamed
    out = name_roots({"PA1": {"root_entity_id": "E9"}, "PA2": {"root_entity_id": "E7"}, "PA3": {}}, names)
    assert out["PA1"]["root_legal_name"] == "Acme Holdings LLC"
    assert "root_legal_name" not in out["PA2"] and "root_legal_name" not in out["PA3"]


@pytest.mark.asyncio(loop_scope="session")
async def test_portfolio_route_explains_its_members(base_api):
    job = await follow(base_api, await base_api.post("/v1/admin/classify", headers=H), H)
    assert job["state"] == "done", job
    page = await (await base_api.get("/v1/portfolios?limit=200", headers=H)).json()
    multi = None
    for item in page["items"]:
        p = await (await base_api.get(f"/v1/portfolios/{item['portfolio_id']}", headers=H)).json()
        if len(p["accounts"]) > 1 and len(p["customers"]) > 1:
            multi = p
            break
    assert multi is not None, "the base has a portfolio of several customers"
    rooted = None
    for item in page["items"]:
        p = await (await base_api.get(f"/v1/portfolios/{item['portfolio_id']}", headers=H)).json()
        if p.get("root_entity_id"):
            rooted = p
            break
    assert rooted is not None, "the base has a portfolio an ownership chain made"
    # the root's legal name is the one its customers' ownership chains end with
    cust = await (await base_api.get(f"/v1/customers/{rooted['customers'][0]}", headers=H)).json()
    chain = {e["entity_id"]: e["legal_name"] for e in cust["ownership"]}
    assert rooted["root_legal_name"] == chain[rooted["root_entity_id"]]
    assert sorted(m["account_id"] for m in multi["members"]) == sorted(multi["accounts"])
    for m in multi["members"]:
        assert m["customer_id"] in multi["customers"]
        assert m["why"] and all(w["rule"] != "alone" for w in m["why"])
        assert all(set(w["with"]) <= set(multi["accounts"]) for w in m["why"])
    for fmt in ("xml", "csv"):  # the nested explanation encodes in every format the route offers
        r = await base_api.get(f"/v1/portfolios/{multi['portfolio_id']}?format={fmt}", headers=H)
        assert r.status == 200, await r.text()
