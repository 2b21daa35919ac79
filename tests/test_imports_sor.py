"""The billing system of record in PostgreSQL, end to end into a running grid over HTTP: the snapshot creates
the contexts, committed inserts, updates and deletes reach GET /v1/customers/{id}, and a restart of the
gateway resumes at the LSN the shards hold with nothing lost or doubled. A Green Button file pushed to the
import route lands in the service point's usage.
"""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import OWN_CUSTOMER, auth
from test_imports_grid import wait_for as until
from postgres_server import new_database, postgres  # noqa: F401  (fixture)

SOURCES = Path(__file__).resolve().parents[1] / "sources"
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest.fixture(scope="module")
def sor(ray_session, postgres, tmp_path_factory):
    from grid.cluster import Grid
    from grid.synth import generate_base
    from grid.synth.sources import generate_sources
    from grid.synth.sources.billing import load_dump

    base = tmp_path_factory.mktemp("sorbase")
    generate_base(base, 40, seed=5, first_month="2026-11", months=1, chunk_customers=40)
    generate_sources(base, meter_days=1)
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as c:
        load_dump(c, base / "feeds")
    root = tmp_path_factory.mktemp("sorgrid")
    (root / "sources").mkdir()
    g = Grid.start(data_dir=str(root), shards=2, namespace="cg-test-sor")
    g.dsn, g.base, g.root = dsn, base, root
    yield g
    g.shutdown()


def _source(grid, name: str, **changes) -> None:
    spec = yaml.safe_load((SOURCES / f"{name}.yaml").read_text())
    spec["location"] = grid.dsn
    spec.update(changes)
    (grid.root / "sources" / f"{name}.yaml").write_text(yaml.safe_dump(spec))


async def _app(grid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    client = TestClient(TestServer(create_app(grid, keys=keystore)))
    await client.start_server()
    return client


async def _ctx(api, cid):
    r = await api.get(f"/v1/customers/{cid}", headers=auth("operator"))
    return await r.json() if r.status == 200 else None


def _sql(grid, *statements):
    with psycopg.connect(grid.dsn, autocommit=True) as c:
        for s in statements:
            c.execute(s)


async def test_snapshot_then_committed_changes_reach_the_context_and_a_restart_loses_nothing(sor, keystore,
                                                                                             monkeypatch):
    from grid.imports.readers.postgres import PostgresReader

    # the first gateway dies after each batch is durable but before the slot moves: confirm() never runs
    monkeypatch.setattr(PostgresReader, "confirm", lambda self, position: None)
    with psycopg.connect(sor.dsn) as c:
        numbers = [r[0] for r in c.execute("SELECT customer_number FROM customers ORDER BY 1")]
        acct = c.execute("SELECT account_number, customer_number FROM accounts WHERE status = 'A' "
                         "ORDER BY 1 LIMIT 1").fetchone()
    _source(sor, "billing-db-customers")
    api = await _app(sor, keystore)
    try:
        for cid in (numbers[0], numbers[-1]):
            assert await until(lambda: _ctx(api, cid))
        assert len(await sor.alist({}, None, 1000)) == len(numbers)  # every snapshot row, once
        _source(sor, "billing-db-accounts")
        assert (await api.post("/v1/imports/reload", headers=auth("operator"))).status == 200

        async def has_account():
            ctx = await _ctx(api, acct[1])
            return ctx if ctx and any(a["account_id"] == acct[0] for a in ctx["accounts"]) else None

        ctx = await until(has_account)
        assert next(a for a in ctx["accounts"] if a["account_id"] == acct[0])["status"] == "active"

        _sql(sor, f"UPDATE customers SET name = 'Renamed At Source' WHERE customer_number = '{numbers[1]}'",
             "INSERT INTO customers (customer_number, name, customer_type, updated_at) "
             "VALUES ('C0900001', 'Brand New Customer', 'C', now())",
             f"DELETE FROM accounts WHERE account_number = '{acct[0]}'")

        async def changed():
            a, b, c = await _ctx(api, numbers[1]), await _ctx(api, "C0900001"), await _ctx(api, acct[1])
            closed = c and next(x for x in c["accounts"] if x["account_id"] == acct[0])["status"] == "closed"
            return a and a["name"] == "Renamed At Source" and b and b["kind"] == "commercial" and closed

        assert await until(changed)
    finally:
        await api.close()

    # down: the source keeps committing; back up: resume at the shards' LSN, only the new changes apply (the
    # slot, left behind, re-delivers the old ones: the shards skip them) and the slot catches up
    monkeypatch.undo()
    with psycopg.connect(sor.dsn) as c:
        behind = c.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                           "WHERE slot_name = 'contextgrid_billing_db_customers'").fetchone()[0]
    _sql(sor, f"UPDATE customers SET name = 'Renamed While Down' WHERE customer_number = '{numbers[2]}'",
         "INSERT INTO customers (customer_number, name, customer_type, updated_at) "
         "VALUES ('C0900002', 'Arrived While Down', 'R', now())")
    api = await _app(sor, keystore)
    try:
        async def caught_up():
            a, b = await _ctx(api, numbers[2]), await _ctx(api, "C0900002")
            return a and a["name"] == "Renamed While Down" and b

        assert await until(caught_up)
        r = await api.get("/v1/imports", headers=auth("operator"))
        src = {s["source"]: s for s in (await r.json())["items"]}
        assert src["billing-db-customers"]["rows_applied"] == 2  # not the snapshot again, not the old changes
        assert src["billing-db-customers"]["last_position"]["stream"].startswith("pg:")
        assert len(await sor.alist({}, None, 1000)) == len(numbers) + 2
        with psycopg.connect(sor.dsn) as c:
            slot = c.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                             "WHERE slot_name = 'contextgrid_billing_db_customers'").fetchone()[0]
        from grid.imports.readers.postgres import lsn_int

        assert lsn_int(behind) < lsn_int(slot) == src["billing-db-customers"]["last_position"]["offset"]
    finally:
        await api.close()


