"""A context round-trips through the gateway in JSON, XML and CSV; custom formats plug in."""
from conftest import auth

from grid.gateway import formats
from grid.gateway.formats import Format, decode_csv, decode_xml, flatten


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


async def test_context_round_trips_in_all_three_formats(api):
    r = await api.get("/v1/customers/C0000004", headers=auth("operator"))
    assert r.status == 200 and r.content_type == "application/json"
    ctx = await r.json()
    assert ctx["customer_id"] == "C0000004" and ctx["accounts"][0]["service_points"][0]["has_solar"] is True

    r = await api.get("/v1/customers/C0000004", headers={**auth("operator"), "Accept": "application/xml"})
    assert r.status == 200 and r.content_type == "application/xml"
    assert decode_xml(await r.read()) == ctx

    r = await api.get("/v1/customers/C0000004?format=csv", headers=auth("operator"))
    assert r.status == 200 and r.content_type == "text/csv"
    rows = decode_csv(await r.read())
    assert len(rows) == 1
    assert rows[0] == {k: _cell(v) for k, v in flatten(ctx).items()}


async def test_listing_in_csv_is_one_row_per_customer(api):
    r = await api.get("/v1/customers?limit=7&format=csv", headers=auth("agent"))
    rows = decode_csv(await r.read())
    j = await (await api.get("/v1/customers?limit=7", headers=auth("agent"))).json()
    assert [row["customer_id"] for row in rows] == [i["customer_id"] for i in j["items"]]
    assert len(rows) == 7


async def test_accept_quality_order_and_unknown_type(api):
    h = {**auth("operator"), "Accept": "text/csv;q=0.5, application/xml;q=0.9"}
    r = await api.get("/v1/customers/C0000002", headers=h)
    assert r.content_type == "application/xml"
    r = await api.get("/v1/customers/C0000002", headers={**auth("operator"), "Accept": "image/png"})
    assert r.status == 406
    body = await r.json()
    assert body["field"] == "Accept"


async def test_registered_encoder_serves_without_handler_changes(api, monkeypatch):
    def encode_lines(data, root):
        return "\n".join(f"{k}={v}" for k, v in flatten(data).items()).encode()

    monkeypatch.setitem(formats._REGISTRY, "kv", Format("kv", "text/x-kv", encode_lines))
    r = await api.get("/v1/customers/C0000002", headers={**auth("operator"), "Accept": "text/x-kv"})
    assert r.status == 200 and r.content_type == "text/x-kv"
    assert "customer_id=C0000002" in (await r.text()).splitlines()


async def test_paging_visits_every_customer_once_in_order(api, grid):
    seen, cursor = [], None
    while True:
        url = "/v1/customers?limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = await (await api.get(url, headers=auth("agent"))).json()
        seen += [i["customer_id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(set(seen))
    assert len(seen) == sum(s["customers"] for s in grid.stats())
    residential = (await (await api.get("/v1/customers?kind=residential&limit=1000", headers=auth("agent"))).json())
    assert residential["items"] and all(i["kind"] == "residential" for i in residential["items"])
