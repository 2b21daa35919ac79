"""Acknowledged writes survive a kill -9 of a shard and a full stop; retries apply once."""
import os
import signal
import threading
import time

import pytest
from factories import populate

from grid.cluster import Grid
from grid.errors import ShardUnavailable


@pytest.fixture
def fresh_grid(ray_session, tmp_path, request):
    grids = []

    def make(namespace_suffix="a", shards=2):
        g = Grid.start(data_dir=str(tmp_path), shards=shards, namespace=f"cg-{request.node.name[:30]}-{namespace_suffix}")
        grids.append(g)
        return g

    yield make
    for g in grids:
        g.shutdown()


def test_full_stop_and_restart_restores_identical_state(fresh_grid):
    g = fresh_grid("first")
    ids = populate(g, 30)
    for i, cid in enumerate(ids[:10]):
        g.patch(cid, {"attributes": {"n": i}, "notes": {"add": [{"text": f"n{i}"}]}})
        sp = f"S{int(cid[1:]):08d}"
        g.append_usage(cid, [{"service_point_id": sp, "start": "2026-10-02T07:00:00Z", "import_wh": 100 + i}])
    before = g.checksum()
    g.shutdown()
    g2 = fresh_grid("second")
    assert g2.checksum() == before
    assert sum(s["customers"] for s in g2.stats()) == 30
    assert g2.get(ids[3])["attributes"]["n"] == 3


def test_kill_9_during_writes_loses_no_acknowledged_write(fresh_grid):
    g = fresh_grid("kill")
    ids = populate(g, 12)
    victim_shard = g.shard_index(ids[0])
    victims = [c for c in ids if g.shard_index(c) == victim_shard]
    pid = g.stats()[victim_shard]["pid"]
    acked: list[tuple[str, str]] = []
    lock = threading.Lock()
    stop = time.monotonic() + 6

    def writer(w):
        i = 0
        while time.monotonic() < stop and i < 400:
            cid = victims[(w + i) % len(victims)]
            text = f"w{w}-{i}"
            for _ in range(100):  # the client retries with the same write id until acknowledged
                try:
                    g.write("patch", cid, {"notes": {"add": [{"text": text}]}}, write_id=text)
                    break
                except ShardUnavailable:
                    time.sleep(0.05)
            else:
                raise AssertionError(f"{text} never acknowledged")
            with lock:
                acked.append((cid, text))
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join()
    assert len(acked) > 20
    assert g.stats()[victim_shard]["pid"] != pid  # it really died and came back
    for cid in victims:
        texts = [n["text"] for n in g.get(cid)["notes"]]
        assert len(texts) == len(set(texts)), "a write was applied twice"
        want = {t for c, t in acked if c == cid}
        assert want <= set(texts), f"lost acknowledged writes on {cid}: {sorted(want - set(texts))[:5]}"


def test_same_idempotency_key_across_a_restart_applies_once(fresh_grid):
    g = fresh_grid("idem")
    [cid] = populate(g, 1)
    body = {"notes": {"add": [{"text": "pay by card"}]}}
    first = g.write("patch", cid, body, write_id="client-key-1")
    pid = g.stats()[g.shard_index(cid)]["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        try:
            again = g.write("patch", cid, body, write_id="client-key-1")
            break
        except ShardUnavailable:
            time.sleep(0.05)
    assert again["version"] == first["version"]
    assert [n["text"] for n in g.get(cid)["notes"]].count("pay by card") == 1
