"""The README's multi-node recipe, exercised: two Ray nodes on this machine, shards on both, one node lost."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from factories import context
from grid.gateway.auth import write_keys_file
from grid.partitions import partition_of

pytestmark = pytest.mark.cluster
BIN = Path(sys.executable).parent
KEY = "cluster-operator-key-0123"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method, url, body=None, timeout=15):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def _kill_group(p: subprocess.Popen) -> None:
    """SIGKILL a node's whole process group (raylet, workers): a node lost, not shut down."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(30)


def _wait(pred, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def two_nodes(tmp_path):
    # Ray token auth: every process of the cluster shares one token (as in production)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(24)}
    gcs = _port()
    tmp_a = Path(f"/tmp/cg-ray-a-{gcs}")
    tmp_b = Path(f"/tmp/cg-ray-b-{gcs}")  # short: Ray's socket paths must stay under 108 bytes
    ray = str(BIN / "ray")
    common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen([ray, "start", "--head", f"--port={gcs}", f"--temp-dir={tmp_a}",
                             "--include-dashboard=false", *common], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [head]
    try:
        _wait(lambda: subprocess.run([ray, "status", f"--address=127.0.0.1:{gcs}"], env=env,
                                     capture_output=True).returncode == 0, 60, "the head node")
        worker = subprocess.Popen([ray, "start", f"--address=127.0.0.1:{gcs}", f"--temp-dir={tmp_b}", *common],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        procs.append(worker)
        _wait(lambda: subprocess.run([ray, "status", f"--address=127.0.0.1:{gcs}"], env=env, capture_output=True,
                                     text=True).stdout.count("node_") >= 2, 60, "the second node")
        yield env, f"127.0.0.1:{gcs}", worker, procs
    finally:
        for p in reversed(procs):
            _kill_group(p)
        shutil.rmtree(tmp_a, ignore_errors=True)
        shutil.rmtree(tmp_b, ignore_errors=True)


def test_two_node_cluster_keeps_serving_when_a_node_is_lost(two_nodes, tmp_path):
    env, address, worker, procs = two_nodes
    keys = tmp_path / "keys.yaml"
    write_keys_file(keys, [("ops", KEY, "operator", [])])
    port = _port()
    serve = subprocess.Popen([str(BIN / "contextgrid"), "serve", "--address", address, "--data-dir",
                              str(tmp_path / "data"), "--shards", "2", "--port", str(port), "--keys", str(keys)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    procs.append(serve)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: _http("GET", f"{url}/v1/health")[0] == 200, 90, "the gateway")

    ids = []
    for i in range(30):
        cid, body = context(i)
        status, _, _ = _http("PUT", f"{url}/v1/customers/{cid}", body)
        assert status == 200
        ids.append(cid)
    status, table, _ = _http("GET", f"{url}/v1/admin/shards")
    assert status == 200
    nodes = {s["node_id"] for s in table["shards"]}
    assert len(nodes) == 2, f"the shards should be spread over both nodes: {table['shards']}"
    by_shard: dict[int, list[str]] = {}
    for cid in ids:
        by_shard.setdefault(table["owner"][partition_of(cid)], []).append(cid)
        assert _http("GET", f"{url}/v1/customers/{cid}")[0] == 200

    _kill_group(worker)  # the second node dies at once, with its raylet and its shard actor
    seen = {}
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for shard, cids in by_shard.items():
            status, body, headers = _http("PATCH", f"{url}/v1/customers/{cids[0]}",
                                          {"notes": {"add": [{"text": "after node loss"}]}})
            assert status in (200, 503), body
            if status == 503:
                assert headers.get("Retry-After")
            seen.setdefault(shard, set()).add(status)
        time.sleep(0.5)
    # one shard lived on the surviving node and never stopped serving; the other answered 503 while it was
    # gone and, because both "nodes" share this machine's disk, came back on the survivor from its WAL
    assert any(statuses == {200} for statuses in seen.values())
    status, health, _ = _http("GET", f"{url}/v1/health")
    assert status == 200
