"""Legacy bills from the system of record: a grid whose base came without bills gets them, lines included, from
the billing database's bills table (logical decoding), and the bill run then finds exactly the generator's
injected errors against the bills the utility actually sent."""
from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import auth, follow
from postgres_server import new_database, postgres  # noqa: F401  (fixture)
from test_imports_grid import wait_for

SOURCES = Path(__file__).resolve().parents[1] / "sources"
PERIOD = "2026-11"
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest.fixture(scope="module")
def bills_grid(ray_session, postgres, tmp_path_factory):
    from grid.cluster import Grid
    from grid.synth import generate_base
    from grid.synth.sources import generate_sources
    from grid.synth.sources.billing import load_dump
    from grid.synth.writer import SCHEMAS

    base = tmp_path_factory.mktemp("billbase")
    generate_base(base, 80, seed=9, first_month=PERIOD, months=1, chunk_customers=40, bill_error_rate=0.15)
    generate_sources(base, meter_days=1)
    dsn = new_database(postgres)
    with psycopg.connect(dsn, autocommit=True) as c:
        load_dump(c, base / "feeds")
    bare = tmp_path_factory.mktemp("billbare") / "base"
    shutil.copytree(base, bare, ignore=shutil.ignore_patterns("feeds"))
    for part in (bare / "bills").glob("part-*.parquet"):  # the base knows no bill: they come from the database
        pq.write_table(SCHEMAS["bills"].empty_table(), part)
    root = tmp_path_factory.mktemp("billgrid")
    (root / "sources").mkdir()
    spec = yaml.safe_load((SOURCES / "billing-db-bills.yaml").read_text())
    spec["location"] = dsn
    (root / "sources" / "billing-db-bills.yaml").write_text(yaml.safe_dump(spec))
    g = Grid.start(data_dir=str(root), shards=2, namespace="cg-test-legacy-bills")
    g.load(bare)
    g.base, g.dsn = base, dsn
    yield g
    g.shutdown()


async def test_bill_run_reconciles_against_the_bills_imported_from_the_database(bills_grid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    with psycopg.connect(bills_grid.dsn) as c:
        n_bills = c.execute("SELECT count(*) FROM bills").fetchone()[0]
    async with TestClient(TestServer(create_app(bills_grid, keys=keystore))) as api:
        async def imported():
            r = await api.get("/v1/imports", headers=auth("operator"))
            src = next(s for s in (await r.json())["items"] if s["source"] == "billing-db-bills")
            return src if src["rows_applied"] == n_bills else None

        src = await wait_for(imported, seconds=60)
        assert src["rows_quarantined"] == 0
        r = await api.post("/v1/bill-runs", json={"period": PERIOD}, headers=auth("operator"))
        run = await follow(api, r, auth("operator"))
        report = run["report"]
        truth = pq.read_table(bills_grid.base / "truth" / "bill_errors.parquet").to_pylist()
        want = {t["account_id"] for t in truth if t["period_start"].isoformat()[:7] == PERIOD}
        assert want and {m["account_id"] for m in report["mismatches"]} == want
        assert report["counts"].get("missing_bill", 0) == 0  # every computed bill found the bill that was sent
        m = report["mismatches"][0]
        r = await api.get(f"/v1/customers/{m['customer_id']}/bills?period={PERIOD}&account_id={m['account_id']}",
                          headers=auth("operator"))
        [item] = (await r.json())["items"]
        assert item["legacy"]["lines"]  # the lines came through the database
