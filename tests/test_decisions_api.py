"""Next best action, decide-on-event, responses and the audit over HTTP; learning survives a shard kill -9."""
from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import auth
from factories import context

from grid.decisions.events import iso

H = auth("operator")


@pytest.fixture(scope="session")
def nba_customers(grid):
    ids = []
    for i in range(9200, 9206):
        cid, body = context(i)
        body["contacts"][0]["channels"].append({"type": "sms", "address": "+15555550123", "preference": 2,
                                                "quiet_hours": None})
        grid.replace(cid, body)
        ids.append(cid)
    return ids


async def problem(r):
    assert r.content_type == "application/problem+json", await r.text()
    return await r.json(content_type="application/problem+json")


async def test_event_with_decide_answers_the_decision_inline_and_audits_it(api, nba_customers):
    cid = nba_customers[0]
    r = await api.post("/v1/events?decide=true&channel=web",
                       json={"customer_id": cid, "type": "web_visit", "time": iso(int(time.time()))}, headers=H)
    assert r.status == 200, await r.text()
    body = await r.json()
    [d] = body["decisions"]
    assert d["customer_id"] == cid and d["channel_requested"] == "web"
    assert d["trigger"] == body["items"][0]["event_ids"]
    assert d["inputs"]["events.web_visit.7d"] == 1
    # a web visit makes paperless billing applicable (rules/actions.yaml); web is one of its channels
    assert d["chosen"]["action_id"] == "paperless_billing" and d["chosen"]["channel"] == "web"
    assert "paperless_billing:applicability" in d["rules_fired"]
    audit = await (await api.get(f"/v1/customers/{cid}/decisions", headers=H)).json()
    assert audit["items"][0] == d
    assert audit["items"][0]["versions"]["actions"]


async def test_next_best_action_no_action_is_an_answer(api, nba_customers):
    cid = nba_customers[1]  # no events: nothing applies; even customers are not on budget billing either
    r = await api.get(f"/v1/customers/{cid}/next-best-action?channel=agent", headers=H)
    assert r.status == 200, await r.text()
    d = await r.json()
    assert d["chosen"] is None and d["reason"]
    r = await api.post(f"/v1/customers/{cid}/responses", json={"decision_id": d["decision_id"],
                                                                "outcome": "accepted"}, headers=H)
    assert r.status == 409


async def test_responses_update_and_are_answered_once(api, nba_customers):
    cid = nba_customers[2]
    await api.post("/v1/events", json={"customer_id": cid, "type": "web_visit", "time": iso(int(time.time()))},
                   headers=H)
    d = await (await api.get(f"/v1/customers/{cid}/next-best-action?channel=web", headers=H)).json()
    assert d["chosen"] is not None
    r = await api.post(f"/v1/customers/{cid}/responses", json={"decision_id": d["decision_id"],
                                                                "outcome": "accepted"}, headers=H)
    assert r.status == 200, await r.text()
    assert (await r.json())["action_id"] == d["chosen"]["action_id"]
    again = await api.post(f"/v1/customers/{cid}/responses", json={"decision_id": d["decision_id"],
                                                                    "outcome": "rejected"}, headers=H)
    assert again.status == 409
    nxt = await (await api.get(f"/v1/customers/{cid}/next-best-action?channel=web", headers=H)).json()
    item = next(a for a in nxt["actions"] if a["action_id"] == d["chosen"]["action_id"])
    prior = next(a for a in d["actions"] if a["action_id"] == d["chosen"]["action_id"])["propensity"]
    assert item["propensity"]["alpha"] == prior["alpha"] + 1  # learned at once
    view = await (await api.get("/v1/admin/propensities", headers=H)).json()
    seg = next(i for i in view["items"] if i["action_id"] == d["chosen"]["action_id"] and i["segment"] == d["segment"])
    assert seg["accepted"] >= 1 and seg["alpha"] == view["prior"]["accepted"] + seg["accepted"]
    assert (await api.get("/v1/admin/propensities", headers=auth("agent"))).status == 403