async def test_green_button_push_lands_in_the_service_point_usage(sor, keystore):
    from grid.imports.espi_export import encode_usage

    _source(sor, "greenbutton")
    spec = yaml.safe_load((sor.root / "sources" / "greenbutton.yaml").read_text())
    spec["kind"] = "push"
    assert spec["customer_entry"] is True
    (sor.root / "sources" / "greenbutton.yaml").write_text(yaml.safe_dump(spec))
    api = await _app(sor, keystore)
    try:
        cid = "C0910001"
        body = {"customer_id": cid, "name": "Green Button Home", "kind": "residential",
                "accounts": [{"account_id": "A09100001", "status": "active", "rate_plan_id": "res-tiered",
                              "service_points": [{"service_point_id": "S09100001", "interval_minutes": 60,
                                                  "premise_address": "1 Solar Way, Fresno, CA 93650",
                                                  "has_solar": True}]}]}
        r = await api.put(f"/v1/customers/{cid}", json=body, headers=auth("operator"))
        assert r.status in (200, 201), await r.text()
        items = [{"service_point_id": "UP-PORTAL-1", "start": f"2026-11-02T{h:02d}:00:00Z", "import_wh": 100 + h,
                  "export_wh": 7 * h} for h in range(24)]
        xml = encode_usage({"customer_id": "portal", "month": "2026-11", "items": items})
        r = await api.post("/v1/imports/greenbutton?service_point_id=S09100001", data=xml,
                           headers={**auth("operator"), "Content-Type": "application/atom+xml"})
        assert r.status == 200, await r.text()
        assert (await r.json())["applied"] == 24
        r = await api.get(f"/v1/customers/{cid}/usage", params={"month": "2026-11"}, headers=auth("operator"))
        got = {i["start"]: (i["import_wh"], i["export_wh"]) for i in (await r.json())["items"] if i["import_wh"]}
        assert got == {i["start"]: (i["import_wh"], i["export_wh"]) for i in items}
        r = await api.post("/v1/imports/greenbutton", data=b"<!DOCTYPE x [<!ENTITY a 'b'>]><feed/>",
                           headers={**auth("operator"), "Content-Type": "application/xml"})
        assert r.status == 422 and (await r.json())["field"] == "body"

        # "Upload My Data": a customer key may push its own Green Button file, never someone else's
        own = {**body, "customer_id": OWN_CUSTOMER, "accounts": [{**body["accounts"][0], "account_id": "A09100002",
                                                                  "service_points": [{
                                                                      **body["accounts"][0]["service_points"][0],
                                                                      "service_point_id": "S09100002"}]}]}
        r = await api.put(f"/v1/customers/{OWN_CUSTOMER}", json=own, headers=auth("operator"))
        assert r.status in (200, 201), await r.text()
        mine = encode_usage({"customer_id": "portal", "month": "2026-11", "items": [
            {**i, "import_wh": i["import_wh"] + 1000} for i in items]})
        r = await api.post("/v1/imports/greenbutton?service_point_id=S09100002", data=mine,
                           headers={**auth("customer"), "Content-Type": "application/atom+xml"})
        assert r.status == 200 and (await r.json())["applied"] == 24
        r = await api.post("/v1/imports/greenbutton?service_point_id=S09100001", data=mine,
                           headers={**auth("customer"), "Content-Type": "application/atom+xml"})
        assert r.status == 200
        receipt = await r.json()
        assert receipt["applied"] == 0 and receipt["rejected"] == 24
        r = await api.get(f"/v1/customers/{cid}/usage", params={"month": "2026-11"}, headers=auth("operator"))
        assert {i["start"]: (i["import_wh"], i["export_wh"]) for i in (await r.json())["items"]
                if i["import_wh"]} == {i["start"]: (i["import_wh"], i["export_wh"]) for i in items}  # untouched
    finally:
        await api.close()


