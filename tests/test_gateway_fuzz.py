"""Contract fuzzing: schemathesis (pinned in pyproject) over ``api/openapi.yaml`` against a live gateway.

One run with an operator key and one with a customer key, every check schemathesis has (server errors, status
codes, content types and headers the contract does not declare, response schemas, negative data rejection,
positive data acceptance, unsupported methods with ``Allow``, ignored auth, ...), and the stateful phase over
the links the contract declares. The gateway serves its own small one-shard grid so the fuzzer's writes
(tariffs, rule reloads, customers) touch nothing the other tests read. ``post_shards`` is left out: scaling to
64 shards is a legitimate operator request that this machine cannot host.

Budget: ``CONTEXTGRID_FUZZ_SECONDS`` per key (default 75 s), so the file stays within ~3 minutes of CI.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KEYS, OWN_CUSTOMER
from live_gateway import LiveGateway

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "api" / "openapi.yaml"
CONFIG = Path(__file__).with_name("schemathesis.toml")  # why each relaxed status is relaxed, per operation
SECONDS = int(os.environ.get("CONTEXTGRID_FUZZ_SECONDS", "75"))
EXAMPLES = int(os.environ.get("CONTEXTGRID_FUZZ_EXAMPLES", "25"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_gateway(ray_session, keystore, tmp_path_factory):
    from factories import populate

    from grid.cluster import Grid
    from grid.gateway.app import create_app
    from grid.gateway.config import GatewayConfig
    from grid.gateway.limits import LimitsConfig

    tmp = tmp_path_factory.mktemp("fuzz")
    rules = tmp / "rules"
    shutil.copytree(ROOT / "rules", rules)
    g = Grid.start(data_dir=str(tmp / "grid"), shards=1, namespace="cg-test-fuzz")
    populate(g, 6)
    # no rate limit here: the fuzzer is one client sending thousands of requests a minute (tests/test_gateway_limits.py
    # holds the limits themselves)
    config = GatewayConfig(max_body_bytes=64 * 1024, tariff_dir=str(rules / "tariffs"), rules_dir=str(rules),
                           limits=LimitsConfig(rates={}))
    try:
        with LiveGateway(lambda: create_app(g, config, keystore)) as gw:
            yield gw
    finally:
        g.shutdown()


def _schemathesis(url: str, key: str, report: Path, seconds: int) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = [str(exe), "--config-file", str(CONFIG), "run", str(SPEC), "--url", url, "-H", f"Authorization: Bearer {key}",
           "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(EXAMPLES), "--max-time", str(seconds), "--workers", "1",
           "--generation-deterministic", "--request-timeout", "20",
           "--exclude-operation-id", "post_shards", "--no-color",
           "--report", "junit", "--report-junit-path", str(report)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 120, cwd=report.parent)


def _summary(out: str) -> str:
    """The CLI's closing summary: operations, phases, failures by code, test-case counts."""
    at = out.rfind("SUMMARY")
    return out[at:].strip() if at >= 0 else out[-3000:]


@pytest.mark.parametrize("role", ["operator", "customer"])
def test_schemathesis_finds_nothing(fuzz_gateway, role, tmp_path):
    res = _schemathesis(fuzz_gateway.url, KEYS[role], tmp_path / f"{role}.xml", SECONDS)
    print(f"\n--- schemathesis, {role} key (own customer {OWN_CUSTOMER}) ---\n{_summary(res.stdout)}")
    assert res.returncode == 0, res.stdout[:20000] + res.stderr[-3000:]
    assert re.search(r"\d+ generated, \d+ passed", res.stdout), _summary(res.stdout)
