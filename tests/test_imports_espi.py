"""Green Button (NAESB ESPI): the public Green Button Alliance samples, files written here (namespaces,
multipliers, units, flows, qualities), refused XML (entity bomb, external entity), LocalTimeParameters held
equal to zoneinfo, and the "Download My Data" export round-tripping through the importer to the Wh.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid import timegrid
from grid.errors import InvalidInput, UnsupportedFormat
from grid.imports import espi
from grid.imports.espi_export import encode_usage, local_time_for

DATA = Path(__file__).parent / "data" / "greenbutton"
SAMPLES = sorted(DATA.glob("gba_*.xml"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_public_samples_import_every_reading_to_the_wh(path):
    readings = re.findall(r"<IntervalReading>(.*?)</IntervalReading>", path.read_text(), re.S)
    values = [int(re.search(r"<value>(-?\d+)</value>", r).group(1)) for r in readings]  # uom 72, x10^0: Wh
    starts = [int(re.search(r"<timePeriod>.*?<start>(\d+)</start>", r, re.S).group(1)) for r in readings]
    feed = espi.parse(path.read_bytes())
    assert feed.skipped == []
    assert feed.usage_points == {"5446AF3F": "Front Electric Meter"}
    rows = feed.rows(service_point_id="S00000001")
    assert len(rows) == len(values) == len(starts)
    assert sum(r["import_wh"] for r in rows) == sum(values)
    assert [int(dt.datetime.fromisoformat(r["start"].replace("Z", "+00:00")).timestamp()) for r in rows] == \
        sorted(starts)
    assert {r["service_point_id"] for r in rows} == {"S00000001"} and {r["duration_s"] for r in rows} == {900}
    assert {r["quality"] for r in rows} == {None, 7, 8}  # the two readings the samples qualify


def test_sample_local_time_is_us_eastern_and_switches_on_the_dst_sunday():
    feed = espi.parse((DATA / "gba_test_usage_data.xml").read_bytes())
    lt = feed.local_time
    assert (lt.tz_offset, lt.dst_offset, lt.dst_start_rule, lt.dst_end_rule) == (-18000, 3600, 0x360E2000, 0xB40E2000)
    z = timegrid.zone("America/New_York")
    for r in feed.rows():
        ts = dt.datetime.fromisoformat(r["start"].replace("Z", "+00:00"))
        assert r["local_start"] == ts.astimezone(z).isoformat()
    offsets = {r["local_start"][-6:] for r in feed.rows()}
    assert offsets == {"-05:00", "-04:00"}  # the file spans 11 March 2012


def _feed(readings: str, reading_type: str, prefix: str = "espi:", up: str = "UP1", extra: str = "") -> bytes:
    p = prefix
    ns = 'xmlns:espi="http://naesb.org/espi"' if prefix else 'xmlns="http://naesb.org/espi"'
    base = f"https://gb.example/DataCustodian/espi/1_1/resource/RetailCustomer/9/UsagePoint/{up}"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
 <entry><link rel="self" href="{base}"/><title>Meter {up}</title>
  <content><{p}UsagePoint {ns}><{p}ServiceCategory><{p}kind>0</{p}kind></{p}ServiceCategory></{p}UsagePoint></content></entry>
 <entry><link rel="self" href="{base}/MeterReading/1"/>
  <link rel="related" href="https://gb.example/DataCustodian/espi/1_1/resource/ReadingType/9"/>
  <content><{p}MeterReading {ns}/></content></entry>
 <entry><link rel="self" href="https://gb.example/DataCustodian/espi/1_1/resource/ReadingType/9"/>
  <content><{p}ReadingType {ns}>{reading_type}</{p}ReadingType></content></entry>
 <entry><link rel="self" href="{base}/MeterReading/1/IntervalBlock/1"/>
  <content><{p}IntervalBlock {ns}><{p}interval><{p}duration>7200</{p}duration><{p}start>1790000000</{p}start></{p}interval>
  {readings}</{p}IntervalBlock></content></entry>
 {extra}
</feed>""".encode()


def _reading(start: int, value: int, quality: int | None = None, p: str = "espi:") -> str:
    q = f"<{p}ReadingQuality><{p}quality>{quality}</{p}quality></{p}ReadingQuality>" if quality is not None else ""
    return (f"<{p}IntervalReading>{q}<{p}timePeriod><{p}duration>3600</{p}duration><{p}start>{start}</{p}start>"
            f"</{p}timePeriod><{p}value>{value}</{p}value></{p}IntervalReading>")


def _rt(uom=72, power=0, flow=1, acc=4, p="espi:") -> str:
    return (f"<{p}accumulationBehaviour>{acc}</{p}accumulationBehaviour><{p}flowDirection>{flow}</{p}flowDirection>"
            f"<{p}intervalLength>3600</{p}intervalLength><{p}powerOfTenMultiplier>{power}</{p}powerOfTenMultiplier>"
            f"<{p}uom>{uom}</{p}uom>")


