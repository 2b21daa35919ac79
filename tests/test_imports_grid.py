"""Imports end to end into a running grid over HTTP: watched folders, push, quarantine, replay, isolation,
exactly once under a shard kill."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import OWN_CUSTOMER, auth

SOURCES = Path(__file__).resolve().parents[1] / "sources"


@pytest.fixture(scope="module")
def igrid(ray_session, tmp_path_factory):
    from factories import populate

    from grid.cluster import Grid

    root = tmp_path_factory.mktemp("imports")
    (root / "sources").mkdir()
    for f in SOURCES.glob("*.yaml"):
        shutil.copy(f, root / "sources" / f.name)
    g = Grid.start(data_dir=str(root), shards=2, namespace="cg-test-imports")
    g.test_ids = populate(g, 12)
    yield g
    g.shutdown()


@pytest.fixture(scope="module")
async def iapi(igrid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(igrid, keys=keystore))) as client:
        yield client


def readings(sp_rows, month="2026-01"):
    return "sp,ts,wh\n" + "".join(f"{sp},{ts},{wh}\n" for sp, ts, wh in sp_rows)


async def wait_for(fn, seconds=20.0):
    for _ in range(int(seconds / 0.05)):
        out = await fn()
        if out:
            return out
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def usage_of(api, cid, sp, month="2026-01"):
    r = await api.get(f"/v1/customers/{cid}/usage", params={"month": month, "service_point_id": sp},
                      headers=auth("operator"))
    assert r.status == 200, await r.text()
    return {i["start"]: i["import_wh"] for i in (await r.json())["items"] if i["import_wh"]}


async def test_watched_folder_file_redrop_append_and_half_written(iapi, igrid):
    inbox = Path(igrid.data_dir) / "inbox" / "interval-wh"
    inbox.mkdir(parents=True, exist_ok=True)
    rows = [(f"S{i:08d}", f"2026-01-10T{h:02d}:00:00Z", 1000 + i * 10 + h) for i in range(3) for h in range(4)]
    rows.append(("S99999999", "2026-01-10T00:00:00Z", 5))  # nobody's meter: unresolved
    rows.append(("S00000001", "2026-01-10T00:10:00Z", 5))  # not an interval start: refused by the shard
    rows.append(("S00000001", "yesterday", 5))  # not a time: invalid
    part = inbox / "reads.csv.part"
    part.write_text(readings(rows))
    part.rename(inbox / "reads.csv")
    got = await wait_for(lambda: usage_of(iapi, "C0000002", "S00000002"))
    assert got == {f"2026-01-10T{h:02d}:00:00Z": 1020 + h for h in range(4)}

    async def quarantined():
        r = await iapi.get("/v1/imports/interval-wh/quarantine", headers=auth("operator"))
        body = await r.json()
        return body if body["total"] >= 3 else None

    q = await wait_for(quarantined)
    reasons = sorted((e["reason"], e["field"]) for e in q["items"])
    assert reasons == [("invalid", "usage.start"), ("refused", "usage.start"), ("unresolved", "identity")]
    assert next(e for e in q["items"] if e["reason"] == "invalid")["row"] == {"sp": "S00000001", "ts": "yesterday",
                                                                           "wh": "5"}
    r = await iapi.get("/v1/imports", headers=auth("operator"))
    src = next(s for s in (await r.json())["items"] if s["source"] == "interval-wh")
    assert src["rows_applied"] == 12 and src["quarantined"] == 3 and src["last_position"]["offset"] == 15

    # re-dropping the same file is a no-op; appending imports only the new rows
    version = (await (await iapi.get("/v1/customers/C0000002", headers=auth("operator"))).json())["version"]
    shutil.copy(inbox / "reads.csv", inbox / "reads-copy.csv")
    with open(inbox / "reads.csv", "a") as f:
        f.write("S00000002,2026-01-10T05:00:00Z,7777\n")
    got = await wait_for(lambda: _has(iapi, "C0000002", "S00000002", "2026-01-10T05:00:00Z"))
    assert got["2026-01-10T00:00:00Z"] == 1020
    async def applied(at_least):
        imp = (await (await iapi.get("/v1/imports", headers=auth("operator"))).json())["items"]
        src = next(s for s in imp if s["source"] == "interval-wh")
        n = (src["rows_applied"], src["rows_unchanged"])
        return n if sum(n) >= at_least else None

    # the copy is a new file (its 12 rows hold what the grid holds: unchanged), the append 1 row; in whichever order
    assert await wait_for(lambda: applied(12 + 12 + 1)) == (13, 12)
    await asyncio.sleep(0.5)
    assert await applied(0) == (13, 12)  # and nothing more: no row applied twice
    assert (await (await iapi.get("/v1/customers/C0000002", headers=auth("operator"))).json())["version"] > version

    # a half-written file is not read while it keeps changing
    slow = inbox / "slow.csv"
    with open(slow, "w") as f:
        f.write("sp,ts,wh\nS00000003,2026-01-11T00:00:00Z,1\n")
        f.flush()
        for k in range(5):
            await asyncio.sleep(0.1)
            f.write(f"S00000003,2026-01-11T0{k + 1}:00:00Z,{k + 2}\n")
            f.flush()
            assert "2026-01-11T00:00:00Z" not in await usage_of(iapi, "C0000003", "S00000003")
    got = await wait_for(lambda: _has(iapi, "C0000003", "S00000003", "2026-01-11T05:00:00Z"))
    assert [got[f"2026-01-11T0{k}:00:00Z"] for k in range(6)] == [1, 2, 3, 4, 5, 6]


async def _has(api, cid, sp, start):
    got = await usage_of(api, cid, sp)
    return got if start in got else None


async def test_push_receipt_quarantine_and_replay_after_fix(iapi, igrid):
    rows = [{"CUST_ID": "c0000004", "CUST_NAME": "ACME HOLDINGS", "CLASS": "com", "ACCT_NO": "A00000004",
             "RATE": "res-tou", "SP_ID": "S00000004"},
            {"CUST_ID": "C0009999", "CUST_NAME": "new one", "CLASS": "RES", "ACCT_NO": "A0009999", "RATE": "r",
             "SP_ID": "S0009999", "METER_NO": "M0009999", "INTERVAL": "15"},
            {"CUST_ID": "C0000005", "CUST_NAME": "x", "CLASS": "GOV", "ACCT_NO": "A00000005"}]
    r = await iapi.post("/v1/imports/billing-customers", json=rows, headers=auth("operator"))
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    assert [x["outcome"] for x in rcpt["rows"]] == ["linked", "new", "quarantined"]
    assert rcpt["rows"][2] == {"row": 2, "outcome": "quarantined", "field": "customer.kind", "reason": "unknown code"}
    c4 = await (await iapi.get("/v1/customers/C0000004", headers=auth("operator"))).json()
    assert c4["name"] == "Acme Holdings" and c4["kind"] == "commercial"
    new = await (await iapi.get("/v1/customers/C0009999", headers=auth("operator"))).json()
    assert new["accounts"][0]["service_points"][0]["interval_minutes"] == 15
    # the same push again changes nothing
    again = await (await iapi.post("/v1/imports/billing-customers", json=rows[:2], headers=auth("operator"))).json()
    assert again["applied"] == 0 and again["unchanged"] == 2
    # fix the mapping (GOV is a public customer), reload, replay: the row goes through and leaves quarantine
    path = Path(igrid.data_dir) / "sources" / "billing-customers.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["fields"]["customer.kind"]["lookup"]["GOV"] = "public"
    path.write_text(yaml.safe_dump(spec))
    assert (await iapi.post("/v1/imports/reload", headers=auth("operator"))).status == 200
    r = await iapi.post("/v1/imports/billing-customers/quarantine/replay", headers=auth("operator"))
    replayed = await r.json()
    assert replayed["applied"] == 1, (Path(igrid.data_dir) / "imports" / "quarantine" / "billing-customers.jsonl").read_text()
    c5 = await (await iapi.get("/v1/customers/C0000005", headers=auth("operator"))).json()
    assert c5["kind"] == "public"
    q = await (await iapi.get("/v1/imports/billing-customers/quarantine", headers=auth("operator"))).json()
    assert q["total"] == 0


# -- regression: imports built records beside the model, so an imported customer lacked its defaults ----------------
async def test_imported_minimal_customer_has_every_default_and_is_listed_classified_and_billed(iapi):
    from conftest import follow

    row = {"CUST_ID": "C0008888", "CUST_NAME": "minimal row", "CLASS": "RES", "ACCT_NO": "A0008888",
           "RATE": "res-tiered", "SP_ID": "S0008888"}
    r = await iapi.post("/v1/imports/billing-customers", json=[row], headers=auth("operator"))
    assert r.status == 200, await r.text()
    assert [x["outcome"] for x in (await r.json())["rows"]] == ["new"]
    c = await (await iapi.get("/v1/customers/C0008888", headers=auth("operator"))).json()
    [acct] = c["accounts"]
    assert {k: acct[k] for k in ("status", "bill_cycle_day", "programs", "billing_address")} == \
        {"status": "active", "bill_cycle_day": 1, "programs": [], "billing_address": ""}
    assert acct["service_points"] == [{"service_point_id": "S0008888", "premise_address": "", "meter_id": "",
                                       "interval_minutes": 60, "has_solar": False, "load_priority": "normal"}]
    for query, listed in (("has_solar=false", True), ("has_solar=true", False), ("load_priority=normal", True),
                          ("load_priority=critical", False)):
        r = await iapi.get(f"/v1/customers?{query}&limit=1000", headers=auth("operator"))
        assert r.status == 200, (query, await r.text())
        assert ("C0008888" in [x["customer_id"] for x in (await r.json())["items"]]) == listed, query
    job = await follow(iapi, await iapi.post("/v1/admin/classify", headers=auth("operator")), auth("operator"))
    assert job["state"] == "done", job
    async def classified():
        # the job writes through the shards, not this gateway: its near cache sees the change on its next poll
        c = await (await iapi.get("/v1/customers/C0008888", headers=auth("operator"))).json()
        return c if c["classification"] else None

    c = await wait_for(classified, 10)
    assert c["classification"]["load_priority"] == "normal" and c["classification"]["key_account"] is False
    r = await iapi.post("/v1/bill-runs", json={"period": "2026-01"}, headers=auth("operator"))
    assert r.status == 202, await r.text()
    run = await follow(iapi, r, auth("operator"))
    assert run["state"] == "done", run
    # the run reaches the imported account (it has no usage yet, so it is held as no_usage, not skipped or a 5xx)
    mine = [m for m in run["report"]["mismatches"] if m["customer_id"] == "C0008888"]
    assert [(m["account_id"], m["outcome"]) for m in mine] == [("A0008888", "no_usage")]


async def test_push_csv_and_bad_source_file_is_422_naming_file_and_key(iapi, igrid):
    body = "Account,Paid On,Amount,Method\nA00000006,01/05/2026,\"$1,234.50\",Card\nA00000006,01/05/2026,\"$1,234.50\",Card\n"
    r = await iapi.post("/v1/imports/payments", data=body, headers={**auth("operator"), "Content-Type": "text/csv"})
    assert r.status == 200, await r.text()
    c6 = await (await iapi.get("/v1/customers/C0000006", headers=auth("operator"))).json()
    assert [p["amount_cents"] for p in c6["payments"]] == [123450]  # a duplicated row is one payment
    bad = Path(igrid.data_dir) / "sources" / "broken.yaml"
    bad.write_text(yaml.safe_dump({"name": "broken", "kind": "push", "does": "usage",
                                   "fields": {"usage.start": "t", "usage.import_wh": {"column": "x", "unit": "cents"}},
                                   "identity": {"meter_id": "m"}}))
    try:
        r = await iapi.post("/v1/imports/reload", headers=auth("operator"))
        assert r.status == 422
        assert (await r.json())["field"] == "broken.yaml:fields.usage.import_wh.unit"
        r = await iapi.post("/v1/imports/broken", json=[{"m": 1}], headers=auth("operator"))
        assert r.status == 422 and (await r.json())["field"] == "broken.yaml:fields.usage.import_wh.unit"
    finally:
        bad.unlink()
    r = await iapi.post("/v1/imports/no-such-source", json=[], headers=auth("operator"))
    assert r.status == 404


async def test_customer_entry_isolation(iapi, igrid):
    own_sp = "S00000001"
    assert OWN_CUSTOMER == "C0000001"
    rows = [{"service_point_id": own_sp, "start": "2026-01-20T00:00:00Z", "import_wh": 42},
            {"service_point_id": "S00000002", "start": "2026-01-20T00:00:00Z", "import_wh": 42},  # someone else's
            {"service_point_id": "S77777777", "start": "2026-01-20T00:00:00Z", "import_wh": 42}]  # nobody's
    r = await iapi.post("/v1/imports/customer-submeters", json=rows, headers=auth("customer"))
    assert r.status == 200, await r.text()
    rcpt = await r.json()
    assert [x["outcome"] for x in rcpt["rows"]] == ["linked", "rejected", "rejected"]
    assert rcpt["rows"][1] == rcpt["rows"][2] | {"row": 1}  # same answer: existence is not revealed
    assert "customer_id" not in rcpt["rows"][1]
    assert "2026-01-20T00:00:00Z" not in await usage_of(iapi, "C0000002", "S00000002")
    assert (await usage_of(iapi, "C0000001", own_sp))["2026-01-20T00:00:00Z"] == 42
    r = await iapi.post("/v1/imports/billing-customers", json=[], headers=auth("customer"))
    assert r.status == 403
    r = await iapi.get("/v1/imports", headers=auth("customer"))
    assert r.status == 403


async def test_metrics_show_import_progress(iapi):
    text = await (await iapi.get("/metrics")).text()
    assert 'contextgrid_import_rows{outcome="applied",source="interval-wh"}' in text


async def test_shard_killed_mid_file_no_row_lost_or_doubled(iapi, igrid):
    """kill -9 of a shard while a file streams in: every reading lands once (payments are counted too)."""
    import os
    import signal

    from grid.imports.importer import Importer

    imp = Importer(igrid, igrid.data_dir)
    path = Path(igrid.data_dir) / "kill.csv"
    lines = ["Account,Paid On,Amount,Method"]
    for k in range(600):
        i = 7 + k % 5
        lines.append(f"A{i:08d},01/{1 + k % 28:02d}/2025,{k}.{k % 100:02d},pay-{k}")
    path.write_text("\n".join(lines) + "\n")
    src = imp.registry.get("payments")
    src.options["block_bytes"] = 2048  # many batches
    before = {f"C{i:07d}": len((await (await iapi.get(f"/v1/customers/C{i:07d}", headers=auth("operator"))).json())
                               ["payments"]) for i in range(7, 12)}
    stats = await igrid.astats()
    pid = next(s["pid"] for s in stats if s["shard"] == 1)
    batches = []

    def kill_mid_file(rows, _bytes):
        batches.append(rows)
        if len(batches) == 3:  # after the third batch is durable, while the rest is still to come
            os.kill(pid, signal.SIGKILL)

    task = asyncio.create_task(imp.import_file(src, path, progress=kill_mid_file))
    rcpt = await asyncio.wait_for(task, 120)
    # a second run after the crash finds everything applied
    again = await imp.import_file(src, path)
    assert again.applied == 0
    after = {}
    for i in range(7, 12):
        cid = f"C{i:07d}"
        rec = igrid.get(cid)
        after[cid] = len(rec["payments"]) - before[cid]
    assert sum(after.values()) == 600, (after, str(rcpt.view()), str(again.view()), imp.quarantine.entries("payments")[:2])
    assert all(v == 120 for v in after.values())
    assert len(batches) > 5
    new_pid = next(s["pid"] for s in await igrid.astats() if s["shard"] == 1)
    assert new_pid != pid  # the shard really died and came back from its WAL


@pytest.mark.slow
def test_importer_killed_mid_file_resumes_exactly(tmp_path):
    """kill -9 of the importer process (its grid with it) mid-file, then the same import again: every row
    lands once. Runs the CLI (``contextgrid import``) in subprocesses with their own Ray."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = tmp_path / "grid"
    (data / "sources").mkdir(parents=True)
    shutil.copy(SOURCES / "billing-customers.yaml", data / "sources")
    spec = yaml.safe_load((SOURCES / "payments.yaml").read_text())
    spec["options"] = {"block_bytes": 2048}  # ~60 rows a batch: the kill lands with most of the file to go
    (data / "sources" / "payments.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "customers.csv").write_text("CUST_ID,CUST_NAME,CLASS,ACCT_NO,RATE\n" + "".join(
        f"C{i:07d},Customer {i},RES,A{i:08d},r1\n" for i in range(6)))
    n = 6000
    (tmp_path / "payments.csv").write_text("Account,Paid On,Amount,Method\n" + "".join(
        f"A{k % 6:08d},01/{1 + k % 28:02d}/2025,{k}.{k % 100:02d},pay-{k}\n" for k in range(n)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "RAY_USAGE_STATS_ENABLED": "0"}
    grid = ["--data-dir", str(data), "--shards", "2"]
    customers = ["import", str(tmp_path / "customers.csv"), "--source", "billing-customers"] + grid
    payments = ["import", str(tmp_path / "payments.csv"), "--source", "payments"] + grid
    # one process: the customers, then the payments file (killed part way); a second: the payments again, counted
    first = ("import sys; from grid.cli import main\n"
             f"assert main({customers!r}) == 0\n"
             f"sys.exit(main({payments!r}))\n")
    second = ("import sys; from grid.cli import main\n"
              f"assert main({payments!r}) == 0\n"
              "from grid.cluster import Grid\n"
              f"g = Grid.start(data_dir={str(data)!r}, shards=2)\n"
              "pays = [p['payment_id'] for i in range(6) for p in g.get(f'C{i:07d}')['payments']]\n"
              "print('COUNT', len(pays), len(set(pays)))\n")

    def wal_bytes():
        return sum(f.stat().st_size for f in data.glob("shards/shard-*/wal/*") if f.is_file())

    proc = subprocess.Popen([sys.executable, "-c", first], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while wal_bytes() < 100_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the importer and its whole local Ray, shards included
    proc.wait()
    time.sleep(1)
    done = subprocess.run([sys.executable, "-c", second], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    applied = int(out.split(": ", 1)[1].split(" applied")[0])
    assert 0 < applied < n, out  # resumed: the second run did only what the first had not
    total, distinct = (int(x) for x in out.split("COUNT", 1)[1].split())
    assert total == distinct == n


async def test_refused_rows_survive_a_lost_quarantine_write(iapi, igrid, tmp_path):
    """A row the shard refused is in the shard's state too: if the importer died before writing it to the
    quarantine file, the quarantine still shows it, its row read again from the file (and written back)."""
    from grid.imports.importer import Importer

    imp = Importer(igrid, igrid.data_dir)
    path = tmp_path / "refused.csv"
    path.write_text("sp,ts,wh\nS00000005,2026-01-12T00:30:00Z,5\n")  # not an interval start: the shard refuses
    rcpt = await imp.import_file("interval-wh", path)
    assert rcpt.quarantined == 1
    qfile = Path(igrid.data_dir) / "imports" / "quarantine" / "interval-wh.jsonl"
    kept = [line for line in qfile.read_text().splitlines() if "refused.csv" not in line]
    qfile.write_text("".join(k + "\n" for k in kept))  # as if the write never happened
    entries = [e for e in await imp.quarantined("interval-wh") if e["stream"].startswith("refused.csv")]
    row = {"sp": "S00000005", "ts": "2026-01-12T00:30:00Z", "wh": "5"}
    assert [(e["reason"], e["field"], e["row"]) for e in entries] == [("refused", "usage.start", row)]
    assert "refused.csv" in qfile.read_text()  # recovered into the quarantine file: replayable


async def test_push_spreadsheet_and_ods(iapi, igrid, tmp_path):
    import zipfile

    xlsxwriter = pytest.importorskip("xlsxwriter")
    p = tmp_path / "projects.xlsx"
    wb = xlsxwriter.Workbook(str(p))
    ws = wb.add_worksheet("Projects")
    ws.write(0, 0, "Efficiency projects (customer entry)")
    ws.write_row(2, 0, ["Account", "Paid On", "Amount", "Method"])
    ws.write_row(3, 0, ["A00000008", "03/01/2026", 12.5, "Check"])
    wb.close()
    r = await iapi.post("/v1/imports/payments", data=p.read_bytes(), headers={
        **auth("operator"), "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"})
    assert r.status == 200, await r.text()
    c8 = await (await iapi.get("/v1/customers/C0000008", headers=auth("operator"))).json()
    assert {"date": "2026-03-01", "amount_cents": 1250, "method": "check"}.items() <= c8["payments"][-1].items()
    # an OpenDocument spreadsheet, written by hand (the format is a zip of XML)
    def ods_row(values):
        cell = "<table:table-cell office:value-type='string'><text:p>{}</text:p></table:table-cell>"
        return "<table:table-row>" + "".join(cell.format(v) for v in values) + "</table:table-row>"

    cells = ods_row(["Account", "Paid On", "Amount", "Method"]) + ods_row(["A00000009", "03/02/2026", "7.25", "Card"])
    content = ('<?xml version="1.0" encoding="UTF-8"?><office:document-content '
               'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
               'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
               'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
               f'<office:body><office:spreadsheet><table:table table:name="Sheet1">{cells}</table:table>'
               '</office:spreadsheet></office:body></office:document-content>')
    manifest = ('<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
                'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                '<manifest:file-entry manifest:full-path="/" '
                'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                '</manifest:manifest>')
    ods = tmp_path / "pay.ods"
    with zipfile.ZipFile(ods, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", manifest)
    r = await iapi.post("/v1/imports/payments", data=ods.read_bytes(), headers={
        **auth("operator"), "Content-Type": "application/vnd.oasis.opendocument.spreadsheet"})
    assert r.status == 200, await r.text()
    c9 = await (await iapi.get("/v1/customers/C0000009", headers=auth("operator"))).json()
    assert c9["payments"][-1]["amount_cents"] == 725


async def test_changed_file_writes_only_what_changed_and_late_rows_correct(iapi, igrid, tmp_path):
    from grid.imports.importer import Importer

    imp = Importer(igrid, igrid.data_dir)
    path = tmp_path / "day.csv"
    v1 = ["S00000010,2026-01-13T00:00:00Z,10", "S00000010,2026-01-13T01:00:00Z,11",
          "S00000010,2026-01-13T02:00:00Z,12", "S00000010,2026-01-13T03:00:00Z,13", "S00000010,oops"]
    path.write_text("sp,ts,wh\n" + "\n".join(v1) + "\n")
    first = await imp.import_file("interval-wh", path)
    assert (first.applied, first.quarantined) == (4, 1)
    q = [e for e in await imp.quarantined("interval-wh") if e["stream"].startswith("day.csv")]
    assert [(e["reason"], e["row"]) for e in q] == [("malformed", {"text": "S00000010,oops"})]
    # the file is rewritten in place: hour 2 changed, and a late reading corrects hour 1 at the end
    v2 = v1[:2] + ["S00000010,2026-01-13T02:00:00Z,999"] + v1[3:4] + ["S00000010,2026-01-13T01:00:00Z,111"]
    path.write_text("sp,ts,wh\n" + "\n".join(v2) + "\n")
    second = await imp.import_file("interval-wh", path)
    assert (second.applied, second.unchanged) == (2, 3), second.view()
    got = await usage_of(iapi, "C0000010", "S00000010")
    assert [got[f"2026-01-13T0{h}:00:00Z"] for h in range(4)] == [10, 111, 999, 13]
    again = await imp.import_file("interval-wh", path)  # dropped once more: nothing to do
    assert (again.applied, again.unchanged, again.quarantined) == (0, 0, 0)


async def test_push_after_a_clock_step_back_is_not_skipped(iapi, igrid, monkeypatch):
    """Unkeyed pushes are numbered by the clock: a restarted importer whose clock went back still numbers its
    next push past what the shards hold, so the rows are applied, not skipped as already seen."""
    import time as _time
    from types import SimpleNamespace

    from grid.imports import importer as importer_module
    from grid.imports.importer import Importer

    rows = [{"service_point_id": "S00000011", "start": "2026-01-21T00:00:00Z", "import_wh": 5}]
    first = await Importer(igrid, igrid.data_dir).push("customer-submeters", rows)
    assert first.applied == 1
    behind = SimpleNamespace(time_ns=lambda: 1, perf_counter=_time.perf_counter, monotonic=_time.monotonic,
                             time=_time.time)
    monkeypatch.setattr(importer_module, "time", behind)  # the new process's clock is far behind
    rows[0]["import_wh"] = 6
    again = await Importer(igrid, igrid.data_dir).push("customer-submeters", rows)
    assert (again.applied, again.skipped) == (1, 0)
    assert (await usage_of(iapi, "C0000011", "S00000011"))["2026-01-21T00:00:00Z"] == 6

