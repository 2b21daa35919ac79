"""Regression tests for the hostile-input findings of issue 10, each through real HTTP.

Every one of these requests was a 500, a hang, an unauthenticated answer or a write that should not have
happened; each is named for what broke.
"""
import time

import pytest
from conftest import auth

H = auth("operator")
CID = "C0000033"  # written to by this file only


async def problem(r, status):
    assert r.status == status, await r.text()
    assert r.content_type == "application/problem+json"
    body = await r.json(content_type="application/problem+json")
    assert body["request_id"] == r.headers["X-Request-Id"]
    return body


async def ctx(api, cid=CID):
    r = await api.get(f"/v1/customers/{cid}", headers=H)
    assert r.status == 200
    return await r.json()


# -- 2. every method through the same door -------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/customers", f"/v1/customers/{CID}", f"/v1/customers/{CID}/usage?month=2026-01",
                                  "/v1/admin/shards", "/v1/tariffs"])
async def test_head_without_a_key_is_401_not_an_answer(api, path):
    r = await api.head(path)
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_head_is_validated_like_get(api):
    r = await api.head(f"/v1/customers/{CID}/usage?month=9999-99", headers=H)
    assert r.status == 422
    r = await api.head(f"/v1/customers/{CID}", headers=H)
    assert r.status == 200 and r.headers["ETag"]
    assert await r.read() == b""


async def test_head_with_a_customer_key_sees_only_its_own(api):
    r = await api.head(f"/v1/customers/{CID}", headers=auth("customer"))
    assert r.status == 404


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", f"/v1/customers/{CID}", {"GET", "HEAD", "PATCH", "PUT"}),
    ("TRACE", "/v1/customers", {"GET", "HEAD"}),
    ("OPTIONS", "/v1/bills/calculate", {"POST"}),
    ("PATCH", "/v1/health", {"GET", "HEAD"}),
])
async def test_undeclared_method_is_405_with_allow(api, method, path, allow):
    r = await api.request(method, path, headers=H)
    body = await problem(r, 405)
    assert set(r.headers["Allow"].split(",")) == allow
    assert body["field"] == "path"


# -- 3. JSON that cannot be carried ----------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b'{"attributes": {"x": NaN}}', b'{"attributes": {"x": Infinity}}',
                                 b'{"attributes": {"x": -Infinity}}'])
async def test_nan_and_infinity_are_422(api, raw):
    before = await ctx(api)
    r = await api.patch(f"/v1/customers/{CID}", data=raw, headers={**H, "Content-Type": "application/json"})
    assert (await problem(r, 422))["field"] == "body"
    assert await ctx(api) == before


@pytest.mark.parametrize("depth", [40, 700, 990, 5000, 30_000])
async def test_deep_nesting_is_422_naming_the_path_and_stores_nothing(api, depth):
    raw = b'{"attributes": {"deep": ' + b"[" * depth + b"]" * depth + b"}}"
    before = await ctx(api)
    r = await api.patch(f"/v1/customers/{CID}", data=raw, headers={**H, "Content-Type": "application/json"})
    body = await problem(r, 422)
    assert body["reason"] == "depth"
    assert body["field"].startswith("attributes.deep") or body["field"] == "body"
    assert await ctx(api) == before  # the customer still reads: no poison record


async def test_attributes_nested_700_deep_do_not_poison_the_customer(api):
    nested: dict = {}
    for _ in range(700):
        nested = {"a": nested}
    r = await api.patch(f"/v1/customers/{CID}", json={"attributes": {"n": nested}}, headers=H)
    assert (await problem(r, 422))["field"].startswith("attributes.n.a")
    assert (await ctx(api))["customer_id"] == CID


@pytest.mark.parametrize("raw, field", [
    (b'{"attributes": {"big": 18446744073709551616}}', "attributes.big"),        # beyond 64 bits: msgpack
    (b'{"attributes": {"s": "\\ud800"}}', "attributes.s"),                       # lone surrogate: UTF-8
    (b'{"attributes": {"\\udfff": 1}}', "attributes.\udfff"),                     # ... in a key
])
async def test_values_the_wal_cannot_encode_are_422(api, raw, field):
    before = await ctx(api)
    r = await api.patch(f"/v1/customers/{CID}", data=raw, headers={**H, "Content-Type": "application/json"})
    assert (await problem(r, 422))["field"] == field
    assert await ctx(api) == before


