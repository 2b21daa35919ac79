"""Rows a shard refuses always reach the quarantine with their row, even when the importer's own quarantine
write is lost (it died between the shard's acknowledgement and that write), and replay after the mapping is
fixed: pushed rows ride in the op and stay with the shard's refusal (through a shard restart), file rows are
read again at their position."""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
import yaml

from conftest import auth, gateway, grid_with_sources

# the cashiering export's mapping, with the wrong column for the account: the shard refuses every row
# ("no account INV-... on customer ...") because the check needs the customer's accounts
PAYMENTS = {"name": "cash", "kind": "folder", "location": "inbox/cash", "format": "csv", "pattern": "*.csv",
            "does": "payment", "identity": {"customer_id": "customer"},
            "fields": {"payment.account_id": "invoice", "payment.date": "paid",
                       "payment.amount_cents": {"column": "amount", "unit": "dollars"}}}


@pytest.fixture(scope="module")
def qgrid(ray_session, tmp_path_factory):
    with grid_with_sources(tmp_path_factory, "quarantine", customers=6) as g:
        yield g


@pytest.fixture(scope="module")
async def qapi(qgrid, keystore):
    async with gateway(qgrid, keystore) as client:
        yield client


def _write_source(grid, name: str, **fields) -> None:
    spec = {**PAYMENTS, "name": name, "location": f"inbox/{name}", "fields": {**PAYMENTS["fields"], **fields}}
    (Path(grid.data_dir) / "sources" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _lose_refused_writes(api, monkeypatch):
    """The importer's write of shard-refused rows is lost, as when it dies right after the shard's ack."""
    from grid.gateway.imports import IMPORTER

    q = api.server.app[IMPORTER].quarantine
    real = q.add
    monkeypatch.setattr(q, "add", lambda source, entries: real(source, [e for e in entries
                                                                      if e["reason"] != "refused"]))


async def _quarantine(api, name: str) -> dict:
    for _ in range(400):  # a shard restarting answers 503 for a moment
        r = await api.get(f"/v1/imports/{name}/quarantine", headers=auth("operator"))
        if r.status == 200:
            return await r.json()
        assert r.status == 503, await r.text()
        await asyncio.sleep(0.05)
    raise AssertionError("quarantine not readable")


async def _payments(api, cid: str) -> list[dict]:
    return (await (await api.get(f"/v1/customers/{cid}", headers=auth("operator"))).json())["payments"]


async def _fix_and_replay(api, grid, name: str) -> dict:
    _write_source(grid, name, **{"payment.account_id": "account"})
    r = await api.post("/v1/imports/reload", headers=auth("operator"))
    assert r.status == 200, await r.text()
    r = await api.post(f"/v1/imports/{name}/quarantine/replay", headers=auth("operator"))
    assert r.status == 200, await r.text()
    return await r.json()


async def test_pushed_rows_refused_with_the_quarantine_write_lost_replay_after_a_shard_restart(
        qapi, qgrid, monkeypatch):
    _write_source(qgrid, "cash-push")
    _lose_refused_writes(qapi, monkeypatch)
    rows = [{"customer": f"C{i:07d}", "account": f"A{i:08d}", "invoice": f"INV-{900 + i}",
             "paid": "2026-01-15", "amount": f"{i}0.25"} for i in range(1, 5)]
    r = await qapi.post("/v1/imports/cash-push", json=rows, headers=auth("operator"))
    assert r.status == 200, await r.text()
    assert [x["outcome"] for x in (await r.json())["rows"]] == ["quarantined"] * 4
    assert (Path(qgrid.data_dir) / "imports" / "quarantine" / "cash-push.jsonl").exists() is False
    monkeypatch.undo()  # the importer is back

    # both shards die and come back from their WAL: the refusals, rows included, come back with them
    for s in await qgrid.astats():
        os.kill(s["pid"], signal.SIGKILL)
    q = await _quarantine(qapi, "cash-push")
    assert q["total"] == 4
    items = sorted(q["items"], key=lambda e: e["row"]["customer"])
    assert [(e["row"], e["field"], e["reason"]) for e in items] == [(row, "payment.account_id", "refused")
                                                                     for row in rows]
    assert all("no account INV-" in e["detail"] for e in q["items"])

    rcpt = await _fix_and_replay(qapi, qgrid, "cash-push")
    assert (rcpt["applied"], rcpt["quarantined"]) == (4, 0)
    for i in range(1, 5):
        got = [p for p in await _payments(qapi, f"C{i:07d}") if p["account_id"] == f"A{i:08d}"]
        assert [(p["date"], p["amount_cents"]) for p in got] == [("2026-01-15", i * 1000 + 25)]
    assert (await _quarantine(qapi, "cash-push"))["total"] == 0
    # replayed rows do not come back from the shards' refusals
    assert (await _quarantine(qapi, "cash-push"))["total"] == 0


async def test_file_rows_refused_with_the_quarantine_write_lost_are_read_again_from_the_file(
        qapi, qgrid, monkeypatch):
    _write_source(qgrid, "cash-file")
    await qapi.post("/v1/imports/reload", headers=auth("operator"))
    _lose_refused_writes(qapi, monkeypatch)
    inbox = Path(qgrid.data_dir) / "inbox" / "cash-file"
    inbox.mkdir(parents=True, exist_ok=True)
    lines = ["customer,account,invoice,paid,amount"]
    lines += [f"C{i:07d},A{i:08d},INV-{700 + i},2026-02-0{i},{i}.50" for i in range(1, 6)]
    (inbox / ".part").write_text("\n".join(lines) + "\n")
    (inbox / ".part").rename(inbox / "cash.csv")

    async def refused():
        q = await _quarantine(qapi, "cash-file")
        return q if q["total"] == 5 else None

    for _ in range(400):
        q = await refused()
        if q:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the refusals never showed")
    monkeypatch.undo()
    # the rows come back as the file holds them (text cells), in order
    assert [e["row"] for e in sorted(q["items"], key=lambda e: e["offset"])] == [
        dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    rcpt = await _fix_and_replay(qapi, qgrid, "cash-file")
    assert (rcpt["applied"], rcpt["quarantined"]) == (5, 0)
    for _ in range(100):  # the gateway's near cache may hold the record read by the test before for its TTL (1 s)
        got = [p for p in await _payments(qapi, "C0000003") if p["date"] == "2026-02-03"]
        if got:
            break
        await asyncio.sleep(0.05)
    assert [(p["account_id"], p["amount_cents"]) for p in got] == [("A00000003", 350)]
    assert (await _quarantine(qapi, "cash-file"))["total"] == 0
