"""Shared fixtures: hypothesis profiles, one Ray instance per test session."""
from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for the whole session (about 5 s), shut it down at the end."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, namespace="contextgrid-tests",
                 log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def grid(ray_session, tmp_path_factory):
    """A two-shard grid holding 40 small hand-made contexts (see tests/factories.py)."""
    from factories import populate

    from grid.cluster import Grid

    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("grid")), shards=2, namespace="cg-test-main")
    g.test_ids = populate(g, 40)
    yield g
    g.shutdown()


KEYS = {"operator": "op-key-0123456789", "agent": "agent-key-0123456789", "customer": "cust-key-0123456789"}
OWN_CUSTOMER = "C0000001"


@pytest.fixture(scope="session")
def keystore():
    from grid.gateway.auth import KeyStore, digest

    return KeyStore([
        {"id": "ops", "role": "operator", "sha256": digest(KEYS["operator"])},
        {"id": "desk", "role": "agent", "sha256": digest(KEYS["agent"])},
        {"id": "portal", "role": "customer", "sha256": digest(KEYS["customer"]), "customers": [OWN_CUSTOMER]},
    ])


def auth(role: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@contextlib.contextmanager
def grid_with_sources(tmp_path_factory, label: str, sources=(), customers: int = 0):
    """A module's own 2-shard grid (namespace ``cg-test-<label>``) whose data dir holds these source
    definitions, each written as ``sources/<name>.yaml``, with ``customers`` generated customers loaded."""
    import yaml
    from factories import populate

    from grid.cluster import Grid

    root = tmp_path_factory.mktemp(label)
    (root / "sources").mkdir()
    for spec in sources:
        (root / "sources" / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    g = Grid.start(data_dir=str(root), shards=2, namespace=f"cg-test-{label}")
    if customers:
        populate(g, customers)
    try:
        yield g
    finally:
        g.shutdown()


@contextlib.asynccontextmanager
async def gateway(grid, keystore, config=None):
    """An aiohttp test client on a real loopback server in front of ``grid`` (for a module's own grid)."""
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(grid, config, keys=keystore))) as client:
        yield client


@pytest.fixture(scope="session")
async def api(grid, keystore):
    """An aiohttp test client on a real loopback server in front of the session grid."""
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app
    from grid.gateway.config import GatewayConfig

    app = create_app(grid, GatewayConfig(max_body_bytes=64 * 1024), keystore)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory):
    """A small generated base: 150 customers, 2 months of hourly data, legacy bills with injected errors."""
    from grid.synth import generate_base

    out = tmp_path_factory.mktemp("base")
    generate_base(out, 150, seed=7, months=2, chunk_customers=50, bill_error_rate=0.05)
    return out


@pytest.fixture(scope="session")
def base_grid(ray_session, base_dir, tmp_path_factory):
    """A two-shard grid holding the generated base, loaded the way `contextgrid load` does."""
    from grid.cluster import Grid

    g = Grid.start(data_dir=str(tmp_path_factory.mktemp("basegrid")), shards=2, namespace="cg-test-base")
    ticks = []
    g.loaded = g.load(base_dir, progress=ticks.append)
    g.ticks = ticks
    yield g
    g.shutdown()


@pytest.fixture(scope="session")
async def base_api(base_grid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app

    async with TestClient(TestServer(create_app(base_grid, keys=keystore))) as client:
        yield client


async def follow(client, response, headers, seconds: float = 60.0) -> dict:
    """Poll the job a 202/200 response points at (``Location``) until it leaves ``running``."""
    import asyncio

    assert response.status in (200, 202), await response.text()
    url = response.headers["Location"]
    for _ in range(int(seconds / 0.05)):
        job = await (await client.get(url, headers=headers)).json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} still running after {seconds} s")


def free_port() -> int:
    """A loopback port free now (for servers whose URL must be known before they start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright drives it instead of downloading its own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
async def browser():
    """A headless chromium for one test module (the browser tests)."""
    pw = pytest.importorskip("playwright.async_api")
    async with pw.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        await b.close()