# -- 4. dates and ranges ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, body, field", [
    ("GET", f"/v1/customers/{CID}/usage?month=9999-12", None, "month"),
    ("GET", f"/v1/customers/{CID}/usage?month=0001-01", None, "month"),
    ("GET", f"/v1/customers/{CID}/bills?period=9999-12", None, "period"),
    ("POST", "/v1/bill-runs", {"period": "9999-12"}, "period"),
    ("GET", f"/v1/customers/{CID}/bill/current?as_of=0001-01-01", None, "as_of"),
    ("GET", f"/v1/customers/{CID}/bill/current?as_of=9999-12-31", None, "as_of"),
    ("POST", f"/v1/customers/{CID}/scenarios?as_of=0001-01-02", {"plans": ["res-tou"]}, "as_of"),
    ("GET", f"/v1/customers/{CID}/forecast?as_of=9999-12-31", None, "as_of"),
    ("GET", f"/v1/customers/{CID}/green?as_of=0001-01-01", None, "as_of"),
    ("POST", "/v1/bills/calculate", {"tariff": "res-tou", "start": "0001-01-01", "end": "0001-01-02",
                                     "import_wh": [0] * 24}, "start"),
])
async def test_dates_outside_1900_2200_are_422_naming_the_field(api, method, path, body, field):
    r = await api.request(method, path, json=body, headers=H)
    assert (await problem(r, 422))["field"] == field


async def test_calculate_with_a_long_range_is_refused_at_once(api):
    body = {"tariff": "res-tou", "start": "1900-01-01", "end": "2200-01-01", "import_wh": [1] * 24}
    t0 = time.perf_counter()
    r = await api.post("/v1/bills/calculate", json=body, headers=auth("customer"))
    assert (await problem(r, 422))["field"] == "import_wh"
    assert time.perf_counter() - t0 < 1.0  # it was 67 s, with the gateway stalled


async def test_calculate_does_not_stall_the_gateway(api):
    import asyncio

    body = {"tariff": "res-tou", "start": "2026-01-01", "end": "2027-01-01", "import_wh": [1] * 8760}
    calc = asyncio.ensure_future(api.post("/v1/bills/calculate", json=body, headers=H))
    t0 = time.perf_counter()
    r = await api.get("/v1/openapi.yaml")
    assert r.status == 200 and time.perf_counter() - t0 < 2.0
    r = await calc
    assert r.status == 200, await r.text()
    assert (await r.json())["total_cents"] > 0


# -- 5. negotiation before the side effect ---------------------------------------------------------------------
async def test_patch_with_an_unservable_accept_is_406_and_writes_nothing(api):
    before = await ctx(api)
    r = await api.patch(f"/v1/customers/{CID}", json={"name": "Should Not Land"},
                        headers={**H, "Accept": "text/html"})
    assert (await problem(r, 406))["field"] == "Accept"
    assert await ctx(api) == before


async def test_accept_q0_is_a_refusal(api):
    r = await api.get(f"/v1/customers/{CID}", headers={**H, "Accept": "application/json;q=0, text/csv"})
    assert r.status == 200 and r.content_type == "text/csv"
    r = await api.get(f"/v1/customers/{CID}", headers={**H, "Accept": "application/json;q=0"})
    await problem(r, 406)


# -- 6. patterns match whole strings ---------------------------------------------------------------------------
async def test_trailing_newline_in_an_id_is_422_and_writes_no_file(api, tmp_path):
    from grid.gateway.keys import CONFIG

    tariff_dir = api.server.app[CONFIG].tariff_dir
    import os

    before = set(os.listdir(tariff_dir))
    r = await api.put("/v1/tariffs/x%0A", json={"name": "x"}, headers=H)
    assert (await problem(r, 422))["field"] == "id"
    assert set(os.listdir(tariff_dir)) == before
    r = await api.get("/v1/customers/C0000001%0A", headers=H)
    assert (await problem(r, 422))["field"] == "id"
    r = await api.get(f"/v1/customers/{CID}/usage?month=2026-01%0A", headers=H)
    assert (await problem(r, 422))["field"] == "month"


def test_contract_patterns_have_ecma_meaning():
    from grid.gateway.validation import python_pattern

    p = python_pattern("^[a-z]+$")
    assert p.search("abc") and not p.search("abc\n")
    assert python_pattern("^a[$]$").search("a$") and not python_pattern("^a[$]$").search("a$\n")
    assert python_pattern(r"^a\$$").search("a$")