@pytest.mark.parametrize("power, values, want", [(0, [1234, 5], [1234, 5]), (3, [2, 17], [2000, 17000]),
                                                 (-3, [1234567, 500, 499], [1235, 1, 0]), (1, [7], [70])])
def test_power_of_ten_multiplier_gives_whole_wh(power, values, want):
    readings = "".join(_reading(1790000000 + 3600 * i, v) for i, v in enumerate(values))
    rows = espi.parse(_feed(readings, _rt(power=power))).rows()
    assert [r["import_wh"] for r in rows] == want


@pytest.mark.parametrize("prefix", ["espi:", ""])
def test_prefixed_and_default_namespaces_read_alike_and_usage_point_maps_to_a_service_point(prefix):
    readings = _reading(1790000000, 10, p=prefix) + _reading(1790003600, 20, p=prefix)
    feed = espi.parse(_feed(readings, _rt(p=prefix), prefix=prefix, up="GB-77"))
    assert feed.usage_points == {"GB-77": "Meter GB-77"}
    rows = feed.rows(usage_points={"GB-77": "S00000042"})
    assert [(r["service_point_id"], r["start"], r["import_wh"]) for r in rows] == [
        ("S00000042", "2026-09-21T14:13:20Z", 10), ("S00000042", "2026-09-21T15:13:20Z", 20)]
    # no mapping: the usage point's own id (contextgrid's export names usage points by service point; an id
    # that names no service point stays unresolved in the import)
    assert feed.rows()[0]["service_point_id"] == "GB-77"


def test_received_energy_is_export_and_other_units_and_registers_are_skipped_with_reasons():
    assert espi.parse(_feed(_reading(1790000000, 300), _rt(flow=19))).rows()[0]["export_wh"] == 300
    gas = espi.parse(_feed(_reading(1790000000, 3), _rt(uom=169)))
    assert gas.rows() == [] and "uom 169" in gas.skipped[0]["reason"]
    register = espi.parse(_feed(_reading(1790000000, 99999), _rt(acc=1)))
    assert register.rows() == [] and "cumulative" in register.skipped[0]["reason"]


