"""Legacy Excel (.xls, BIFF8): a real department workbook (tests/data/xls/README.md) read through the
spreadsheet reader and imported into a running grid, pushed and from a watched folder."""
from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import auth, gateway, grid_with_sources
from grid.imports.readers import open_file

XLS = Path(__file__).resolve().parent / "data" / "xls" / "optional_records.xls"
DEALS = {
    "name": "deals", "kind": "folder", "location": "inbox/deals", "format": "spreadsheet", "pattern": "*.xls",
    "options": {"sheets": ["Orig Sched"]}, "does": "upsert",
    "description": "An origination schedule: one counterparty per deal row.",
    "fields": {"customer.customer_id": {"template": "D{Deal #}", "case": "upper", "required": True},
               "customer.name": "Customer", "customer.kind": {"value": "commercial"},
               "customer.attributes.originator": {"column": "Originator", "case": "title"},
               "customer.attributes.originated": {"column": "Originated", "type": "date"},
               "customer.attributes.deal_value": "Deal Here"}}


def _rows(options: dict) -> list[dict]:
    return [r for b in open_file(XLS, "auto", options).batches() for r in b.rows]


def test_xls_both_sheets_headers_found_below_line_one_typed_cells():
    rows = _rows({"sheets": "*", "header_row": {"Summary Sched": 11}})
    detail = [r for r in rows if r["_sheet"] == "Orig Sched" and r["Deal #"]]
    summary = [r for r in rows if r["_sheet"] == "Summary Sched"]
    # "Orig Sched": the header found on row 8 under the title block; cells arrive typed
    first = detail[0]
    assert (first["Deal #"], first["Customer"], first["Originator"]) == ("QU8654", "WPS Energy", "Pollan")
    assert first["Originated"] == dt.date(2001, 3, 1) and first["Deal Here"] == 6552
    assert first["(In Thousands)"] == pytest.approx(6.552)
    assert len(detail) == 18 and detail[-1]["Deal #"] == "TOTAL ORIGINATION"
    # "Summary Sched": its own header row; the detail sheet adds up to it, originators typed any case
    assert [(r["Originator"], r["Amount"], r["Originated Deals"]) for r in summary] == [
        ("Sylvia Pollan", 104298, 13), ("Dierdre McCaffrey", 8452, 3), (None, 112750, 16)]
    totals = defaultdict(lambda: [0, 0])
    for r in detail[:-1]:
        t = totals[r["Originator"].lower()]
        t[0] += r["Deal Here"]
        t[1] += 1
    by_name = {r["column3"].lower(): [r["Amount"], r["Originated Deals"]] for r in summary if r["column3"]}
    assert {k: totals[k] for k in by_name} == by_name


def test_xls_resumes_after_a_position():
    r = open_file(XLS, "auto", {"sheets": "*", "header_row": {"Summary Sched": 11}}, batch_rows=40)
    batches = list(r.batches())
    assert [b.position["offset"] for b in batches] == [40, 80, 87]
    again = list(r.batches(after=batches[0].position))
    assert [x for b in again for x in b.rows] == [x for b in batches[1:] for x in b.rows]


def test_header_row_per_sheet_is_refused_for_delimited_text_and_by_the_schema(tmp_path):
    from grid.errors import InvalidInput
    from grid.imports.sources import compile_source

    p = tmp_path / "deals.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInput) as e:
        open_file(p, "auto", {"header_row": {"Orig Sched": 8}})
    assert e.value.field == "options.header_row"
    with pytest.raises(InvalidInput) as e:
        compile_source({**DEALS, "options": {"header_row": "eight"}}, "deals.yaml")
    assert e.value.field == "deals.yaml:options.header_row"


@pytest.fixture(scope="module")
def xgrid(ray_session, tmp_path_factory):
    with grid_with_sources(tmp_path_factory, "xls", [DEALS]) as g:
        yield g


@pytest.fixture(scope="module")
async def xapi(xgrid, keystore):
    async with gateway(xgrid, keystore) as client:
        yield client


async def test_xls_pushed_then_dropped_imports_each_deal_once(xapi, xgrid):
    r = await xapi.post("/v1/imports/deals", data=XLS.read_bytes(),
                        headers={**auth("operator"), "Content-Type": "application/vnd.ms-excel"})
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    landed = {x["customer_id"] for x in rcpt["rows"] if x["outcome"] in ("new", "linked")}
    # 17 deals, one counterparty deal (QY8643) on two rows; the TOTAL row's id is no customer id
    assert len(landed) == 16 and "DQW5601" in landed and "DQY5706.1" in landed
    c = await (await xapi.get("/v1/customers/DQU8654", headers=auth("operator"))).json()
    assert (c["name"], c["kind"]) == ("WPS Energy", "commercial")
    assert c["attributes"] == {"originator": "Pollan", "originated": "2001-03-01", "deal_value": "6552"}
    lower = await (await xapi.get("/v1/customers/DQY8551", headers=auth("operator"))).json()
    assert lower["attributes"]["originator"] == "Pollan"  # typed "pollan"
    # every row that is not a deal is in quarantine with its reason; none is lost
    q = await (await xapi.get("/v1/imports/deals/quarantine", headers=auth("operator"))).json()
    reasons = {(e["field"], e["reason"]) for e in q["items"]}
    assert ("customer.customer_id", "invalid") in reasons
    assert rcpt["accepted"] + rcpt["quarantined"] == len(rcpt["rows"]) == 84
    assert q["total"] == rcpt["quarantined"]

    # the same workbook dropped into the watched folder: nothing new to write
    inbox = Path(xgrid.data_dir) / "inbox" / "deals"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(XLS, inbox / ".part")
    (inbox / ".part").rename(inbox / "march.xls")
    for _ in range(400):
        src = next(s for s in (await (await xapi.get("/v1/imports", headers=auth("operator"))).json())["items"]
                   if s["source"] == "deals")
        if src["rows_read"] >= 2 * 84:
            break
        await asyncio.sleep(0.05)
    assert src["rows_read"] == 2 * 84 and src["last_error"] is None
    # the file's rows say what the contexts hold, but for QY8643, whose two deal rows set it one way and back
    assert src["rows_applied"] - rcpt["applied"] == 2
    after = await (await xapi.get("/v1/customers/DQU8654", headers=auth("operator"))).json()
    assert after["version"] == c["version"]
    twice = await (await xapi.get("/v1/customers/DQY8643", headers=auth("operator"))).json()
    assert twice["attributes"] == {"originator": "Pollan", "originated": "2001-03-27", "deal_value": "18450"}
