"""A customer key sees nothing of another customer: every route of the contract, walked with the other
customer's ids, and every listing, report and job route, answer without a trace of anyone else.

The walk is generated from ``api/openapi.yaml``, so a route added tomorrow is walked tomorrow.
"""
import re

import pytest
import yaml
from conftest import OWN_CUSTOMER, auth

from grid.gateway.validation import OPENAPI_PATH

OTHER = "C0000002"
# what the other customer's context holds (tests/factories.py): any of it in an answer is a leak
MARKERS = ("Customer 2", "A00000002", "S00000002", "M00000002", "pat2@example.com", "K2\"")
CUST = auth("customer")
OP = auth("operator")

SAMPLE = {"month": "2026-01", "period": "2026-01", "as_of": "2026-02-15", "start": "2026-01-01",
          "end": "2026-01-02"}


def _operations():
    spec = yaml.safe_load(OPENAPI_PATH.read_text())
    params = spec["components"]["parameters"]
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            resolved = [params[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                        for p in shared + op.get("parameters", [])]
            yield method.upper(), path, op["operationId"], resolved


def _url(path: str, parameters: list) -> str:
    url = path.replace("{id}", OTHER)
    url = re.sub(r"\{[^}]+\}", "x1", url)
    query = [f"{p['name']}={SAMPLE.get(p['name'], 'x1')}" for p in parameters
             if p["in"] == "query" and p.get("required")]
    return url + ("?" + "&".join(query) if query else "")


def _ids_in(text: str) -> set[str]:
    return set(re.findall(r"C\d{7}", text))


OPS = list(_operations())


@pytest.mark.parametrize("method, path, op_id, parameters", OPS, ids=[o[2] for o in OPS])
async def test_customer_key_sees_nothing_of_another_customer(api, method, path, op_id, parameters):
    url = _url(path, parameters)
    r = await api.request(method, url, headers=CUST, json={} if method in ("PUT", "POST", "PATCH") else None)
    body = await r.text()
    for marker in MARKERS:
        assert marker not in body, f"{method} {url} answered {r.status} with {marker!r}"
    leaked = _ids_in(body) - {OWN_CUSTOMER, OTHER}
    assert not leaked, f"{method} {url} names other customers {sorted(leaked)}"
    if "{id}" in path and path.startswith("/v1/customers/"):
        # the other customer's routes are not found (or refused) for this key, whatever the body
        assert r.status in (403, 404, 405, 422), f"{method} {url} answered {r.status}: {body[:300]}"
        if r.status == 422:  # a body the contract refuses: with a valid one it must still be 404
            assert (await r.json(content_type=None))["field"] != "id"
    if r.status < 300:
        assert OTHER not in body, f"{method} {url} answered {r.status} naming {OTHER}"


async def test_writes_to_another_customer_are_not_found_and_change_nothing(api):
    before = await (await api.get(f"/v1/customers/{OTHER}", headers=OP)).text()
    attempts = [
        ("PATCH", f"/v1/customers/{OTHER}", {"notes": {"add": [{"text": "mine now"}]}}),
        ("PATCH", f"/v1/customers/{OTHER}", {"contacts": {"remove": ["K2"]}}),
        ("POST", f"/v1/customers/{OTHER}/usage", {"readings": [
            {"service_point_id": "S00000002", "start": "2026-01-01T00:00:00Z", "import_wh": 1}]}),
        ("POST", f"/v1/customers/{OTHER}/scenarios", {"plans": ["res-tou"]}),
    ]
    for method, url, body in attempts:
        r = await api.request(method, url, json=body, headers=CUST)
        assert r.status in (403, 404), (method, url, r.status, await r.text())
    assert await (await api.get(f"/v1/customers/{OTHER}", headers=OP)).text() == before


@pytest.mark.parametrize("url", ["/v1/customers", "/v1/customers?limit=1000", "/v1/customers?name=Customer",
                                 "/v1/customers?format=csv", "/v1/customers?format=xml"])
async def test_listings_hold_only_the_keys_customers(api, url):
    r = await api.get(url, headers=CUST)
    assert r.status == 200
    assert _ids_in(await r.text()) <= {OWN_CUSTOMER}
