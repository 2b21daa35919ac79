"""The messy sources the generator writes beside a base: determinism, truth for every row, defects that are
what they say (cosmetic ones undone by grid.normalize, damaging ones not), exact meter values.

One small base (two chunks, one month) and its feeds per module.
"""
from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
from pathlib import Path

import phonenumbers
import pyarrow.parquet as pq
import pytest
from python_calamine import CalamineWorkbook

from grid import timegrid
from grid.errors import InvalidInput
from grid.normalize import normalize_address, normalize_name
from grid.synth import generate_base
from grid.synth.sources import SOURCES, TRUTH_COLUMNS, generate_sources, read_truth
from grid.synth.sources import messy
from grid.synth.sources.meters import kwh
from grid.synth.sources.sheets import HEADER, HEADER_ROW, SHEETS

CUSTOMERS, CHUNK, MONTH = 260, 130, "2026-11"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("srcbase")
    generate_base(base, CUSTOMERS, seed=11, first_month=MONTH, months=1, chunk_customers=CHUNK)
    feeds = generate_sources(base, meter_days=3)
    return base, base / "feeds", feeds


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _base(base: Path, folder: str) -> list[dict]:
    return [r for p in sorted((base / folder).glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_base_and_seed_give_the_same_bytes_and_another_seed_other_defects(world, tmp_path):
    base, feeds, manifest = world
    again = generate_sources(base, tmp_path / "again", meter_days=3)
    assert again == manifest
    assert _digests(tmp_path / "again") == _digests(feeds)
    other = generate_sources(base, tmp_path / "other", seed=99, meter_days=3)
    assert other["seed"] == 99
    assert (tmp_path / "other" / "tax_roll.csv").read_bytes() != (feeds / "tax_roll.csv").read_bytes()


def test_manifest_names_every_source_and_its_truth(world):
    _, feeds, manifest = world
    assert set(manifest["sources"]) == set(SOURCES)
    for name, entry in manifest["sources"].items():
        truth = feeds / entry["truth"]
        assert truth.exists(), name
        assert truth.read_text().splitlines()[0] == ",".join(TRUTH_COLUMNS)
    assert json.loads((feeds / "manifest.json").read_text()) == manifest


def test_every_data_row_of_every_file_source_has_one_truth_row(world):
    base, feeds, manifest = world
    customers = {c["customer_id"] for c in _base(base, "customers")}
    for name in ("tax_roll", "web_contacts"):
        rows = _csv(feeds / manifest["sources"][name]["file"])
        truth = read_truth(feeds, name)
        assert [t["row"] for t in truth] == list(range(1, len(rows) + 1)), name
        for t in truth:
            if t["customer_id"] is None:  # nobody's row: the defects say why
                assert set(t["defects"]) & {"stranger", "vacant", "sold"}, t
            else:
                assert t["customer_id"] in customers
    kinds = collections.Counter(d for t in read_truth(feeds, "tax_roll") for d in t["defects"])
    assert kinds["vacant"] and kinds["sold"]


def test_billing_dump_is_consistent_and_duplicates_point_at_their_true_customer(world):
    base, feeds, manifest = world
    tables = {t: _csv(feeds / e["file"]) for t, e in manifest["sources"]["billing"]["tables"].items()}
    numbers = {c["customer_number"] for c in tables["customers"]}
    truth = {t["key"]: t for t in read_truth(feeds, "billing")}
    assert set(truth) == numbers and len(numbers) == len(tables["customers"])
    accounts = {a["account_id"]: a for a in _base(base, "accounts")}
    assert {a["account_number"] for a in tables["accounts"]} == set(accounts)
    for a in tables["accounts"]:  # whoever holds an account in the dump is truly its customer
        assert truth[a["customer_number"]]["customer_id"] == accounts[a["account_number"]]["customer_id"]
    dups = [t for t in truth.values() if "duplicate" in t["defects"]]
    assert dups and all(t["key"] != t["customer_id"] and t["customer_id"] in numbers for t in dups)
    meters = {m["premise_id"] for m in tables["meters"]}
    assert meters == {p["premise_id"] for p in tables["premises"]}
    bills = {b["bill_id"]: b for b in _base(base, "bills")}
    for b in tables["bills"]:
        assert json.loads(b["lines"]) == bills[b["bill_id"]]["lines"]
        assert int(b["total_cents"]) == bills[b["bill_id"]]["total_cents"]
    schema = (feeds / "billing" / "schema.sql").read_text()
    for t in tables:
        assert f"CREATE TABLE {t} (" in schema


def test_meter_reads_applied_in_order_give_the_base_wh_exactly(world):
    """Later rows replace earlier ones (a correction); the result is the base's usage but for the gaps."""
    base, feeds, manifest = world
    entry = manifest["sources"]["meter_reads"]
    got: dict[tuple[str, str], int] = {}
    for r in _csv(feeds / entry["file"]):
        whole, frac = r["kwh_delivered"].split(".")
        got[(r["meter_id"], r["read_start"])] = int(whole) * 1000 + int(frac)
    truth = read_truth(feeds, "meter_reads")
    meter_customer = {t["key"]: t["customer_id"] for t in truth if t["row"] is None and "@" not in t["key"]}
    gaps = {tuple(t["key"].split("@")) for t in truth if t["defects"] == ["gap"]}
    defects = collections.Counter(d for t in truth for d in t["defects"])
    assert defects["gap"] and defects["duplicate"] and defects["corrected"] == defects["correction"] > 0
    sps = {s["service_point_id"]: s for s in _base(base, "service_points")}
    start, end = timegrid.month_bounds(MONTH)
    cal = timegrid.calendar(start, end, 60, manifest["timezone"])
    first = entry["first_interval"]
    assert cal.days - cal.day[first] == 3
    import datetime as dt
    z = timegrid.zone(manifest["timezone"])
    stamps = [dt.datetime.fromtimestamp(int(t), z).isoformat() for t in cal.utc_start[first:]]
    checked = 0
    for u in _base(base, f"usage/{MONTH}"):
        sp = sps[u["service_point_id"]]
        if sp["meter_id"] not in meter_customer:
            continue
        assert meter_customer[sp["meter_id"]] == sp["customer_id"]
        for stamp, wh in zip(stamps, u["import_wh"][first:]):
            key = (sp["meter_id"], stamp)
            if key in gaps:
                assert key not in got
            else:
                assert got[key] == wh
                checked += 1
    assert checked == len(got) > 0


def test_kwh_text_is_exact():
    assert [kwh(w) for w in (0, 7, 1000, 1234, 987654321, -5)] == ["0.000", "0.007", "1.000", "1.234",
                                                                      "987654.321", "-0.005"]


def test_key_accounts_workbook_reads_with_calamine_header_on_row_four_typed_cells(world):
    base, feeds, manifest = world
    wb = CalamineWorkbook.from_path(str(feeds / "key_accounts.xlsx"))
    assert wb.sheet_names == list(SHEETS)
    truth = read_truth(feeds, "key_accounts")
    premises = {s["account_id"]: s["premise_address"] for s in _base(base, "service_points")}
    entities = {e["entity_id"]: e for e in _base(base, "entities")}
    kinds = collections.Counter()
    for sheet in SHEETS:
        rows = wb.get_sheet_by_name(sheet).to_python()
        assert rows[HEADER_ROW] == list(HEADER)
        data = rows[HEADER_ROW + 1:]
        mine = [t for t in truth if t["file"] == f"key_accounts.xlsx#{sheet}"]
        assert [t["row"] for t in mine] == list(range(1, len(data) + 1))
        for row, t in zip(data, mine):
            kinds.update(t["defects"])
            record = dict(zip(HEADER, row))
            assert record["Last Visit"].__class__.__name__ == "date"
            if not {"typo", "no_city"} & set(t["defects"]):  # cosmetic spellings are undone by the normalizer
                assert normalize_address(record["Site Address"]) == normalize_address(premises[t["key"]])
            if "account_number_cell" in t["defects"]:
                assert record["Account #"] == float(t["key"][1:])
            if not t["defects"]:
                assert record["Account #"] == t["key"]
            if record["Parent Company"] and not {"parent_typo", "parent_suffix_dropped"} & set(t["defects"]):
                root = chain_root(entities, t["entity_id"])
                assert normalize_name(record["Parent Company"]) == normalize_name(root["legal_name"])
    assert kinds["duplicate"] and kinds["typo"] and kinds["missing_account"] and kinds["parent_suffix_dropped"]


def chain_root(entities: dict, entity_id: str) -> dict:
    e = entities[entity_id]
    while e["parent_entity_id"]:
        e = entities[e["parent_entity_id"]]
    return e


def test_tax_roll_situs_matches_the_premise_by_normalized_address(world):
    base, feeds, manifest = world
    rows = _csv(feeds / "tax_roll.csv")
    truth = read_truth(feeds, "tax_roll")
    by_address = {normalize_address(s["premise_address"]): s for s in _base(base, "service_points")}
    entities = {e["entity_id"]: e for e in _base(base, "entities")}
    matched = care_of = 0
    for r, t in zip(rows, truth):
        if set(t["defects"]) & {"vacant", "typo", "missing_zip"}:
            continue
        sp = by_address.get(normalize_address(f"{r['SITUS_ADDRESS']}, {r['SITUS_CITY']}, CA {r['SITUS_ZIP']}"))
        assert sp is not None, r
        if t["customer_id"] is not None:
            assert sp["customer_id"] == t["customer_id"]
            matched += 1
        if t["entity_id"] and "stale_owner" not in t["defects"]:
            e = entities[t["entity_id"]]
            assert normalize_name(r["OWNER_NAME"]) == normalize_name(e["legal_name"]) or \
                sorted(normalize_name(r["OWNER_NAME"]).split()) == sorted(normalize_name(e["legal_name"]).split())
            care_of += bool(r["CARE_OF"])
    assert matched > CUSTOMERS // 2 and care_of > 0


def test_web_contacts_mobiles_parse_and_strangers_are_nobody(world):
    _, feeds, _ = world
    rows = _csv(feeds / "web_contacts.csv")
    for r in rows:
        n = phonenumbers.parse(r["mobile"], "US")
        assert phonenumbers.is_possible_number(n), r["mobile"]
    truth = read_truth(feeds, "web_contacts")
    assert {t["key"] for t in truth} == {r["submission_id"] for r in rows}


def test_cosmetic_defects_normalize_away_and_typos_do_not():
    import numpy as np

    rng = np.random.default_rng(5)
    address = "100 Main Street Suite 4, Fresno, CA 93650"
    assert normalize_address(messy.expand_address("100 Main St Ste 4, Fresno, CA 93650")) == normalize_address(address)
    assert messy.drop_legal_suffix("Acme Holdings, LLC") == "Acme Holdings"
    assert messy.reorder_person("John Smith", np.random.default_rng(0)) in ("SMITH JOHN", "Smith, John")
    changed = sum(messy.typo("Summit Harbor Holdings", rng) != "Summit Harbor Holdings" for _ in range(50))
    assert changed >= 45  # a swap of two equal letters is the only no-op


def test_refuses_to_overwrite_a_folder_that_is_not_a_feeds_folder(world, tmp_path):
    base, _, _ = world
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInput) as exc:
        generate_sources(base, tmp_path)
    assert exc.value.field == "out_dir"
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    with pytest.raises(InvalidInput):
        generate_sources(base, tmp_path / "x", meter_days=0)


def test_green_button_files_hold_the_base_usage_of_their_registered_service_point(world):
    from grid.imports import espi

    base, feeds, manifest = world
    entry = manifest["sources"]["greenbutton"]
    assert entry["files"] == len(entry["usage_points"]) > 0
    usage = {u["service_point_id"]: u for u in _base(base, f"usage/{MONTH}")}
    sps = {s["service_point_id"]: s for s in _base(base, "service_points")}
    truth = {t["key"]: t["customer_id"] for t in read_truth(feeds, "greenbutton")}
    exported = 0
    for up, sp in entry["usage_points"].items():
        assert up != sp and truth[up] == sps[sp]["customer_id"]
        feed = espi.parse((feeds / "greenbutton" / f"{up}.xml").read_bytes())
        rows = feed.rows(usage_points=entry["usage_points"])
        assert {r["service_point_id"] for r in rows} == {sp}
        assert [r["import_wh"] for r in rows] == usage[sp]["import_wh"]
        if usage[sp]["export_wh"] is not None:
            assert [r["export_wh"] or 0 for r in rows] == usage[sp]["export_wh"]
            exported += any(usage[sp]["export_wh"])
    assert exported > 0


def test_cli_generate_with_sources_writes_the_feeds(tmp_path, capsys):
    from grid.cli import main

    out = tmp_path / "base"
    assert main(["generate", "--customers", "20", "--seed", "4", "--out", str(out), "--first-month", "2026-11",
                 "--months", "1", "--sources", "--meter-days", "1"]) == 0
    manifest = json.loads((out / "feeds" / "manifest.json").read_text())
    assert set(manifest["sources"]) == set(SOURCES) and manifest["seed"] == 4
    assert "messy sources" in capsys.readouterr().out
