"""Damaged durable state stops the shard with an error naming the file; it never starts from partial state.

Through real shard actors on real files, and over HTTP: the stopped shard's customers answer 503 with
``Retry-After``, the operator's view (health with detail, the shard's stats) names the file, the other shard
goes on serving, and nothing is deleted.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import auth
from factories import populate

from grid.cluster import Grid

H = auth("operator")


@pytest.fixture
def grids(ray_session, tmp_path, request):
    made = []

    def make(name: str) -> Grid:
        g = Grid.start(data_dir=str(tmp_path), shards=2, namespace=f"cg-stop-{request.node.name[:24]}-{name}",
                       wal_segment_bytes=2048)
        made.append(g)
        return g

    yield make
    for g in made:
        g.shutdown()


def _segments(tmp_path: Path, shard: int) -> list[Path]:
    return sorted((tmp_path / "shards" / f"shard-{shard}" / "wal").glob("*.wal"))


async def _answers(g: Grid, keystore, cid: str):
    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(g, keys=keystore))) as api:
        r = await api.get(f"/v1/customers/{cid}", headers=H)
        health = await (await api.get("/v1/health?detail=true", headers=H)).json()
        stopped = [s for s in health["shards"] if s.get("status") == "stopped"]
        return r.status, r.headers.get("Retry-After"), stopped, health


async def test_corrupt_closed_wal_segment_stops_its_shard_only(grids, tmp_path, keystore):
    g = grids("first")
    ids = populate(g, 40)
    for cid in ids:
        g.patch(cid, {"notes": {"add": [{"text": "x" * 200}]}})
    victim_shard = g.shard_index(ids[0])
    segs = _segments(tmp_path, victim_shard)
    assert len(segs) >= 3, "small segments: the log has closed ones"
    g.shutdown()
    raw = bytearray(segs[1].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    segs[1].write_bytes(bytes(raw))
    sizes = {p.name: p.stat().st_size for p in segs}

    g2 = grids("second")
    stopped = g2.stats()[victim_shard]
    assert stopped["status"] == "stopped" and stopped["file"] == str(segs[1])
    status, retry, stopped, health = await _answers(g2, keystore, ids[0])
    assert status == 503 and int(retry) > 0
    assert health["status"] == "degraded" and [s["file"] for s in stopped] == [str(segs[1])]
    assert str(segs[1]) in stopped[0]["error"]
    other = next(c for c in ids if g2.shard_index(c) != victim_shard)
    assert g2.get(other)["customer_id"] == other  # the healthy shard serves
    assert {p.name: p.stat().st_size for p in _segments(tmp_path, victim_shard)} == sizes  # nothing cut


async def test_no_verifiable_snapshot_stops_the_shard(grids, tmp_path, keystore):
    g = grids("first")
    ids = populate(g, 20)
    g.snapshot()
    g.shutdown()
    for shard in (0, 1):
        for manifest in (tmp_path / "shards" / f"shard-{shard}" / "snapshots").glob("*/manifest.json"):
            manifest.write_text("{")  # every snapshot of both shards fails to verify
    g2 = grids("second")
    assert [s["status"] for s in g2.stats()] == ["stopped", "stopped"]
    status, retry, stopped, _ = await _answers(g2, keystore, ids[0])
    assert status == 503 and int(retry) > 0 and len(stopped) == 2
    assert all("snapshot" in s["error"] and s["file"].endswith("snapshots") for s in stopped)


async def test_wal_that_does_not_reach_back_to_the_snapshot_stops_the_shard(grids, tmp_path, keystore):
    g = grids("first")
    ids = populate(g, 20)
    for round_ in range(4):  # four snapshots: the log is truncated behind the oldest of the three kept
        for cid in ids:
            g.patch(cid, {"notes": {"add": [{"text": f"{round_}" * 200}]}})
        g.snapshot()
    g.shutdown()
    shard_dir = tmp_path / "shards" / f"shard-{g.shard_index(ids[0])}"
    assert min(int(p.stem) for p in (shard_dir / "wal").glob("*.wal")) > 1
    shutil.rmtree(shard_dir / "snapshots")  # lost: the log alone does not start at the beginning
    g2 = grids("second")
    status, _, stopped, _ = await _answers(g2, keystore, ids[0])
    assert status == 503 and len(stopped) == 1
    assert "starts at seq" in stopped[0]["error"] and stopped[0]["file"].endswith("wal")
