"""Imports fed data contextgrid did not write itself, as a new user's files arrive: each test is named for what
broke (a 500, a value silently ten thousand times too big, one meter's readings written over another's, an hour
lost when clocks fall back, valid spreadsheet dates quarantined) and goes through the push route of a running
grid where that is how the user met it."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from conftest import auth
from test_imports_grid import iapi, igrid  # noqa: F401  (the imports module's grid: sources/ copied in)

COASTAL = Path(__file__).resolve().parent / "data" / "greenbutton" / "coastal_single_family_2011.xml"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def push(api, source, body: bytes, ctype: str, **params):
    return await api.post(f"/v1/imports/{source}", data=body, params=params,
                          headers={**auth("operator"), "Content-Type": ctype})


async def readings(api, cid, sp, *months) -> dict[str, int]:
    out = {}
    for month in months:
        r = await api.get(f"/v1/customers/{cid}/usage", params={"month": month, "service_point_id": sp},
                          headers=auth("operator"))
        assert r.status == 200, await r.text()
        out.update({i["start"]: i["import_wh"] for i in (await r.json())["items"] if i["import_wh"]})
    return out


BILLING_HEADER = ["CUST_ID", "CUST_NAME", "CLASS", "ACCT_NO", "RATE", "BILL_ADDR", "SP_ID", "METER_NO", "PREMISE_ADDR"]


def billing_row(n: int) -> list[str]:
    return [f"C90000{n:02d}", "Café Zürich € Ltd", "COM", f"A90000{n:02d}", "res-tou", "1 Quai", f"S90000{n:02d}",
            f"M90000{n:02d}", "1 Quai"]


# -- UTF-16 text, as Excel saves "Unicode Text" ----------------------------------------------------------------
async def test_utf16_csv_from_excel_imports_instead_of_500(iapi):
    for n, (bom, enc, sep) in enumerate([(b"\xff\xfe", "utf-16-le", "\t"), (b"\xfe\xff", "utf-16-be", ",")], 1):
        text = "\r\n".join(sep.join(r) for r in (BILLING_HEADER, billing_row(n))) + "\r\n"
        r = await push(iapi, "billing-customers", bom + text.encode(enc), "text/csv")
        assert r.status == 200, await r.text()  # was a 500: Python's "utf-16" codec wants a BOM in every block
        assert [x["outcome"] for x in (await r.json())["rows"]] == ["new"]
        c = await (await iapi.get(f"/v1/customers/C90000{n:02d}", headers=auth("operator"))).json()
        assert c["name"] == "Café Zürich € Ltd"
        assert c["accounts"][0]["service_points"][0]["meter_id"] == f"M90000{n:02d}"


def test_utf16_file_read_in_small_blocks_cuts_on_whole_characters(tmp_path):
    from grid.imports.readers import open_file

    rows = [BILLING_HEADER] + [billing_row(n) for n in range(40)]
    p = tmp_path / "unicode.txt"
    p.write_bytes(b"\xff\xfe" + "\r\n".join("\t".join(r) for r in rows).encode("utf-16-le") + b"\r\x00\n\x00")
    got = [row for b in open_file(p, "csv", {"block_bytes": 301}).batches() for row in b.rows.to_pylist()]
    assert [list(r.values()) for r in got] == rows[1:]


def test_fixed_width_utf16_is_refused_naming_the_encoding(tmp_path):
    from grid.errors import InvalidInput
    from grid.imports.readers import open_file

    p = tmp_path / "fw.dat"
    p.write_bytes(b"\xff\xfe" + "C0000001  12\r\n".encode("utf-16-le"))
    with pytest.raises(InvalidInput) as e:
        open_file(p, "fixed", {"columns": [{"name": "id", "start": 1, "width": 8}]})
    assert e.value.field == "encoding"


# -- decimal commas ---------------------------------------------------------------------------------------------
async def test_decimal_comma_kwh_is_quarantined_not_read_as_thousands(iapi):
    body = "meter_id;read_start;kwh;kwh_received\nM00000004;2026-01-12 10:00;1,5;0\nM00000004;2026-01-12 11:00;2;0\n"
    r = await push(iapi, "meter-export", body.encode(), "text/csv")
    assert r.status == 200, await r.text()
    rows = (await r.json())["rows"]
    assert rows[0] == {"row": 0, "outcome": "quarantined", "field": "usage.import_wh", "reason": "not a number"}
    assert rows[1]["outcome"] == "linked"
    got = await readings(iapi, "C0000004", "S00000004", "2026-01")
    assert "2026-01-12T15:00:00Z" not in got  # was 15000 Wh: "1,5" read as 15 kWh
    assert got["2026-01-12T16:00:00Z"] == 2000


def test_thousands_separators_only_in_groups_of_three():
    import polars as pl

    from grid.imports.conversions import _decimal_units

    s = pl.Series(["1,5", "0,25", "1,234", "1,234.5", "12,34,567", "-1,000", "$1,234.50", "7"])
    assert _decimal_units(s, 1000, ".").to_list() == [None, None, 1234000, 1234500, None, -1000000, 1234500, 7000]
    s = pl.Series(["1,5", "0,25", "1.234", "1.234,5", "1.5", "7"])
    assert _decimal_units(s, 1000, ",").to_list() == [1500, 250, 1234000, 1234500, None, 7000]
    from grid.imports.conversions import convert
    from grid.imports.mapping import FieldRule

    day = FieldRule("account.bill_cycle_day", "integer")  # was 10 for "1,0"
    assert convert(pl.Series(["1,0", "12", "1,234", "15,5", "7"]), day)[0].to_list() == [None, 12, 1234, None, 7]


# -- Green Button files from elsewhere ------------------------------------------------------------------------
def two_usage_points(xml: str) -> str:
    """The Coastal sample with its usage point copied as a second meter ("02", every value prefixed with 9)."""
    entries = re.findall(r"<entry>.*?</entry>", xml, re.S)
    second = [e.replace("UsagePoint/01", "UsagePoint/02").replace("<value>", "<value>9") for e in entries
              if "UsagePoint/01" in e and "ElectricPowerUsageSummary" not in e]
    assert second
    return xml.replace("</feed>", "".join(second) + "</feed>")


async def test_public_coastal_green_button_sample_imports_to_the_wh(iapi):
    r = await push(iapi, "greenbutton", COASTAL.read_bytes(), "application/atom+xml", service_point_id="S00000005")
    assert r.status == 200, await r.text()
    assert (await r.json())["applied"] == 362
    got = await readings(iapi, "C0000005", "S00000005", "2010-12", "2011-01")
    assert len(got) == 362
    assert got["2011-01-01T08:00:00Z"] == 703 and got["2011-01-16T09:00:00Z"] == 574


async def test_green_button_with_two_meters_for_one_service_point_is_422_not_overwritten(iapi):
    before = await readings(iapi, "C0000006", "S00000006", "2010-12", "2011-01")
    body = two_usage_points(COASTAL.read_text()).encode()
    r = await push(iapi, "greenbutton", body, "application/atom+xml", service_point_id="S00000006")
    assert r.status == 422, await r.text()  # was 200, 724 "applied": meter 02's readings replaced meter 01's
    problem = await r.json()
    assert problem["field"] == "service_point_id" and "01, 02" in problem["detail"]
    assert await readings(iapi, "C0000006", "S00000006", "2010-12", "2011-01") == before
    # mapped one usage point to one service point each, the same file imports both meters
    from grid.imports import espi

    feed = espi.parse(body)
    assert [(ch.usage_point, len(ch.readings)) for ch in feed.channels] == [("01", 362), ("02", 362)]
    rows = feed.rows(None, {"01": "S00000006", "02": "S00000007"})
    assert {(r["service_point_id"], r["import_wh"]) for r in rows if r["start"] == "2011-01-01T08:00:00Z"} == {
        ("S00000006", 703), ("S00000007", 9703)}


# -- the hour clocks fall back ---------------------------------------------------------------------------------
async def test_local_time_export_keeps_both_fall_back_hours(iapi):
    # America/New_York falls back at 02:00 EDT on 1 November 2026: 01:00 comes twice (05:00Z, then 06:00Z)
    body = ("meter_id,read_start,kwh,kwh_received\n"
            "M00000003,2026-11-01 00:00,1,0\nM00000003,2026-11-01 01:00,2,0\n"
            "M00000002,2026-11-01 01:00,20,0\n"
            "M00000003,2026-11-01 01:00,3,0\nM00000003,2026-11-01 02:00,4,0\n"
            "M00000002,2026-11-01 01:00,30,0\n")
    r = await push(iapi, "meter-export", body.encode(), "text/csv")
    assert r.status == 200, await r.text()
    assert (await r.json())["applied"] == 6
    m3 = await readings(iapi, "C0000003", "S00000003", "2026-10", "2026-11")
    assert [m3.get(f"2026-11-01T0{h}:00:00Z") for h in (4, 5, 6, 7)] == [1000, 2000, 3000, 4000]  # 05Z was 3000
    m2 = await readings(iapi, "C0000002", "S00000002", "2026-10", "2026-11")
    assert [m2.get(f"2026-11-01T0{h}:00:00Z") for h in (5, 6)] == [20000, 30000]


# -- a spreadsheet kept by hand --------------------------------------------------------------------------------
async def test_xlsx_date_cells_beside_typed_text_import_and_a_serial_number_is_quarantined(iapi, tmp_path):
    xlsxwriter = pytest.importorskip("xlsxwriter")
    p = tmp_path / "cashier.xlsx"
    wb = xlsxwriter.Workbook(str(p))
    ws = wb.add_worksheet("Payments")
    datef, money = wb.add_format({"num_format": "mm/dd/yyyy"}), wb.add_format({"num_format": "$#,##0.00"})
    ws.merge_range(0, 0, 0, 3, "Cashiering export - November")  # a merged title block above the header
    ws.write_row(2, 0, ["Account", "Paid On", "Amount", "Method"])
    ws.write(3, 0, "A00000007")
    ws.write_datetime(3, 1, dt.datetime(2026, 11, 5), datef)  # a real date cell
    ws.write_formula(3, 2, "=10+2.5", money, 12.5)  # a formula with Excel's cached result
    ws.write(3, 3, "Card")
    ws.write_row(4, 0, ["A00000007", "11/06/2026", "7.10", "Cash"])  # the date typed as text
    ws.write(5, 0, "A00000007")
    ws.write_number(5, 1, 46335)  # a date pasted as its serial number, no date format
    ws.write_row(5, 2, [20, "Check"])
    wb.close()
    r = await push(iapi, "payments", p.read_bytes(), XLSX)
    assert r.status == 200, await r.text()
    outcomes = [(x["outcome"], x.get("field")) for x in (await r.json())["rows"]]
    # the date cell was quarantined as "not a date like %m/%d/%Y" beside the typed text
    assert outcomes == [("linked", None), ("linked", None), ("quarantined", "payment.date")]
    c = await (await iapi.get("/v1/customers/C0000007", headers=auth("operator"))).json()
    assert {(x["date"], x["amount_cents"], x["method"]) for x in c["payments"]} >= {
        ("2026-11-05", 1250, "card"), ("2026-11-06", 710, "cash")}


# -- a watched folder: a file it cannot read, a giant line ------------------------------------------------------
async def test_watched_file_the_reader_refuses_shows_in_imports_and_a_giant_line_is_one_row(iapi, igrid):
    import asyncio

    inbox = Path(igrid.data_dir) / "inbox" / "interval-wh"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "twice.csv").write_text("sp,ts,wh,wh\nS00000001,2026-01-14T00:00:00Z,1,2\n")  # a column named twice

    async def listed():
        r = await iapi.get("/v1/imports", headers=auth("operator"))
        return next(i for i in (await r.json())["items"] if i["source"] == "interval-wh")

    for _ in range(200):
        view = await listed()
        if view["last_error"]:
            break
        await asyncio.sleep(0.05)
    # was: last_error None and state idle, the refusal only in the gateway's log
    assert view["state"] == "failed" and view["last_error"].startswith("twice.csv: ") and "'wh'" in view["last_error"]
    # a value of 2 MiB on one line (over pyarrow's 1 MiB block): was "straddling object straddles two block
    # boundaries", the whole file refused; now the line is a row (quarantined: not a number) and the next imports
    (inbox / "giant.csv").write_text("sp,ts,wh\nS00000001,2026-01-14T01:00:00Z," + "9" * (2 << 20) +
                                     "\nS00000001,2026-01-14T02:00:00Z,7\n")
    for _ in range(400):
        got = await readings(iapi, "C0000001", "S00000001", "2026-01")
        if "2026-01-14T02:00:00Z" in got:
            break
        await asyncio.sleep(0.05)
    assert got["2026-01-14T02:00:00Z"] == 7 and "2026-01-14T01:00:00Z" not in got
    r = await iapi.get("/v1/imports/interval-wh/quarantine", headers=auth("operator"), params={"limit": 1000})
    bad = [e for e in (await r.json())["items"] if e["row"] and e["row"].get("ts") == "2026-01-14T01:00:00Z"]
    assert [(e["field"], e["detail"]) for e in bad] == [("usage.import_wh", "not a number")]


async def test_customer_reuploads_own_download_my_data_without_naming_the_service_point(iapi):
    from conftest import OWN_CUSTOMER

    rows = "sp,ts,wh\n" + "".join(f"S00000001,2026-02-03T0{h}:00:00Z,{111 * (h + 1)}\n" for h in range(3))
    r = await push(iapi, "interval-wh", rows.encode(), "text/csv")
    assert r.status == 200 and (await r.json())["applied"] == 3, await r.text()
    r = await iapi.get(f"/v1/customers/{OWN_CUSTOMER}/usage", params={"month": "2026-02", "format": "espi"},
                       headers=auth("customer"))
    assert r.status == 200, await r.text()
    xml = (await r.read()).replace(b">222<", b">250<")  # the customer's own file, one reading corrected
    r = await iapi.post("/v1/imports/greenbutton", data=xml,
                        headers={**auth("customer"), "Content-Type": "application/atom+xml"})
    assert r.status == 200, await r.text()
    receipt = await r.json()
    # was: every row "rejected: the row names a customer this key may not write" (no service point resolved)
    assert {x["outcome"] for x in receipt["rows"]} == {"linked"} and receipt["rejected"] == 0, receipt
    got = await readings(iapi, OWN_CUSTOMER, "S00000001", "2026-02")
    assert [got[f"2026-02-03T0{h}:00:00Z"] for h in range(3)] == [111, 250, 333]


async def test_csv_labelled_as_excel_by_a_windows_browser_imports_and_unknown_types_are_415(iapi):
    body = b"sp,ts,wh\r\nS00000001,2026-02-04T00:00:00Z,41\r\n"
    r = await push(iapi, "interval-wh", body, "application/vnd.ms-excel")
    # was a 422 "tmpXXXX.xls is not a readable spreadsheet: Cfb error ..." for a plain CSV upload
    assert r.status == 200, await r.text()
    assert (await readings(iapi, "C0000001", "S00000001", "2026-02"))["2026-02-04T00:00:00Z"] == 41
    r = await push(iapi, "interval-wh", b"PK\x03\x04 not really a zip", XLSX)  # a broken workbook
    assert r.status == 422
    problem = await r.json()
    assert problem["field"] == "body" and "tmp" not in problem["detail"], problem  # no temporary file names
    r = await push(iapi, "interval-wh", b'{"sp": "S00000001"}\n', "application/x-ndjson")
    assert r.status == 415 and (await r.json())["field"] == "Content-Type"  # was 406, which is about Accept


async def test_green_button_daily_totals_are_refused_with_their_reason_not_put_in_one_hour(iapi):
    daily = Path(__file__).resolve().parent / "data" / "greenbutton" / "nist_one_year_daily.xml"
    before = await readings(iapi, "C0000004", "S00000004", "2013-01", "2013-02")
    r = await push(iapi, "greenbutton", daily.read_bytes(), "application/atom+xml", service_point_id="S00000004")
    # was 200 with 444 rows applied: each day's whole energy stored as the day's first hour
    assert r.status == 422, await r.text()
    problem = await r.json()
    assert problem["field"] == "body" and "readings of 86400 s are totals, not interval data" in problem["detail"]
    assert await readings(iapi, "C0000004", "S00000004", "2013-01", "2013-02") == before
    # a gas file (uom 169, therms) says why, instead of "0 accepted"
    from grid.imports import espi

    feed = espi.parse(daily.read_bytes())
    assert feed.rows() == [] and len(feed.skipped) >= 12
    gas = COASTAL.read_text().replace("<uom>72</uom>", "<uom>169</uom>").encode()
    r = await push(iapi, "greenbutton", gas, "application/atom+xml", service_point_id="S00000004")
    assert r.status == 422 and "uom 169 is not energy in Wh" in (await r.json())["detail"]


async def test_push_positions_and_audit_batch_ids_are_exact_in_javascript(iapi):
    r = await push(iapi, "interval-wh", b"sp,ts,wh\nS00000002,2026-02-05T00:00:00Z,9\n", "text/csv")
    assert r.status == 200, await r.text()
    pos = (await r.json())["position"]
    # was a nanosecond clock (~1.8e18): JSON.parse in the console rounded it (...580879 shown as ...581000)
    assert 0 < pos["batch"] <= pos["offset"] < 2 ** 53
    r = await iapi.get("/v1/audit", params={"customer": "C0000002"}, headers=auth("operator"))
    batches = [e["changes"]["batch"] for e in (await r.json())["items"] if (e.get("changes") or {}).get("batch")]
    assert pos["batch"] in batches and all(b < 2 ** 53 for b in batches)


async def test_two_digit_year_is_quarantined_not_a_payment_in_the_year_26(iapi):
    # Excel's short date ("1/5/26") under a source whose format says %m/%d/%Y
    body = b"Account,Paid On,Amount,Method\nA00000005,1/5/26,12.50,Card\nA00000005,1/6/2026,13.50,Card\n"
    r = await push(iapi, "payments", body, "text/csv")
    assert r.status == 200, await r.text()
    rows = (await r.json())["rows"]
    assert rows[0]["outcome"] == "quarantined" and rows[0]["field"] == "payment.date", rows  # was: dated 0026-01-05
    assert rows[1]["outcome"] == "linked"
    c = await (await iapi.get("/v1/customers/C0000005", headers=auth("operator"))).json()
    assert "2026-01-06" in {p["date"] for p in c["payments"]} and min(p["date"] for p in c["payments"]) >= "1900"


async def test_a_header_spelt_otherwise_names_the_absent_column(iapi):
    body = b'\xef\xbb\xbf"Meter_ID","Read_Start","KWH"\r\n"M00000003","2026-02-06 00:00","1.5"\r\n'
    r = await push(iapi, "meter-export", body, "text/csv")
    assert r.status == 200, await r.text()
    row = (await r.json())["rows"][0]
    # was reason "missing" on every row, as if the cells were empty
    assert row["outcome"] == "quarantined" and row["field"] == "usage.start"
    assert row["reason"].startswith("missing: no column 'read_start' in the rows") and "'Read_Start'" in row["reason"]


async def test_blank_lines_and_excels_sep_hint_above_the_header_are_not_the_header(iapi):
    # an export that starts with blank lines: account "00077001" was read by pyarrow's own type guess as 77001
    body = ("\r\n\r\nCUST_ID,CUST_NAME,CLASS,ACCT_NO,RATE\r\n"
            "C0077001,Zero Lead,RES,00077001,res-tou\r\n").encode()
    r = await push(iapi, "billing-customers", body, "text/csv")
    assert r.status == 200, await r.text()
    assert [x["outcome"] for x in (await r.json())["rows"]] == ["new"]
    c = await (await iapi.get("/v1/customers/C0077001", headers=auth("operator"))).json()
    assert [a["account_id"] for a in c["accounts"]] == ["00077001"]
    # Excel's "sep=;" first line names the delimiter; it was read as the header (every row one column)
    body = b"sep=;\r\nCUST_ID;CUST_NAME;CLASS;ACCT_NO;RATE\r\nC0077002;Semi Colon;RES;A0077002;res-tou\r\n"
    r = await push(iapi, "billing-customers", body, "text/csv")
    assert r.status == 200 and [x["outcome"] for x in (await r.json())["rows"]] == ["new"], await r.text()
    c = await (await iapi.get("/v1/customers/C0077002", headers=auth("operator"))).json()
    assert c["name"] == "Semi Colon"


# -- regression (seen in `make run`): a shard too busy to answer in 30 s made a watched file fail for good -------
async def test_watched_file_whose_shard_is_briefly_unavailable_is_retried_not_left_failed(iapi, igrid):
    import asyncio

    from grid.errors import ShardUnavailable
    from grid.gateway.imports import IMPORTER

    imp = iapi.server.app[IMPORTER]
    real, refusals = imp.import_file, []

    async def busy_twice(src, path, *a, **kw):
        if Path(path).name == "busy.csv" and len(refusals) < 2:
            refusals.append(path)
            raise ShardUnavailable("shard is unavailable; retry shortly", retry_after=1)
        return await real(src, path, *a, **kw)

    imp.import_file = busy_twice
    try:
        inbox = Path(igrid.data_dir) / "inbox" / "interval-wh"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "busy.csv").write_text("sp,ts,wh\nS00000001,2026-01-20T05:00:00Z,4321\n")
        for _ in range(300):
            got = await readings(iapi, "C0000001", "S00000001", "2026-01")
            if "2026-01-20T05:00:00Z" in got:
                break
            await asyncio.sleep(0.05)
        # was: state "failed", the file's rows never imported (a finished export never changes again)
        assert got.get("2026-01-20T05:00:00Z") == 4321 and len(refusals) == 2
    finally:
        imp.import_file = real
