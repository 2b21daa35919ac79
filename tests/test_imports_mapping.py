"""Sources, readers and mapping on real files, without Ray: odd files, every conversion, every bad-row class."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grid.errors import InvalidInput
from grid.imports.readers import open_file
from grid.imports.sources import SourceRegistry, compile_source

USAGE = {"name": "meters", "kind": "push", "does": "usage", "identity": {"meter_id": "meter"},
         "timezone": "America/New_York",
         "fields": {"usage.start": {"column": "time", "format": "%Y-%m-%d %H:%M"},
                    "usage.import_wh": {"column": "kWh", "unit": "kWh"}}}


def rows_of(path, **options):
    r = open_file(path, options=options)
    out, rejected, positions = [], [], []
    for b in r.batches():
        rows = b.rows.to_pylist() if hasattr(b.rows, "to_pylist") else list(b.rows)
        out += rows
        rejected += b.rejected
        positions.append(b.position)
    return out, rejected, positions


def test_csv_bom_semicolons_latin1(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes("\ufeffname;city\nJosé;Málaga\n".encode("utf-8"))
    rows, _, _ = rows_of(p)
    assert rows == [{"name": "José", "city": "Málaga"}]
    q = tmp_path / "b.csv"
    q.write_bytes("name,city\nJosé,Málaga\n".encode("latin-1"))
    assert rows_of(q)[0] == [{"name": "José", "city": "Málaga"}]


def test_csv_empty_header_only_malformed_and_quoted_newline(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    assert rows_of(tmp_path / "e.csv")[0] == []
    (tmp_path / "h.csv").write_text("a,b\n")
    assert rows_of(tmp_path / "h.csv")[0] == []
    (tmp_path / "m.csv").write_text('a,b\n1,"x\ny"\n2\n3,z\n')
    rows, rejected, pos = rows_of(tmp_path / "m.csv")
    assert rows == [{"a": "1", "b": "x\ny"}, {"a": "3", "b": "z"}]
    assert [r["reason"] for r in rejected] == ["malformed"]
    assert pos[-1]["offset"] == 2


def test_csv_streams_in_blocks_and_resumes_at_byte(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("id,v\n" + "".join(f"{i},\"q{i}\"\n" for i in range(5000)))
    r = open_file(p, options={"block_bytes": 4096})
    batches = list(r.batches())
    assert len(batches) > 5  # never the whole file in one batch
    assert sum(len(b) for b in batches) == 5000
    mid = batches[3].position
    rest = list(open_file(p, options={"block_bytes": 4096}).batches(after=mid))
    first = rest[0].rows.to_pylist()[0]
    assert int(first["id"]) == mid["offset"]  # row numbers are 1-based: the next id is the offset
    assert sum(len(b) for b in rest) == 5000 - mid["offset"]


def test_fixed_width_jsonl_parquet(tmp_path):
    f = tmp_path / "a.dat"
    f.write_text("HEADER\nM001 20260101 0001.500\nM002 20260101 0002.250\nshort\n")
    rows, rejected, _ = rows_of(f, skip_lines=1, columns=[{"name": "meter", "start": 1, "width": 4},
                                                        {"name": "day", "start": 6, "width": 8},
                                                        {"name": "kwh", "start": 15, "width": 8}])
    assert rows[1] == {"meter": "M002", "day": "20260101", "kwh": "0002.250"}
    assert rejected[0]["reason"] == "malformed"
    j = tmp_path / "a.jsonl"
    j.write_text('{"meter": {"id": "M1"}, "v": 1}\n\nnot json\n[1]\n{"meter": {"id": "M2"}, "v": 2}\n')
    rows, rejected, _ = rows_of(j)
    assert [r["meter"]["id"] for r in rows] == ["M1", "M2"] and len(rejected) == 2
    q = tmp_path / "a.parquet"
    pq.write_table(pa.table({"m": ["A", "B", "C"], "wh": [1, 2, 3]}), q, row_group_size=2)
    r = open_file(q, batch_rows=2)
    bs = list(r.batches())
    assert [len(b) for b in bs] == [2, 1]
    again = list(open_file(q, batch_rows=2).batches(after=bs[0].position))
    assert again[0].rows.to_pylist() == [{"m": "C", "wh": 3}]


def test_spreadsheet_sheets_header_not_on_line_one_typed_cells(tmp_path):
    xlsxwriter = pytest.importorskip("xlsxwriter")
    p = tmp_path / "key accounts.xlsx"
    wb = xlsxwriter.Workbook(str(p))
    ws = wb.add_worksheet("North")
    ws.write(0, 0, "Key accounts - North region")
    ws.write_row(2, 0, ["Account", "Name", "Since", "kWh"])
    ws.write_row(3, 0, ["A-1", "Acme Holdings", None, 12.5])
    ws.write_datetime(3, 2, dt.datetime(2024, 5, 1), wb.add_format({"num_format": "yyyy-mm-dd"}))
    ws2 = wb.add_worksheet("South")
    ws2.write_row(0, 0, ["Account", "Name", "Since", "kWh"])
    ws2.write_row(1, 0, ["A-2", "Beta LLC", "2023-01-02", 3])
    wb.close()
    rows, _, pos = rows_of(p, sheets="*")
    assert [r["Account"] for r in rows] == ["A-1", "A-2"]
    assert rows[0]["kWh"] == 12.5 and rows[1]["kWh"] == 3 and rows[0]["_sheet"] == "North"
    assert rows[0]["Since"] in (dt.date(2024, 5, 1), dt.datetime(2024, 5, 1))  # a typed date cell
    assert pos[-1]["offset"] == 2


def test_mapping_units_time_zones_lookups_and_bad_rows():
    src = compile_source({
        "name": "m", "kind": "push", "does": "upsert", "timezone": "America/New_York",
        "fields": {"customer.customer_id": {"column": "id", "case": "upper"},
                   "customer.kind": {"column": "class", "lookup": {"R": "residential", "C": "commercial"}},
                   "customer.name": {"column": "name", "case": "title"},
                   "service_point.has_solar": "solar", "service_point.interval_minutes": "iv",
                   "customer.attributes.since": {"column": "since", "type": "date", "format": "%m/%d/%Y"}}})
    rows = [{"id": " c1 ", "class": "R", "name": "ACME  ", "solar": "Y", "iv": "15", "since": "05/01/2024"},
            {"id": "c2", "class": "Z", "name": "b", "solar": "n", "iv": "15", "since": ""},
            {"id": "c3", "class": "C", "name": "c", "solar": "maybe", "iv": "15", "since": None},
            {"id": "c4", "class": "C", "name": "d", "solar": "", "iv": "7", "since": "13/45/2024"},
            {"id": None, "class": "C", "name": "e", "solar": "", "iv": "60", "since": None}]
    m = src.mapping.apply(rows)
    good = m.frame.to_dicts()
    assert good[0]["customer.customer_id"] == "C1" and good[0]["customer.kind"] == "residential"
    assert good[0]["customer.name"] == "Acme" and good[0]["service_point.has_solar"] is True
    assert good[0]["customer.attributes.since"] == "2024-05-01"
    bad = {b["i"]: (b["field"], b["reason"]) for b in m.bad}
    assert bad[1] == ("customer.kind", "unknown code")
    assert bad[2] == ("service_point.has_solar", "not true or false")
    assert bad[3][0] in ("service_point.interval_minutes", "customer.attributes.since")
    assert len(good) == 2  # row 4 has no id: kept (the linker decides), rows 1-3 quarantined


def test_energy_exact_and_local_time():
    src = compile_source(USAGE)
    m = src.mapping.apply(pa.table({"meter": ["M1", "M1", "M1", "M1", "M1"],
                                    "time": ["2026-11-01 01:30", "2026-03-08 02:30", "2026-01-01 00:00",
                                             "2026-01-01 01:00", "2026-01-01 02:00"],
                                    "kWh": ["1.2345", "1", "0.0005", "-1", "x"]}))
    good = m.frame.to_dicts()
    # 01:30 on the fall-back day is its first occurrence (EDT, UTC-4)
    assert good[0]["usage.start"] == int(dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.timezone.utc).timestamp())
    assert good[0]["usage.import_wh"] == 1235  # half-up from the digits, no float
    assert good[1]["usage.import_wh"] == 1  # 0.0005 kWh = 0.5 Wh -> 1
    reasons = sorted((b["i"], b["field"], b["reason"]) for b in m.bad)
    assert reasons[0][:2] == (1, "usage.start")  # 02:30 does not exist on the spring-forward day
    assert (3, "usage.import_wh", "negative energy") in reasons
    assert (4, "usage.import_wh", "not a number") in reasons


@pytest.mark.parametrize("spec, where", [
    ({**USAGE, "fields": {**USAGE["fields"], "usage.bogus": "x"}}, "meters.yaml:fields.usage.bogus"),
    ({**USAGE, "fields": {"usage.start": "t"}}, "meters.yaml:fields.usage.import_wh"),
    ({**USAGE, "fields": {**USAGE["fields"], "bill.total_cents": "x"}}, "meters.yaml:fields.bill.total_cents"),
    ({**USAGE, "timezone": "Mars/Olympus"}, "meters.yaml:timezone"),
    ({**USAGE, "kind": "ftp"}, "meters.yaml:kind"),
    ({**USAGE, "surprise": 1}, "meters.yaml:surprise"),
    ({**USAGE, "identity": {}}, "meters.yaml:identity"),
    ({**USAGE, "fields": {**USAGE["fields"], "usage.import_wh": {"column": "kWh", "unit": "dollars"}}},
     "meters.yaml:fields.usage.import_wh.unit"),
])
def test_bad_source_names_file_and_key(tmp_path, spec, where):
    import yaml

    (tmp_path / "meters.yaml").write_text(yaml.safe_dump(spec))
    reg = SourceRegistry(tmp_path)
    with pytest.raises(InvalidInput) as exc:
        reg.reload(strict=True)
    assert exc.value.field == where, exc.value.detail


def test_registry_reloads_without_restart(tmp_path):
    import os
    import yaml

    reg = SourceRegistry(tmp_path)
    assert reg.reload() == []
    (tmp_path / "meters.yaml").write_text(yaml.safe_dump(USAGE))
    assert reg.reload() == ["meters"]
    assert reg.get("meters").timezone == "America/New_York"
    (tmp_path / "meters.yaml").write_text(yaml.safe_dump({**USAGE, "timezone": "UTC"}))
    os.utime(tmp_path / "meters.yaml", ns=(1, 1))
    assert reg.reload() == ["meters"] and reg.get("meters").timezone == "UTC"
    (tmp_path / "meters.yaml").write_text("name: [")
    reg.reload()
    assert reg.get("meters").timezone == "UTC"  # a broken edit keeps the last good version serving
    assert "meters.yaml" in reg.errors


def test_shipped_example_sources_compile():
    from pathlib import Path

    reg = SourceRegistry(Path(__file__).resolve().parents[1] / "sources")
    reg.reload(strict=True)
    assert reg.sources
    json.dumps({n: s.spec for n, s in reg.sources.items()}, default=str)