# -- found by the fuzzer ---------------------------------------------------------------------------------------
async def test_idempotency_key_reused_for_another_kind_of_write_is_not_a_500(api):
    key = {"Idempotency-Key": "reused-key-1"}
    r = await api.patch(f"/v1/customers/{CID}", json={"segment": "mass"}, headers={**H, **key})
    assert r.status == 200
    reading = {"service_point_id": "S00000033", "start": "2026-03-01T08:00:00Z", "import_wh": 5}
    r = await api.post(f"/v1/customers/{CID}/usage", json={"readings": [reading]}, headers={**H, **key})
    # the key is bound to the first request (issue 9: method, route, body): another request with it is a 422
    assert (await problem(r, 422))["field"] == "Idempotency-Key"
    r = await api.post(f"/v1/customers/{CID}/usage", json={"readings": [reading]},
                       headers={**H, "Idempotency-Key": "reused-key-2"})
    assert r.status == 200 and (await r.json())["written"] == 1


async def test_instants_are_checked_as_rfc3339(api):
    reading = {"service_point_id": "S00000033", "start": "2026-03-01 08:00", "import_wh": 5}
    r = await api.post(f"/v1/customers/{CID}/usage", json={"readings": [reading]}, headers=H)
    assert (await problem(r, 422))["field"] == "readings[0].start"


# -- 7. what the public sees -------------------------------------------------------------------------------------
async def test_public_health_is_liveness_only(api):
    r = await api.get("/v1/health")
    assert r.status == 200 and await r.json() == {"status": "ok"}
    r = await api.get("/v1/health?detail=true")
    await problem(r, 401)
    r = await api.get("/v1/health?detail=true", headers=auth("customer"))
    await problem(r, 403)
    r = await api.get("/v1/health?detail=true", headers=H)
    shards = (await r.json())["shards"]
    assert shards and all("pid" in s for s in shards)


async def test_shard_errors_do_not_show_paths_or_os_messages():
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from grid.errors import ShardUnavailable
    from grid.gateway.problems import problems

    async def broken(request):
        raise ShardUnavailable("cannot write /srv/grid/shards/shard-0/wal/000042.wal: [Errno 5] EIO", retry_after=3)

    app = web.Application(middlewares=[problems])
    app.router.add_get("/x", broken)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/x", headers={"X-Request-Id": "req-abc.1"})
        body = await problem(r, 503)
        assert "/srv" not in body["detail"] and "Errno" not in body["detail"]
        assert body["request_id"] == "req-abc.1" and "req-abc.1" in body["detail"]
        assert r.headers["Retry-After"] == "3"
        r = await client.get("/x", headers={"X-Request-Id": "bad id\twith junk"})
        assert r.headers["X-Request-Id"] != "bad id\twith junk"  # a caller's junk is not echoed


# -- 10. pages run only their own files --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/portal", "/portal/static/app.js"])
async def test_portal_sends_csp_frame_ancestors_and_nosniff(api, path):
    r = await api.get(path)
    assert r.status == 200
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"


async def test_api_answers_are_never_sniffed_or_framed(api):
    for r in (await api.get(f"/v1/customers/{CID}?format=csv", headers=H), await api.get("/v1/nothing")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]


def test_portal_page_has_no_inline_script():
    import re
    from pathlib import Path

    from grid.gateway.portal import STATIC_DIR

    for page in Path(STATIC_DIR).glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page  # every script is a file
        assert not re.search(r"\son[a-z]+\s*=", html), page  # no inline event handlers


# -- 3. what a caller can grow is bounded ----------------------------------------------------------------------
async def test_repeated_patches_cannot_grow_notes_or_attributes_without_end(api):
    cid = "C0000034"
    note = {"notes": {"add": [{"text": "n"}] * 20}}
    statuses = [(await api.patch(f"/v1/customers/{cid}", json=note, headers=H)).status for _ in range(50)]
    assert statuses == [200] * 50  # 1000 notes: the most a context holds
    r = await api.patch(f"/v1/customers/{cid}", json=note, headers=H)
    assert (await problem(r, 422))["field"] == "notes"
    assert len((await ctx(api, cid))["notes"]) == 1000
    for i in range(3):
        r = await api.patch(f"/v1/customers/{cid}", json={"attributes": {f"k{i}_{j}": j for j in range(90)}}, headers=H)
        assert r.status == (200 if i < 2 else 422), await r.text()
    assert (await problem(r, 422))["field"] == "attributes"
    assert len((await ctx(api, cid))["attributes"]) <= 200