async def test_shard_killed_mid_stream_no_commit_lost_or_doubled(sor, keystore):
    """kill -9 of a shard while payments commit in PostgreSQL: every payment lands once."""
    import os
    import signal

    _source(sor, "billing-db-customers")
    _source(sor, "billing-db-accounts")
    _source(sor, "billing-db-payments", options={"table": "payments", "mode": "logical", "interval_ms": 20})
    with psycopg.connect(sor.dsn) as c:
        accounts = c.execute("SELECT a.account_number, a.customer_number FROM accounts a WHERE status = 'A' "
                             "ORDER BY 1 LIMIT 5").fetchall()
    api = await _app(sor, keystore)
    try:
        async def has_accounts():
            for acct, cid in accounts:
                ctx = await _ctx(api, cid)
                if not ctx or not any(a["account_id"] == acct for a in ctx["accounts"]):
                    return None
            return True

        assert await until(has_accounts, seconds=60)

        async def payments(cid):
            return [p["payment_id"] for p in (await _ctx(api, cid))["payments"]]

        before = {cid: len(await payments(cid)) for _, cid in accounts}
        pid = next(s["pid"] for s in await sor.astats() if s["shard"] == 1)
        async with await psycopg.AsyncConnection.connect(sor.dsn, autocommit=True) as c:
            for t in range(30):
                async with c.transaction():
                    for k in range(10):
                        acct, _ = accounts[(t * 10 + k) % 5]
                        await c.execute("INSERT INTO payments VALUES (%s, %s, '2026-11-25', %s, 'web', now())",
                                        (f"PK{t:03d}{k}", acct, 100 + t * 10 + k))
                if t == 10:
                    os.kill(pid, signal.SIGKILL)  # a shard dies while commits keep coming
                await asyncio.sleep(0.02)

        async def all_landed():
            got = {cid: await payments(cid) for _, cid in accounts}
            return got if sum(len(v) for v in got.values()) == sum(before.values()) + 300 else None

        got = await until(all_landed, seconds=120)
        for cid, ids in got.items():
            assert len(ids) == len(set(ids)) and len(ids) - before[cid] == 60  # once each, none lost
        assert next(s["pid"] for s in await sor.astats() if s["shard"] == 1) != pid  # it really restarted
    finally:
        await api.close()
