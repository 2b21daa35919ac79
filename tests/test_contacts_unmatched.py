"""An outage naming ids no customer has (issue 13, a new user's report): the operator who typed a wrong id
must be told, not answered 201 with every count 0.

Regression: ``POST /v1/outages`` with unknown service_point_ids answered 201, all counts 0, and every shard
recorded the (empty) outage. Now: nothing matched -> 422 naming the field and listing the unknown ids, nothing
written; some matched -> declared, the others listed in the answer and in ``GET /v1/outages/{id}``.
"""
from __future__ import annotations

import hashlib

from conftest import auth

from grid.contacts import targets
from grid.contacts.events import outage_op
from grid.shard import Shard
from test_contacts_dispatch import EVENT, PARTITIONS, _put

OP = auth("operator")
CID = "C0000038"  # read only: no other test file names it


def _shard() -> Shard:
    s = Shard(0, list(range(PARTITIONS)))
    for i in range(5):
        _put(s, i)
    return s


def _sps(shard: Shard) -> list[str]:
    return sorted(sp["service_point_id"] for r in shard.records.values() for a in r["accounts"]
                  for sp in a["service_points"])


def test_a_shard_reports_what_it_matched_from_the_hits_it_planned():
    shard = _shard()
    known = _sps(shard)[:2]
    event = {**EVENT, "selector": {"service_point_ids": known + ["NOPE-1"], "area": {"attribute": "feeder",
                                                                                      "value": "F1"}}}
    _, summary = outage_op(shard, event, 900.0)
    assert sorted(summary["matched"]["service_point_ids"]) == known
    assert summary["matched"]["area"] is True
    _, summary = outage_op(shard, {**EVENT, "selector": {"area": {"attribute": "feeder", "value": "F2"}}}, 900.0)
    assert summary == {**summary, "customers": 0, "matched": {"area": False}}


def test_unmatched_over_shards_is_sorted_bounded_and_counted():
    selector = {"service_point_ids": [f"S{i:03d}" for i in range(300)], "premise_ids": ["P1", "P2"]}
    parts = [{"service_point_ids": ["S001"], "premise_ids": []}, {"service_point_ids": ["S000"], "premise_ids": []}]
    missing, count, any_matched = targets.unmatched(selector, parts, limit=100)
    assert any_matched and count == 298 + 2
    assert missing["service_point_ids"] == [f"S{i:03d}" for i in range(2, 102)] and missing["premise_ids"] == ["P1", "P2"]
    area = {"attribute": "feeder", "value": "F404"}
    assert targets.unmatched({"area": area}, [{"area": False}, {"area": False}]) == ({"area": [area]}, 1, False)
    assert targets.unmatched({"area": area}, [{"area": False}, {"area": True}]) == ({}, 0, True)


def _outage_id(key: str) -> str:  # as the gateway names an outage declared with an Idempotency-Key (key "ops")
    return "OUT-" + hashlib.sha256(f"ops:{key}".encode()).hexdigest()[:12].upper()


async def test_an_outage_naming_only_unknown_ids_is_refused_and_writes_nothing(api):
    for attempt in range(2):  # a retry with the same key answers the same
        r = await api.post("/v1/outages", json={"service_point_ids": ["SP-TYPO-1", "SP-TYPO-0"], "cause": "x"},
                           headers={**OP, "Idempotency-Key": "typo-1"})
        assert r.status == 422 and r.content_type == "application/problem+json"
        body = await r.json()
        assert body["field"] == "service_point_ids"
        assert body["unmatched"] == {"service_point_ids": ["SP-TYPO-0", "SP-TYPO-1"]} and body["unmatched_total"] == 2
        assert "SP-TYPO-0" in body["detail"]
    assert (await api.get(f"/v1/outages/{_outage_id('typo-1')}", headers=OP)).status == 404  # no shard knows it
    r = await api.post("/v1/outages", json={"premise_ids": ["Nowhere St 1"]}, headers=OP)
    assert r.status == 422 and (await r.json())["field"] == "premise_ids"
    area = {"attribute": "feeder", "value": "NO-SUCH-FEEDER"}
    r = await api.post("/v1/outages", json={"area": area}, headers=OP)
    assert r.status == 422
    body = await r.json()
    assert body["field"] == "area" and body["unmatched"] == {"area": [area]}


async def test_an_outage_naming_some_unknown_ids_is_declared_and_lists_them(api):
    ctx = await (await api.get(f"/v1/customers/{CID}", headers=OP)).json()
    sps = [sp["service_point_id"] for a in ctx["accounts"] if a.get("status", "active") == "active"
           for sp in a["service_points"]]
    assert sps
    req = {"service_point_ids": [sps[0], "SP-TYPO-9"], "cause": "tree"}
    first = await api.post("/v1/outages", json=req, headers={**OP, "Idempotency-Key": "half-typo"})
    assert first.status == 201, await first.text()
    body = await first.json()
    assert body["customers"] == 1 and body["service_points"] == 1
    assert body["unmatched"] == {"service_point_ids": ["SP-TYPO-9"]} and body["unmatched_total"] == 1
    again = await api.post("/v1/outages", json=req, headers={**OP, "Idempotency-Key": "half-typo"})
    assert again.status == 201 and await again.json() == body  # a retry answers the same
    status = await (await api.get(f"/v1/outages/{body['outage_id']}", headers=OP)).json()
    assert status["unmatched"] == {"service_point_ids": ["SP-TYPO-9"]}
    assert status["total"] == body["notifications"]  # nothing enqueued twice
    r = await api.post("/v1/outages", json={"service_point_ids": sps[:1]}, headers=OP)
    assert r.status == 201 and (await r.json())["unmatched"] == {}