def test_projected_readings_are_skipped_estimated_ones_kept_with_their_quality():
    readings = _reading(1790000000, 10, quality=8) + _reading(1790003600, 20, quality=12) + _reading(1790007200, 30)
    feed = espi.parse(_feed(readings, _rt()))
    assert [(r["import_wh"], r["quality"]) for r in feed.rows()] == [(10, 8), (30, None)]
    assert "projected" in feed.skipped[0]["reason"]


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol4;</title></feed>"""


def test_entity_expansion_bomb_is_refused(tmp_path):
    with pytest.raises(InvalidInput) as exc:
        espi.parse(BOMB)
    assert exc.value.field == "body"


def test_external_entity_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file://{secret}">]>'
           f'<feed xmlns="http://www.w3.org/2005/Atom"><title>&x;</title></feed>').encode()
    with pytest.raises(InvalidInput) as exc:
        espi.parse(xxe)
    assert exc.value.field == "body" and "TOP-SECRET" not in str(exc.value)


@pytest.mark.parametrize("body", [b"<feed", b"<html><body>hi</body></html>", b"\xff\xfe"])
def test_malformed_or_foreign_xml_is_a_clear_error(body):
    with pytest.raises(InvalidInput) as exc:
        espi.parse(body)
    assert exc.value.field == "body"


@pytest.mark.parametrize("zone, year", [("America/Los_Angeles", 2026), ("Europe/Berlin", 2025),
                                        ("Australia/Sydney", 2026), ("America/Phoenix", 2026)])
def test_local_time_parameters_written_for_a_zone_give_its_offsets_every_hour(zone, year):
    lt = local_time_for(zone, year)
    z = timegrid.zone(zone)
    t0 = int(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    for ts in range(t0, t0 + 365 * 86400, 3600):
        assert lt.utc_offset(ts) == int(dt.datetime.fromtimestamp(ts, z).utcoffset().total_seconds()), ts
    if zone == "America/Los_Angeles":
        assert (lt.tz_offset, lt.dst_start_rule, lt.dst_end_rule) == (-28800, 0x360E2000, 0xB40E2000)


def _usage(month: str, sps: dict[str, bool], seed: int) -> dict:
    import random

    rnd = random.Random(seed)
    start, end = timegrid.month_bounds(month)
    cal = timegrid.calendar(start, end, 60, timegrid.DEFAULT_TIMEZONE)
    items = []
    for sp, solar in sps.items():
        for ts in cal.utc_start:
            stamp = dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).isoformat().replace("+00:00", "Z")
            items.append({"service_point_id": sp, "start": stamp, "import_wh": rnd.randrange(0, 90_000_000),
                          "export_wh": rnd.randrange(0, 5000) if solar else 0})
    return {"customer_id": "C0000009", "month": month, "resolution": "interval", "items": items}


@settings(max_examples=6)
@given(seed=st.integers(0, 10**6), month=st.sampled_from(["2026-03", "2026-07", "2026-11"]))
def test_export_round_trips_through_the_importer_to_the_wh(seed, month):
    data = _usage(month, {"S00000001": False, "S00000002": True}, seed)
    feed = espi.parse(encode_usage(data))
    assert feed.skipped == []
    rows = feed.rows()  # the UsagePoint ids are the service point ids
    got = sorted((r["usage_point"], r["start"], r["import_wh"], r["export_wh"] or 0) for r in rows)
    want = sorted((i["service_point_id"], i["start"], i["import_wh"], i["export_wh"]) for i in data["items"])
    assert got == want
    assert {r["export_wh"] for r in rows if r["usage_point"] == "S00000001"} == {None}


def test_export_refuses_other_resources_and_resolutions():
    with pytest.raises(UnsupportedFormat):
        encode_usage({"customer_id": "C1"}, "customer")
    with pytest.raises(InvalidInput) as exc:
        encode_usage({"customer_id": "C1", "resolution": "daily", "items": []})
    assert exc.value.field == "resolution"


async def test_download_my_data_over_http_equals_the_json_usage_to_the_wh(base_api, base_grid):
    from conftest import auth

    cid, sp, month = None, None, "2025-12"
    r = await base_api.get("/v1/customers?limit=50", headers=auth("operator"))
    for c in (await r.json())["items"]:
        ctx = await (await base_api.get(f"/v1/customers/{c['customer_id']}", headers=auth("operator"))).json()
        solar = [s for a in ctx["accounts"] for s in a["service_points"] if s["has_solar"]]
        if solar:
            cid, sp = c["customer_id"], solar[0]["service_point_id"]
            break
    assert cid is not None
    r = await base_api.get(f"/v1/customers/{cid}/usage?month={month}", headers=auth("operator"))
    want = await r.json()
    r = await base_api.get(f"/v1/customers/{cid}/usage?month={month}&format=espi", headers=auth("operator"))
    assert r.status == 200, await r.text()
    assert r.content_type == "application/atom+xml"
    feed = espi.parse(await r.read())
    got = sorted((x["usage_point"], x["start"], x["import_wh"], x["export_wh"] or 0) for x in feed.rows())
    assert got == sorted((i["service_point_id"], i["start"], i["import_wh"], i["export_wh"]) for i in want["items"])
    assert any(x["export_wh"] for x in feed.rows() if x["usage_point"] == sp)
    r = await base_api.get(f"/v1/customers/{cid}/usage?month={month}",
                           headers={**auth("operator"), "Accept": "application/atom+xml"})
    assert r.status == 200 and r.content_type == "application/atom+xml"
    r = await base_api.get(f"/v1/customers/{cid}/usage?month={month}&format=espi&resolution=daily",
                           headers=auth("operator"))
    assert r.status == 422 and (await r.json())["field"] == "resolution"
    r = await base_api.get(f"/v1/customers/{cid}?format=espi", headers=auth("operator"))
    assert r.status == 422 and (await r.json())["field"] == "format"  # the contract serves espi for usage only
    r = await base_api.get(f"/v1/customers/{cid}", headers={**auth("operator"), "Accept": "application/atom+xml"})
    assert r.status == 406 and (await r.json())["field"] == "format"


def test_reader_protocol_numbers_rows_resumes_after_a_position_and_rejects_unsafe_files(tmp_path):
    from grid.imports.espi import EspiReader
    from grid.imports.readers import FileInfo, file_digest

    path = DATA / "gba_test_usage_data.xml"
    info = FileInfo(path, path.stat().st_size, file_digest(path), {"usage_points": {"5446AF3F": "S00000007"}})
    batches = list(EspiReader(info, batch_rows=500).batches())
    assert [b.position["offset"] for b in batches] == [500, 1000, 1340]
    rows = [r for b in batches for r in b.rows]
    assert {r["service_point_id"] for r in rows} == {"S00000007"} and len(rows) == 1340
    rest = list(EspiReader(info, batch_rows=500).batches(batches[0].position))
    assert [r for b in rest for r in b.rows] == rows[500:]
    assert list(EspiReader(info).batches(batches[-1].position)) == []
    bomb = tmp_path / "bomb.xml"
    bomb.write_bytes(BOMB)
    b, = EspiReader(FileInfo(bomb, bomb.stat().st_size, file_digest(bomb))).batches()
    assert b.rows == [] and b.rejected[0]["reason"] == "malformed"
