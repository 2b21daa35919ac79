"""Data the generator did not make: a hypothesis state machine drives the gateway over real HTTP.

Contexts and patches come from api/openapi.yaml's schemas (tests/strategies_context.py) with ids drawn from
small pools, so they collide: another customer's service point, a repeated account, a plan the catalogue does
not hold. PUT/PATCH/usage writes interleave with tariff uploads and deletes, bill runs for months with and
without legacy bills, classification, what-ifs, forecasts, listings with every filter, a shard restart (killed
as by a crash) and a scale step (3 shards and back).

Invariants: no 5xx ever; every acknowledged write reads back; a contract-valid body is refused only for a
reason the grid's state gives (a reference, a repeated id); every bill run and classification completes, the
bill run with one outcome per active account that has a service point.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
import zoneinfo

import pytest
import requests
from conftest import KEYS
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)
from strategies_context import apply_picks, contexts, patches

pytestmark = pytest.mark.slow

H = {"Authorization": f"Bearer {KEYS['operator']}"}
NEW_IDS = [f"X{n:07d}" for n in range(1, 7)]
SP_POOL = [f"SP-{n}" for n in range(1, 9)] + ["S00000001", "S00000002"]  # the last: generated customers'
ACCOUNT_POOL = [f"A-{n}" for n in range(1, 6)] + ["A00000003"]
UPLOADS = ["up-flat", "up-nozone"]
PLAN_POOL = ["res-tou", "res-tiered", "res-tou-nem", "com-demand", "com-tou-demand", "ind-tou-demand", "public-flat",
             *UPLOADS, "no-such-plan"]  # fixed: draws must not depend on the grid's state (hypothesis replays them)
MONTHS_EXTRA = ["2025-10", "2027-05"]  # no legacy bills, no usage: the normal "bill next month"
FLAT = {"name": "Flat", "energyratestructure": [[{"rate": "0.2"}]], "energyweekdayschedule": [[0] * 24] * 12,
        "energyweekendschedule": [[0] * 24] * 12, "fixedchargefirstmeter": "5", "fixedchargeunits": "$/month"}


@pytest.fixture(scope="module")
def gateway(ray_session, base_dir, tmp_path_factory, keystore):
    """A private two-shard grid holding the generated base, its gateway served from a thread on loopback."""
    from aiohttp import web

    from grid.cluster import Grid
    from grid.gateway.app import create_app

    grid = Grid.start(data_dir=str(tmp_path_factory.mktemp("stateful")), shards=2, namespace="cg-test-stateful")
    grid.load(base_dir)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(grid, None, keystore), access_log=None)
    started = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", grid
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    grid.shutdown()


def _plain(rec: dict) -> dict:
    """What a write must read back as: the context without what the grid recomputes on its own."""
    return {k: v for k, v in rec.items() if k not in ("version", "classification")}


def _log_safe(value) -> bool:
    """Whether free-form JSON fits what the write-ahead log holds (integers within int64: msgpack's range); the
    contract cannot say it, the model refuses the rest with a 422 naming the value (grid.model)."""
    if isinstance(value, dict):
        return all(_log_safe(v) for v in value.values())
    if isinstance(value, list):
        return all(_log_safe(v) for v in value)
    return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63


def _matches(rec: dict, filters: dict) -> bool:
    """Reference of the listing filters (DOMAIN.md section 1 fields), written from the contract."""
    sps = [sp for a in rec["accounts"] for sp in a["service_points"]]
    for k, v in filters.items():
        ok = {"kind": lambda: rec["kind"] == v, "segment": lambda: rec["segment"] == v,
              "rate_plan_id": lambda: any(a["rate_plan_id"] == v for a in rec["accounts"]),
              "program": lambda: any(p["code"] == v for a in rec["accounts"] for p in a["programs"]),
              "load_priority": lambda: any(sp["load_priority"] == v for sp in sps),
              "has_solar": lambda: any(sp["has_solar"] for sp in sps) == v,
              "name": lambda: v.lower() in rec["name"].lower()}[k]()
        if not ok:
            return False
    return True


class GatewayMachine(RuleBasedStateMachine):
    """The grid as a client sees it; ``self.model`` is every context as last acknowledged."""

    url: str = ""
    grid = None

    def __init__(self):
        super().__init__()
        self.http = requests.Session()
        self.http.headers.update(H)

    # -- HTTP, with the one invariant every call has ------------------------------------------------------
    def call(self, method: str, path: str, **kw) -> requests.Response:
        t0 = time.monotonic()
        r = self.http.request(method, self.url + path, timeout=120, **kw)
        if os.environ.get("STATEFUL_TRACE"):
            print(f"{time.monotonic() - t0:7.3f}s {method} {path} {r.status_code}", flush=True)
        assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {r.text[:2000]}"
        if r.status_code >= 400:
            assert r.headers["Content-Type"].startswith("application/problem+json"), r.text[:500]
        return r

    def follow(self, r: requests.Response, path_of) -> dict:
        assert r.status_code in (200, 202), r.text
        deadline = time.monotonic() + 120
        while True:
            job = self.call("GET", path_of(r.json())).json()
            if job["state"] != "running":
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)

    # -- state --------------------------------------------------------------------------------------------
    @initialize()
    def load_state(self):
        self.restarts = self.scales = 0
        self.plans = {t["id"] for t in self.call("GET", "/v1/tariffs").json()["items"]}
        self.model: dict[str, dict] = {}
        after = None
        while True:
            page = self.call("GET", "/v1/customers", params={"limit": 1000, **({"cursor": after} if after else {})})
            page = page.json()
            for item in page["items"]:
                self.model[item["customer_id"]] = self.call("GET", f"/v1/customers/{item['customer_id']}").json()
            if not page["next"]:
                break
            after = page["next"]
        self.months = sorted({b["period_start"][:7] for c in list(self.model)[:5]
                              for b in self.call("GET", f"/v1/customers/{c}/bills").json()["items"]})
        assert self.months, "the generated base has legacy bills"

    def owner_of(self, sp: str) -> str | None:
        for cid, rec in self.model.items():
            for a in rec["accounts"]:
                if any(s["service_point_id"] == sp for s in a["service_points"]):
                    return cid
        return None

    def expected_put(self, cid: str, body: dict) -> int:
        """The status a PUT must get, from the contract's rules in the order the gateway applies them."""
        if not _log_safe(body):
            return 422
        accounts = body.get("accounts", [])
        if any(a.get("status", "active") == "active" and a["rate_plan_id"] not in self.plans for a in accounts):
            return 422
        sps = [(sp["service_point_id"], sp["interval_minutes"]) for a in accounts for sp in a.get("service_points", [])]
        if any(self.owner_of(sp) not in (None, cid) for sp, _ in sps):
            return 409
        ids = [a["account_id"] for a in accounts]
        contacts = [c["contact_id"] for c in body.get("contacts", [])]
        if len(set(ids)) < len(ids) or len({s for s, _ in sps}) < len(sps) or len(set(contacts)) < len(contacts):
            return 422
        own = {s["service_point_id"]: s["interval_minutes"] for a in self.model.get(cid, {}).get("accounts", [])
               for s in a["service_points"]}
        if any(sp in own and own[sp] != iv for sp, iv in sps):
            return 409
        return 200

    # -- writes -------------------------------------------------------------------------------------------
    @rule(cid=st.sampled_from(NEW_IDS + ["C0000001", "C0000002", "C0000003"]),
          body=contexts(PLAN_POOL, SP_POOL, ACCOUNT_POOL))
    def put_context(self, cid, body):
        want = self.expected_put(cid, body)
        r = self.call("PUT", f"/v1/customers/{cid}", json=body)
        assert r.status_code == want, (want, r.status_code, r.text[:1000], body)
        if r.status_code == 200:
            rec = r.json()
            self.model[cid] = rec
            assert _plain(self.call("GET", f"/v1/customers/{cid}").json()) == _plain(rec)

    @rule(cid=st.sampled_from(NEW_IDS + ["C0000004"]), drawn=patches())
    def patch_context(self, cid, drawn):
        rec = self.model.get(cid)
        accounts = [a["account_id"] for a in rec["accounts"]] if rec else []
        contacts_ = [c["contact_id"] for c in rec["contacts"]] if rec else []
        projects = [p["project_id"] for p in rec["supplemental"]["projects"]] if rec else []
        body = apply_picks(*drawn, accounts, contacts_, projects)
        r = self.call("PATCH", f"/v1/customers/{cid}", json=body)
        if rec is None:  # a body the log cannot hold is refused before the customer is looked up
            assert r.status_code == (404 if _log_safe(body) else 422), r.text
            return
        assert r.status_code in (200, 422), r.text
        if r.status_code == 422:
            field = r.json()["field"]
            if field.startswith("attributes"):
                assert not _log_safe(body), r.text
            else:
                assert field.split(".")[0].split("[")[0] in ("programs", "contacts", "supplemental"), r.text
            return
        new = r.json()
        assert new["version"] > rec["version"]
        self.model[cid] = new
        assert _plain(self.call("GET", f"/v1/customers/{cid}").json()) == _plain(new)

    @rule(pick=st.integers(0, 10**6), month_i=st.integers(0, 3), k=st.integers(0, 300),
          wh=st.integers(0, 100_000_000))
    def post_usage(self, pick, month_i, k, wh):
        sps = sorted((c, sp["service_point_id"], sp["interval_minutes"]) for c, rec in self.model.items()
                     for a in rec["accounts"] for sp in a["service_points"])
        cid, sp_id, iv = sps[pick % len(sps)]
        month = (self.months + MONTHS_EXTRA)[month_i % (len(self.months) + len(MONTHS_EXTRA))]
        y, m = map(int, month.split("-"))
        local = dt.datetime(y, m, 1, tzinfo=zoneinfo.ZoneInfo(self.grid.config.timezone))
        start = local.astimezone(dt.timezone.utc) + dt.timedelta(minutes=iv * k)
        stamp = start.isoformat().replace("+00:00", "Z")
        r = self.call("POST", f"/v1/customers/{cid}/usage",
                      json={"readings": [{"service_point_id": sp_id, "start": stamp, "import_wh": wh}]})
        assert r.status_code == 200, r.text
        got = self.call("GET", f"/v1/customers/{cid}/usage",
                        params={"month": month, "service_point_id": sp_id}).json()["items"]
        assert [i["import_wh"] for i in got if i["start"] == stamp] == [wh], (stamp, got[:3])
        self.model[cid]["version"] = r.json()["version"]

    # -- the catalogue ------------------------------------------------------------------------------------
    @rule(tid=st.sampled_from(UPLOADS), kind=st.sampled_from(["zoned", "no_zone", "empty", "list", "tou"]))
    def put_tariff(self, tid, kind):
        body = {"zoned": {**FLAT, "contextgrid": {"timezone": self.grid.config.timezone}}, "no_zone": FLAT,
                "empty": {}, "list": {"items": [FLAT]},
                "tou": self.call("GET", "/v1/tariffs/res-tou").json()}[kind]
        r = self.call("PUT", f"/v1/tariffs/{tid}", json=body)
        if kind in ("empty", "list"):
            assert r.status_code == 422, r.text
            return
        assert r.status_code == 200, r.text
        assert r.json()["timezone"] == self.grid.config.timezone
        self.plans.add(tid)

    @rule(tid=st.sampled_from(UPLOADS + ["res-tou", "public-flat", "never-was"]))
    def delete_tariff(self, tid):
        used = any(a["rate_plan_id"] == tid for rec in self.model.values() for a in rec["accounts"])
        r = self.call("DELETE", f"/v1/tariffs/{tid}")
        want = 404 if tid not in self.plans else 409 if used else 204
        assert r.status_code == want, (want, r.text)
        if r.status_code == 204:
            self.plans.discard(tid)

    # -- whole-base computations --------------------------------------------------------------------------
    @rule(month_i=st.integers(0, 3))
    def bill_run(self, month_i):
        month = (self.months + MONTHS_EXTRA)[month_i % (len(self.months) + len(MONTHS_EXTRA))]
        run = self.follow(self.call("POST", "/v1/bill-runs", json={"period": month}),
                          lambda v: f"/v1/bill-runs/{v['run_id']}")
        assert run["state"] == "done", run
        rep = run["report"]
        active = sum(1 for rec in self.model.values() for a in rec["accounts"]
                     if a["status"] == "active" and a["service_points"])
        assert rep["bills"] == sum(rep["counts"].values()) == active, (rep["counts"], active)

    @rule()
    def classify(self):
        job = self.follow(self.call("POST", "/v1/admin/classify"), lambda v: f"/v1/admin/jobs/{v['job_id']}")
        assert job["state"] == "done", job
        for cid in NEW_IDS:
            if cid in self.model and self.model[cid]["accounts"]:
                cls = self.call("GET", f"/v1/customers/{cid}").json()["classification"]
                assert "key_account" in cls and "load_priority" in cls, (cid, cls)

    # -- reads --------------------------------------------------------------------------------------------
    @rule(cid=st.sampled_from(NEW_IDS + ["C0000001"]), plans=st.lists(st.sampled_from(
        ["res-tou", "res-tiered", "com-demand", "up-flat", "no-such-plan"]), min_size=1, max_size=3, unique=True),
        solar=st.booleans())
    def scenarios(self, cid, plans, solar):
        body = {"plans": plans, **({"changes": {"solar": {"kw": 4}}} if solar else {})}
        r = self.call("POST", f"/v1/customers/{cid}/scenarios", json=body)
        assert r.status_code in (200, 404, 422), r.text

    @rule(cid=st.sampled_from(NEW_IDS + ["C0000001"]), what=st.sampled_from(["forecast", "bill/current", "bills"]),
          month_i=st.integers(0, 3))
    def customer_reads(self, cid, what, month_i):
        month = (self.months + MONTHS_EXTRA)[month_i % (len(self.months) + len(MONTHS_EXTRA))]
        params = {"period": month} if what == "bills" else {}
        r = self.call("GET", f"/v1/customers/{cid}/{what}", params=params)
        assert r.status_code == (404 if cid not in self.model else 200), r.text

    @rule(filters=st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(["residential", "commercial", "industrial", "public"]),
        "segment": st.sampled_from(["multi_family", "small_business", "mass"]),
        "rate_plan_id": st.sampled_from(["res-tou", "com-demand", "up-flat", "no-such-plan"]),
        "program": st.sampled_from(["BUDGET_BILLING", "EV_RATE", "NOPE"]),
        "load_priority": st.sampled_from(["normal", "priority", "critical"]),
        "has_solar": st.booleans(), "name": st.sampled_from(["a", "co", "zz"])}))
    def listing(self, filters):
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items()}
        items = self.call("GET", "/v1/customers", params={**params, "limit": 1000}).json()["items"]
        assert sorted(i["customer_id"] for i in items) == sorted(
            c for c, rec in self.model.items() if _matches(rec, filters)), filters

    # -- a restart and a scale step (one each per run: they cost seconds) ----------------------------------
    def all_read_back(self):
        for cid, rec in self.model.items():
            got = self.call("GET", f"/v1/customers/{cid}").json()
            assert _plain(got) == _plain(rec) and got["version"] >= rec["version"], cid

    @precondition(lambda self: self.restarts < 1)
    @rule(i=st.integers(0, 1))
    def restart_shard(self, i):
        import ray

        self.restarts += 1
        ray.kill(self.grid.shards[i % len(self.grid.shards)], no_restart=False)  # as a crash: Ray restarts it
        deadline = time.monotonic() + 120
        while True:
            health = self.http.get(self.url + "/v1/health", timeout=30)
            if health.status_code == 200 and health.json()["status"] == "ok":
                break
            assert time.monotonic() < deadline, health.text
            time.sleep(0.2)
        self.all_read_back()

    @precondition(lambda self: self.scales < 1)
    @rule()
    def scale(self):
        self.scales += 1
        for count in (3, 2):
            job = self.follow(self.call("POST", "/v1/admin/shards", json={"count": count}),
                              lambda v: f"/v1/admin/jobs/{v['job_id']}")
            assert job["state"] == "done", job
        self.all_read_back()

    @invariant()
    def tariffs_listed(self):
        if hasattr(self, "plans"):
            assert {t["id"] for t in self.call("GET", "/v1/tariffs").json()["items"]} == self.plans


def test_gateway_state_machine(gateway):
    GatewayMachine.url, GatewayMachine.grid = gateway
    # bounded for CI (~60-90 s); STATEFUL_EXAMPLES=50 for a long hunt
    run_state_machine_as_test(GatewayMachine, settings=settings(
        max_examples=int(os.environ.get("STATEFUL_EXAMPLES", 15)), stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck)))
