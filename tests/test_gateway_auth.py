"""The auth matrix: every role against every route."""
import pytest
from conftest import KEYS, OWN_CUSTOMER, auth
from factories import context

OTHER = "C0000003"


def routes(cid):
    note = {"notes": {"add": [{"text": "called about bill"}]}}
    reading = {"readings": [{"service_point_id": f"S{int(cid[1:]):08d}", "start": "2026-10-05T07:00:00Z",
                             "import_wh": 321}]}
    return {
        "get_customer": ("GET", f"/v1/customers/{cid}", None),
        "patch_customer": ("PATCH", f"/v1/customers/{cid}", note),
        "get_accounts": ("GET", f"/v1/customers/{cid}/accounts", None),
        "get_bills": ("GET", f"/v1/customers/{cid}/bills", None),
        "get_usage": ("GET", f"/v1/customers/{cid}/usage?month=2026-10&resolution=daily", None),
        "post_usage": ("POST", f"/v1/customers/{cid}/usage", reading),
        "list_customers": ("GET", "/v1/customers?limit=5", None),
        "put_customer": ("PUT", f"/v1/customers/{cid}", context(int(cid[1:]))[1]),
    }


# expected status per (principal, route); "own" is the customer key on its own customer
EXPECT = {
    "operator": dict.fromkeys(routes(OWN_CUSTOMER), 200),
    "agent": dict.fromkeys(routes(OWN_CUSTOMER), 200),
    "customer-own": {**dict.fromkeys(routes(OWN_CUSTOMER), 200), "post_usage": 403, "put_customer": 403},
    "customer-other": {**dict.fromkeys(routes(OTHER), 404), "list_customers": 200},
    "missing": dict.fromkeys(routes(OWN_CUSTOMER), 401),
    "bad": dict.fromkeys(routes(OWN_CUSTOMER), 401),
}


def headers_for(who):
    if who == "missing":
        return {}
    if who == "bad":
        return {"Authorization": "Bearer not-a-key"}
    return auth(who.split("-")[0])


@pytest.mark.parametrize("who", list(EXPECT))
@pytest.mark.parametrize("route", list(routes(OWN_CUSTOMER)))
async def test_auth_matrix(api, who, route):
    cid = OTHER if who == "customer-other" else OWN_CUSTOMER
    method, url, body = routes(cid)[route]
    r = await api.request(method, url, json=body, headers=headers_for(who))
    assert r.status == EXPECT[who][route], await r.text()
    if r.status >= 400:
        problem = await r.json(content_type="application/problem+json")
        assert problem["status"] == r.status and problem["field"]


@pytest.mark.parametrize("path", ["/v1/health", "/v1/openapi.yaml", "/metrics"])
async def test_open_routes_need_no_key(api, path):
    r = await api.get(path)
    assert r.status == 200


async def test_customer_key_lists_only_its_customers(api):
    r = await api.get("/v1/customers?limit=50", headers=auth("customer"))
    assert [c["customer_id"] for c in (await r.json())["items"]] == [OWN_CUSTOMER]


async def test_customer_key_cannot_change_what_the_utility_owns(api):
    r = await api.patch(f"/v1/customers/{OWN_CUSTOMER}", json={"attributes": {"vip": True}},
                        headers=auth("customer"))
    assert r.status == 403
    assert (await r.json(content_type="application/problem+json"))["field"] == "attributes"


def test_keys_file_stores_only_hashes(tmp_path):
    from grid.gateway.auth import KeyStore, write_keys_file

    path = tmp_path / "keys.yaml"
    write_keys_file(path, [("ops", KEYS["operator"], "operator", [])])
    assert KEYS["operator"] not in path.read_text()
    assert KeyStore.load(path).authenticate(f"Bearer {KEYS['operator']}").role == "operator"