@pytest.mark.parametrize("body, status, field", [
    ({"decision_id": "Dnope", "outcome": "accepted"}, 404, "decision_id"),
    ({"decision_id": "Dnope", "outcome": "maybe"}, 422, "outcome"),
    ({"outcome": "accepted"}, 422, "decision_id"),
])
async def test_bad_responses(api, nba_customers, body, status, field):
    r = await api.post(f"/v1/customers/{nba_customers[3]}/responses", json=body, headers=H)
    assert r.status == status
    assert (await problem(r))["field"] == field


async def test_next_best_action_retry_returns_the_first_decision(api, nba_customers):
    cid = nba_customers[4]
    h = {**H, "Idempotency-Key": "nba-1"}
    a = await (await api.get(f"/v1/customers/{cid}/next-best-action", headers=h)).json()
    b = await (await api.get(f"/v1/customers/{cid}/next-best-action", headers=h)).json()
    assert a == b
    audit = await (await api.get(f"/v1/customers/{cid}/decisions", headers=H)).json()
    assert [d["decision_id"] for d in audit["items"]] == [a["decision_id"]]


async def test_unknown_channel_and_customer(api, nba_customers):
    r = await api.get(f"/v1/customers/{nba_customers[0]}/next-best-action?channel=fax", headers=H)
    assert r.status == 422 and (await problem(r))["field"] == "channel"
    r = await api.get("/v1/customers/C0999999/next-best-action", headers=H)
    assert r.status == 404


async def test_reload_actions_needs_an_operator(api):
    r = await api.post("/v1/admin/actions/reload", headers=auth("agent"))
    assert r.status == 403
    r = await api.post("/v1/admin/actions/reload", headers=H)
    assert r.status == 200 and "budget_billing" in (await r.json())["actions"]


@pytest.mark.slow
async def test_propensity_survives_a_shard_kill(ray_session, keystore, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    from grid.cluster import Grid
    from grid.gateway.app import create_app

    g = Grid.start(data_dir=str(tmp_path), shards=2, namespace="cg-decisions-restart")
    try:
        cid, body = context(9300)
        g.replace(cid, body)
        async with TestClient(TestServer(create_app(g, keys=keystore))) as api:
            await api.post("/v1/events", json={"customer_id": cid, "type": "web_visit",
                                               "time": iso(int(time.time()))}, headers=H)
            learned = None
            for k in range(2):
                d = await (await api.get(f"/v1/customers/{cid}/next-best-action?channel=web", headers=H)).json()
                learned = d["chosen"]["action_id"]
                r = await api.post(f"/v1/customers/{cid}/responses",
                                   json={"decision_id": d["decision_id"], "outcome": "accepted"}, headers=H)
                assert r.status == 200
            prior = next(a for a in d["actions"] if a["action_id"] == learned)["propensity"]
            pid = g.stats()[g.shard_index(cid)]["pid"]
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + 60
            while True:
                r = await api.get(f"/v1/customers/{cid}/decisions", headers=H)
                if r.status == 200 or time.time() > deadline:
                    break
                await __import__("asyncio").sleep(0.2)
            assert r.status == 200
            assert g.stats()[g.shard_index(cid)]["pid"] != pid
            # audit, responses and posterior all came back from the log
            assert len((await r.json())["items"]) == 2
            after = await (await api.get(f"/v1/customers/{cid}/next-best-action?channel=web", headers=H)).json()
            post = next(a for a in after["actions"] if a["action_id"] == learned)["propensity"]
            assert post["alpha"] == prior["alpha"] + 1  # the second acceptance (after the last decision)
            ev = await (await api.get(f"/v1/customers/{cid}/events", headers=H)).json()
            assert ev["features"]["events.web_visit.1d"] == 1
    finally:
        g.shutdown()
