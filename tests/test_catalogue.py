"""User data under the data dir: the tariff catalogue, referential checks at the door, keys, durable writes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import auth

from grid.durable import durable_write
from grid.errors import ShardUnavailable, TariffError
from grid.tariffs import SHIPPED, TariffCatalogue, compile_checked, seed

OP = auth("operator")
TOU = json.loads((SHIPPED / "res-tou.json").read_text())


async def problem(r) -> dict:
    assert r.content_type == "application/problem+json", await r.text()
    return await r.json(content_type="application/problem+json")


def _flat(**extra) -> dict:
    return {"name": "Flat test", "energyratestructure": [[{"rate": "0.2"}]],
            "energyweekdayschedule": [[0] * 24] * 12, "energyweekendschedule": [[0] * 24] * 12, **extra}


# -- the catalogue lives in the grid's data dir ------------------------------------------------------------------
async def test_put_tariff_writes_into_the_data_dir_not_the_checkout(api, grid):
    r = await api.put("/v1/tariffs/flat-datadir", json=_flat(contextgrid={"timezone": "America/Denver"}),
                      headers=OP)
    assert r.status == 200, await r.text()
    assert (await r.json())["timezone_source"] == "tariff"
    assert (Path(grid.data_dir) / "tariffs" / "flat-datadir.json").is_file()
    assert not (SHIPPED / "flat-datadir.json").exists()
    r = await api.delete("/v1/tariffs/flat-datadir", headers=OP)
    assert r.status == 204, await r.text()
    assert (await api.get("/v1/tariffs/flat-datadir", headers=OP)).status == 404


async def test_tariff_without_zone_takes_the_grids_and_says_so(api, grid):
    r = await api.put("/v1/tariffs/flat-nozone", json=_flat(), headers=OP)
    assert r.status == 200, await r.text()
    out = await r.json()
    assert out["timezone"] == grid.config.timezone and out["timezone_source"] == "grid"
    assert grid.config.timezone in out["notes"][0]
    stored = await (await api.get("/v1/tariffs/flat-nozone", headers=OP)).json()
    assert stored["contextgrid"]["timezone"] == grid.config.timezone
    assert (await api.delete("/v1/tariffs/flat-nozone", headers=OP)).status == 204


@pytest.mark.parametrize("body, field", [
    ({}, "energyratestructure"),
    ({"items": [TOU]}, "items"),
    ({"name": "taxes only", "contextgrid": {"taxes": [{"code": "STATE", "percent": "5"}]}}, "energyratestructure"),
])
async def test_tariff_that_bills_nothing_is_422(api, body, field):
    r = await api.put("/v1/tariffs/empty-one", json=body, headers=OP)
    assert r.status == 422
    assert (await problem(r))["field"] == field
    assert (await api.get("/v1/tariffs/empty-one", headers=OP)).status == 404


async def test_inline_tariff_that_bills_nothing_is_422(api):
    body = {"tariff": {}, "start": "2026-07-01", "end": "2026-07-02", "import_wh": [1] * 24}
    r = await api.post("/v1/bills/calculate", json=body, headers=OP)
    assert r.status == 422 and (await problem(r))["field"] == "energyratestructure"


async def test_delete_tariff_in_use_is_409_and_unknown_is_404(api):
    r = await api.delete("/v1/tariffs/res-tou", headers=OP)  # the session grid's accounts bill under it
    assert r.status == 409 and (await problem(r))["field"] == "id"
    assert (await api.get("/v1/tariffs/res-tou", headers=OP)).status == 200
    assert (await api.delete("/v1/tariffs/no-such-tariff", headers=OP)).status == 404
    assert (await api.delete("/v1/tariffs/res-tiered", headers=auth("agent"))).status == 403


def test_seed_copies_once_and_a_deleted_tariff_stays_deleted(tmp_path):
    cat = TariffCatalogue(seed(tmp_path / "tariffs"))
    assert cat.ids() == sorted(p.stem for p in SHIPPED.glob("*.json"))
    cat.delete("public-flat")
    cat.put("mine", _flat(contextgrid={"timezone": "America/Chicago"}))
    seed(tmp_path / "tariffs")  # the next start
    assert "public-flat" not in cat.ids() and "mine" in cat.ids()


def test_an_operators_own_catalogue_gets_no_shipped_tariffs(tmp_path):
    """Regression: ``--tariffs DIR`` pointing at an operator's catalogue had every shipped tariff added to it,
    so a tariff the operator had removed came back (and the bill run billed accounts it should report)."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "res-tou.json").write_bytes((SHIPPED / "res-tou.json").read_bytes())
    cat = TariffCatalogue(seed(own))
    assert cat.ids() == ["res-tou"]
    seed(own)  # the next start
    assert TariffCatalogue(own).ids() == ["res-tou"]


