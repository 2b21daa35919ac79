"""The audit log: every customer write recorded by its shard with who, when, how and what changed; readable
by operators only; kept through the WAL (a shard crash replays it), snapshots and partition moves."""
import asyncio

import ray
from conftest import auth

from grid.audit import AuditLog, audit_block
from grid.shard import Shard, from_snapshot, to_snapshot

CID = "C0000035"  # written to by this file only
OP = auth("operator")


def _op(i: int, cid: str = "C1") -> dict:
    return {"kind": "patch", "customer_id": cid, "write_id": f"w{i}", "at": f"2026-01-0{i}T00:00:00+00:00",
            "body": {"name": f"N{i}"}, "audit": audit_block("ops", "operator", "PATCH", "/v1/customers/{id}",
                                                             f"r{i}", {"name": f"N{i}"})}


def test_audit_log_keeps_newest_first_and_moves_with_the_customer():
    log = AuditLog()
    for i in (1, 2, 3):
        log.record(_op(i), version=i + 1)
    log.record({**_op(4), "audit": None}, version=5)  # an op without an audit block records nothing
    assert [e["write_id"] for e in log.of("C1")] == ["w3", "w2", "w1"]
    assert log.of("C1", limit=1)[0] == {"key_id": "ops", "role": "operator", "method": "PATCH",
                                        "route": "/v1/customers/{id}", "request_id": "r3",
                                        "changes": {"name": "N3"}, "customer_id": "C1", "kind": "patch",
                                        "write_id": "w3", "at": "2026-01-03T00:00:00+00:00", "version": 4}
    moved = AuditLog()
    moved.absorb(log.export({"C1"}))
    log.drop({"C1"})
    assert log.of("C1") == [] and len(moved.of("C1")) == 3
    assert AuditLog.from_blob(moved.to_blob()).digest() == moved.digest()


def test_shard_records_the_audit_block_and_snapshots_hold_it():
    from factories import context

    shard = Shard(0)
    shard.owned[:] = True  # every partition: the test customer lands here
    cid, body = context(7)
    shard.write({"kind": "replace", "customer_id": cid, "write_id": "a", "body": body,
                 "audit": audit_block("ops", "operator", "PUT", "/v1/customers/{id}", "r1", {"replaced": ["name"]})})
    shard.write({"kind": "patch", "customer_id": cid, "write_id": "b", "body": {"name": "New"},
                 "audit": audit_block("desk", "agent", "PATCH", "/v1/customers/{id}", "r2", {"name": "New"})})
    shard.write({"kind": "patch", "customer_id": cid, "write_id": "b", "body": {"name": "New"},
                 "audit": audit_block("desk", "agent", "PATCH", "/v1/customers/{id}", "r3", {"name": "New"})})
    entries = shard.audit.of(cid)
    assert [(e["key_id"], e["kind"]) for e in entries] == [("desk", "patch"), ("ops", "replace")]  # retry: once
    assert entries[0]["version"] == shard.records[cid]["version"]
    restored = from_snapshot(*to_snapshot(shard))
    assert restored.audit.of(cid) == entries and restored.checksum() == shard.checksum()


async def test_every_write_over_http_is_audited_for_operators_only(api):
    r = await api.patch(f"/v1/customers/{CID}", json={"segment": "mass", "attributes": {"audited": 1}},
                        headers={**OP, "X-Request-Id": "audit-test-1"})
    assert r.status == 200
    reading = {"service_point_id": "S00000035", "start": "2026-04-01T00:00:00Z", "import_wh": 7}
    r = await api.post(f"/v1/customers/{CID}/usage", json={"readings": [reading]}, headers=auth("agent"))
    assert r.status == 200
    got = await (await api.get(f"/v1/audit?customer={CID}", headers=OP)).json()
    usage, patch = got["items"][:2]
    assert patch["request_id"] == "audit-test-1" and patch["key_id"] == "ops" and patch["role"] == "operator"
    assert patch["method"] == "PATCH" and patch["route"] == "/v1/customers/{id}" and patch["kind"] == "patch"
    assert patch["changes"] == {"segment": "mass", "attributes": {"audited": 1}} and patch["at"]
    assert usage["key_id"] == "desk" and usage["changes"] == {"readings": {"S00000035": 1}}
    for who in ("agent", "customer"):
        assert (await api.get(f"/v1/audit?customer={CID}", headers=auth(who))).status == 403


async def test_audit_entries_survive_a_shard_crash(api, grid):
    r = await api.patch(f"/v1/customers/{CID}", json={"name": "Audited Before Crash"}, headers=OP)
    assert r.status == 200
    before = (await (await api.get(f"/v1/audit?customer={CID}", headers=OP)).json())["items"]
    shard = grid.shards[grid.shard_index(CID)]
    pid = (await grid._aget(shard.ready.remote(), timeout=10))["pid"]
    ray.kill(shard, no_restart=False)
    for _ in range(300):
        try:
            if (await grid._aget(shard.ready.remote(), timeout=2))["pid"] != pid:
                break
        except Exception:  # noqa: BLE001 - restarting
            pass
        await asyncio.sleep(0.1)
    after = (await (await api.get(f"/v1/audit?customer={CID}", headers=OP)).json())["items"]
    assert after == before and after[0]["changes"] == {"name": "Audited Before Crash"}


async def test_events_are_audited_with_the_key_that_sent_them(api):
    """Events are customer writes too: each customer's part of a batch is audited with the write."""
    import time

    from grid.decisions.events import iso

    now = iso(int(time.time()))
    r = await api.post("/v1/events", json={"events": [
        {"customer_id": CID, "type": "call", "time": now, "payload": {"reason": "bill"}},
        {"customer_id": CID, "type": "web_visit", "time": now}]}, headers={**auth("agent"), "X-Request-Id": "ev-1"})
    assert r.status == 200, await r.text()
    got = await (await api.get(f"/v1/audit?customer={CID}", headers=OP)).json()
    entry = got["items"][0]
    assert (entry["kind"], entry["key_id"], entry["role"], entry["route"]) == ("event", "desk", "agent", "/v1/events")
    assert entry["request_id"] == "ev-1" and entry["changes"] == {"events": ["call", "web_visit"]}
