"""Per-key rate limits (429 with Retry-After), per-key concurrency of heavy computations, at most N bill runs
at once (409), finished jobs forgotten after their keep time."""
import asyncio

import pytest
from conftest import auth, follow

from grid.errors import TooManyRequests
from grid.gateway.limits import Limiter, LimitsConfig


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_bucket_allows_the_burst_then_says_when_to_retry():
    clock = Clock()
    lim = Limiter(LimitsConfig(rates={"customer": (0.5, 3)}), clock=clock)
    for _ in range(3):
        lim.admit("k", "customer")
    with pytest.raises(TooManyRequests) as e:
        lim.admit("k", "customer")
    assert e.value.retry_after == 2  # one token every 2 s
    lim.admit("other", "customer")  # buckets are per key
    clock.t += 2.0
    lim.admit("k", "customer")


def test_roles_without_a_rate_are_not_limited():
    lim = Limiter(LimitsConfig(rates={"operator": None}))
    for _ in range(10_000):
        lim.admit("ops", "operator")


def test_heavy_slots_are_per_key_and_given_back():
    lim = Limiter(LimitsConfig(heavy_per_key=1))
    with lim.heavy("a"):
        with pytest.raises(TooManyRequests):
            with lim.heavy("a"):
                pass
        with lim.heavy("b"):
            pass
    with lim.heavy("a"):
        pass


@pytest.fixture
async def tight_api(grid, keystore):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app
    from grid.settings import Settings

    limits = LimitsConfig(rates={"customer": (1.0, 2), "operator": None}, heavy_per_key=1, bill_runs=1)
    async with TestClient(TestServer(create_app(grid, Settings(limits=limits), keystore))) as client:
        yield client


async def test_over_the_rate_is_429_with_retry_after(tight_api):
    h = auth("customer")
    statuses = [(await tight_api.get("/v1/customers/C0000001", headers=h)).status for _ in range(2)]
    assert statuses == [200, 200]
    r = await tight_api.get("/v1/customers/C0000001", headers=h)
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    body = await r.json(content_type="application/problem+json")
    assert body["retry_after"] >= 1 and body["field"] == "Authorization"
    r = await tight_api.get("/v1/customers/C0000001", headers=auth("operator"))  # another key, another bucket
    assert r.status == 200


async def test_a_key_with_a_computation_running_gets_429_for_the_next(tight_api):
    from grid.gateway.keys import LIMITS

    body = {"tariff": "res-tou", "start": "2026-01-01", "end": "2026-01-02", "import_wh": [1] * 24}
    with tight_api.server.app[LIMITS].heavy("ops"):  # one calculation of this key in flight
        r = await tight_api.post("/v1/bills/calculate", json=body, headers=auth("operator"))
        assert r.status == 429 and r.headers["Retry-After"] == "1"
    r = await tight_api.post("/v1/bills/calculate", json=body, headers=auth("operator"))
    assert r.status == 200, await r.text()


async def test_one_bill_run_at_a_time(tight_api):
    h = auth("operator")
    first = await tight_api.post("/v1/bill-runs", json={"period": "2026-01"}, headers=h)
    assert first.status == 202
    second = await tight_api.post("/v1/bill-runs", json={"period": "2026-02"}, headers=h)
    assert second.status == 409, await second.text()
    assert (await follow(tight_api, first, h))["state"] in ("done", "failed")
    third = await tight_api.post("/v1/bill-runs", json={"period": "2026-02"}, headers=h)
    assert third.status == 202
    await follow(tight_api, third, h)


async def test_finished_jobs_are_forgotten_after_their_keep_time():
    from grid.errors import NotFound
    from grid.gateway.jobs import Jobs

    jobs = Jobs(keep_s=0.05)

    async def work(job):
        return 1

    job = jobs.start("x", work)
    await jobs.wait_all()
    assert jobs.get(job.job_id).state == "done"
    await asyncio.sleep(0.1)
    with pytest.raises(NotFound):
        jobs.get(job.job_id)