def test_compile_checked_names_the_list_wrapper():
    with pytest.raises(TariffError) as exc:
        compile_checked({"items": [TOU]}, "x")
    assert exc.value.field == "items"
    assert compile_checked(_flat(), "x", "Europe/Paris").timezone == "Europe/Paris"


# -- referential checks at the door -----------------------------------------------------------------------------
def _ctx(plan="res-tou", sp="SP-REF-1", status="active") -> dict:
    return {"name": "Ref Co", "kind": "commercial",
            "accounts": [{"account_id": "A-REF-1", "rate_plan_id": plan, "status": status,
                          "service_points": [{"service_point_id": sp, "interval_minutes": 60}]}]}


async def test_put_with_unknown_rate_plan_is_refused_naming_the_field(api):
    r = await api.put("/v1/customers/X0000201", json=_ctx(plan="no-such-plan"), headers=OP)
    assert r.status == 422
    p = await problem(r)
    assert p["field"] == "accounts[0].rate_plan_id" and "no-such-plan" in p["detail"]
    assert (await api.get("/v1/customers/X0000201", headers=OP)).status == 404  # nothing written


async def test_closed_account_may_keep_a_retired_plan(api):
    r = await api.put("/v1/customers/X0000202", json=_ctx(plan="retired-2019", sp="SP-REF-2", status="closed"),
                      headers=OP)
    assert r.status == 200, await r.text()


async def test_service_point_of_another_customer_is_409_across_shards(api, grid):
    ids = [f"X{n:07d}" for n in range(300, 400)]
    first = ids[0]
    other = next(c for c in ids if grid.shard_index(c) != grid.shard_index(first))
    same = next(c for c in ids[1:] if grid.shard_index(c) == grid.shard_index(first))
    r = await api.put(f"/v1/customers/{first}", json=_ctx(sp="SP-XSHARD-1"), headers=OP)
    assert r.status == 200, await r.text()
    for cid in (other, same):
        r = await api.put(f"/v1/customers/{cid}", json=_ctx(sp="SP-XSHARD-1"), headers=OP)
        assert r.status == 409, (cid, await r.text())
        p = await problem(r)
        assert p["field"] == "accounts[0].service_points[0].service_point_id" and first in p["detail"]
        assert (await api.get(f"/v1/customers/{cid}", headers=OP)).status == 404
    r = await api.put(f"/v1/customers/{first}", json=_ctx(sp="SP-XSHARD-1"), headers=OP)  # its own: fine
    assert r.status == 200


# -- keys: the demo keeps them across restarts --------------------------------------------------------------------
def test_demo_keys_are_minted_once_and_kept(grid, tmp_path):
    from grid.cli import _demo_keys
    from grid.gateway.auth import KeyStore

    path = tmp_path / "keys.yaml"
    lines = _demo_keys(grid, path)
    assert [line.split(" key:")[0] for line in lines] == ["operator", "residential customer", "commercial customer"]
    before = path.read_bytes()
    keys = KeyStore.load(path)
    for line in lines:
        key = line.split(": ")[1].split()[0]
        p = keys.authenticate(f"Bearer {key}")
        if "customer" in line:
            cid = line.rsplit("(", 1)[1].rstrip(")")
            assert p.role == "customer" and p.customers == {cid}
            assert grid.get(cid)["kind"] == line.split()[0]
    again = _demo_keys(grid, path)  # a restart
    assert path.read_bytes() == before and "kept" in again[0]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# -- one durable write -------------------------------------------------------------------------------------------
def test_durable_write_replaces_whole_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "sub" / "state.json"
    durable_write(path, b"old")
    durable_write(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new" and oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(path.parent) == ["state.json"]


def test_durable_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    durable_write(path, b"old")
    with pytest.raises(ShardUnavailable):
        durable_write(path / "under-a-file", b"x")  # the parent is a file: the disk refuses
    (tmp_path / "dir-target").mkdir()
    with pytest.raises(ShardUnavailable):
        durable_write(tmp_path / "dir-target", b"x")  # rename over a directory fails after the temp is written
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["dir-target", "state.json"]


def test_keys_cli_appends_to_an_existing_file(tmp_path):
    from grid.cli import main

    path = tmp_path / "keys.yaml"
    assert main(["keys", "--file", str(path), "--id", "a", "--role", "operator"]) == 0
    assert main(["keys", "--file", str(path), "--id", "b", "--role", "customer", "--customer", "C1"]) == 0
    entries = yaml.safe_load(path.read_text())["keys"]
    assert [e["id"] for e in entries] == ["a", "b"] and entries[1]["customers"] == ["C1"]
