"""Events: validation, retention and roll-ups, incremental features, the HTTP route and MQTT meter alarms."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import socket
import subprocess
import time

import pytest
from conftest import auth
from factories import context

from grid.decisions import events as ev
from grid.decisions.service import event_ops
from grid.errors import InvalidInput, NotFound
from grid.partitions import PARTITIONS
from grid.shard import Shard, from_snapshot, to_snapshot

H = auth("operator")
DAY = 86_400
T0 = int(dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc).timestamp())


def at(ts: int) -> str:
    return ev.iso(ts)


def shard_with(n: int = 3) -> Shard:
    sh = Shard(0, list(range(PARTITIONS)))
    for i in range(n):
        cid, body = context(i)
        sh.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"r{i}"})
    return sh


def post(sh: Shard, cid: str, events: list[tuple[str, int]], now: int, wid: str) -> dict:
    items = [{"customer_id": cid, "type": t, "time": at(ts), "payload": {}} for t, ts in events]
    op = event_ops({"events": items}["events"], wid, now)[0]
    op["at"] = at(now)
    return sh.write(op)


# -- validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"type": "fax", "time": "2026-06-01T00:00:00Z"}, "e.type"),
    ({"type": "call", "time": "2026-06-01T00:00:00"}, "e.time"),           # no offset
    ({"type": "call", "time": "yesterday"}, "e.time"),
    ({"type": "call", "time": "2026-06-09T00:00:00Z"}, "e.time"),           # a week in the future
    ({"type": "call", "time": "2026-06-01T00:00:00Z", "payload": []}, "e.payload"),
    ({"type": "call", "time": "2026-06-01T00:00:00Z", "payload": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}},
     "e.payload"),                                                           # too deep
    ({"type": "call", "time": "2026-06-01T00:00:00Z", "payload": {"x": "y" * 5000}}, "e.payload"),  # too big
    ({"type": "call", "time": "2026-06-01T00:00:00Z", "colour": "red"}, "e.colour"),
])
def test_bad_events_name_the_field(body, field):
    with pytest.raises(InvalidInput) as err:
        ev.check_event(body, T0, "e")
    assert err.value.field == field


def test_a_bad_event_in_a_batch_writes_nothing():
    sh = shard_with()
    good = {"customer_id": "C0000001", "type": "call", "time": at(T0)}
    with pytest.raises(InvalidInput) as err:
        event_ops([good, dict(good, type="nope")], "w", T0)
    assert err.value.field == "events[1].type"
    assert sh.decisions.events == {}


def test_unknown_customer_is_404_and_writes_nothing():
    sh = shard_with()
    op = event_ops({"customer_id": "C9999999", "type": "call", "time": at(T0)}, "w", T0)[0]
    with pytest.raises(NotFound):
        sh.write(op)
    assert sh.decisions.events == {} and "w:C9999999" not in sh.applied


# -- counting, retention, features --------------------------------------------------------------------------------
def test_features_count_per_type_and_window_and_recency():
    sh = shard_with()
    post(sh, "C0000001", [("call", T0 - 40 * DAY), ("call", T0 - 5 * DAY), ("call", T0), ("complaint", T0 - 2 * DAY)],
         T0, "w1")
    f = ev.features(sh.decisions.events["C0000001"], T0)
    assert (f["events.call.1d"], f["events.call.7d"], f["events.call.30d"], f["events.call.90d"]) == (1, 2, 2, 3)
    assert f["events.call.days_since"] == 0 and f["events.complaint.days_since"] == 2
    assert f["events.complaint.7d"] == 1 and f["events.web_visit.90d"] == 0
    assert "events.web_visit.days_since" not in f
    # a later write moves the window: the call of 40 days ago is outside 30d after 10 more days... and so on
    post(sh, "C0000001", [("web_visit", T0 + 10 * DAY)], T0 + 10 * DAY, "w2")
    f = ev.features(sh.decisions.events["C0000001"], T0 + 10 * DAY)
    assert (f["events.call.7d"], f["events.call.30d"], f["events.web_visit.1d"]) == (0, 2, 1)


def test_retention_rolls_old_events_into_monthly_counts():
    sh = shard_with()
    post(sh, "C0000002", [("payment_missed", T0 - 200 * DAY)], T0, "old")     # already beyond the window
    post(sh, "C0000002", [("payment_missed", T0 - 80 * DAY), ("call", T0 - 80 * DAY)], T0, "mid")
    state = sh.decisions.events["C0000002"]
    assert len(state["raw"]) == 2 and sum(state["rollup"]["payment_missed"].values()) == 1
    post(sh, "C0000002", [("call", T0 + 30 * DAY)], T0 + 30 * DAY, "late")    # the window moves past day -80
    state = sh.decisions.events["C0000002"]
    assert [r[1] for r in state["raw"]] == ["call"]                           # only the newest is still raw
    assert sum(state["rollup"]["payment_missed"].values()) == 2                # counted, not forgotten
    assert state["total"] == {"payment_missed": 2, "call": 2}
    f = ev.features(state, T0 + 30 * DAY)
    assert f["events.payment_missed.90d"] == 0 and f["events.payment_missed.total"] == 2


def test_raw_events_are_bounded_per_customer():
    sh = shard_with()
    post(sh, "C0000001", [("meter_alarm", T0 - i) for i in range(ev.MAX_RAW + 50)], T0, "many")
    state = sh.decisions.events["C0000001"]
    assert len(state["raw"]) == ev.MAX_RAW
    assert state["total"]["meter_alarm"] == ev.MAX_RAW + 50
    assert state["raw"][0][0] == T0 - ev.MAX_RAW + 1  # the oldest ones went


def test_same_write_twice_counts_once_and_state_survives_a_snapshot():
    sh = shard_with()
    first = post(sh, "C0000001", [("call", T0)], T0, "dup")
    again = post(sh, "C0000001", [("call", T0)], T0, "dup")
    assert first == again and sh.decisions.events["C0000001"]["total"]["call"] == 1
    restored = from_snapshot(*to_snapshot(sh))
    assert restored.decisions.events == sh.decisions.events
    assert restored.records["C0000001"]["version"] == sh.records["C0000001"]["version"]


def test_replayed_ops_rebuild_the_same_state():
    """The WAL replays ops in order on a fresh shard: same ops, same event state."""
    sh, ops = shard_with(), []
    for k, (t, ts) in enumerate([("call", T0 - 100 * DAY), ("complaint", T0), ("call", T0 + 95 * DAY)]):
        op = event_ops({"customer_id": "C0000001", "type": t, "time": at(ts)}, f"w{k}", ts)[0]
        op["at"] = at(ts)
        sh.write(op)
        ops.append(op)
    fresh = shard_with()
    for op in ops:
        fresh.apply(op)
    assert fresh.decisions.events == sh.decisions.events


# -- HTTP -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def event_customers(grid):
    ids = []
    for i in range(9100, 9106):
        cid, body = context(i)
        grid.replace(cid, body)
        ids.append(cid)
    return ids


async def test_post_one_event_reaches_the_context(api, event_customers):
    cid = event_customers[0]
    before = await (await api.get(f"/v1/customers/{cid}", headers=H)).json()
    now = at(int(time.time()))
    r = await api.post("/v1/events", json={"customer_id": cid, "type": "call", "time": now,
                                            "payload": {"reason": "billing question"}}, headers=H)
    assert r.status == 200, await r.text()
    item = (await r.json())["items"][0]
    assert item["customer_id"] == cid and len(item["event_ids"]) == 1
    assert item["version"] == before["version"] + 1
    view = await (await api.get(f"/v1/customers/{cid}/events", headers=H)).json()
    assert view["items"][0]["event_id"] == item["event_ids"][0]
    assert view["items"][0]["payload"] == {"reason": "billing question"}
    assert view["features"]["events.call.1d"] == 1
    after = await (await api.get(f"/v1/customers/{cid}", headers=H)).json()
    assert after["version"] == item["version"]  # the near cache saw the write


async def test_post_a_batch_over_customers(api, event_customers):
    now = at(int(time.time()))
    batch = [{"customer_id": c, "type": "web_visit", "time": now} for c in event_customers[1:4]] * 2
    r = await api.post("/v1/events", json={"events": batch}, headers=H)
    assert r.status == 200, await r.text()
    items = (await r.json())["items"]
    assert [i["customer_id"] for i in items] == event_customers[1:4]
    assert all(len(i["event_ids"]) == 2 for i in items)


async def test_batch_with_unknown_customer_writes_nothing(api, event_customers):
    cid = event_customers[4]
    now = at(int(time.time()))
    r = await api.post("/v1/events", json={"events": [{"customer_id": cid, "type": "call", "time": now},
                                                      {"customer_id": "C0999999", "type": "call", "time": now}]},
                       headers=H)
    assert r.status == 404
    view = await (await api.get(f"/v1/customers/{cid}/events", headers=H)).json()
    assert view["items"] == []


@pytest.mark.parametrize("body, field", [
    ({"customer_id": "C0009100", "type": "fax", "time": "2026-01-01T00:00:00Z"}, "type"),
    ({"events": []}, "events"),
    ({"events": [{"customer_id": "C0009100", "type": "call", "time": "2026-01-01T00:00:00Z", "payload": 3}]},
     "events[0].payload"),
])
async def test_bad_event_bodies_are_422(api, body, field):
    r = await api.post("/v1/events", json=body, headers=H)
    assert r.status == 422
    problem = await r.json(content_type="application/problem+json")
    assert field in problem.get("field", ""), problem


async def test_events_need_a_key(api):
    r = await api.post("/v1/events", json={"customer_id": "C0009100", "type": "call",
                                            "time": "2026-01-01T00:00:00Z"})
    assert r.status == 401


# -- MQTT -------------------------------------------------------------------------------------------------------------
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto")
                                          else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; make test installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail(f"mosquitto did not listen: {proc.stderr.read().decode()[-500:]}")
    yield port
    proc.terminate()
    proc.wait(timeout=5)


@pytest.mark.slow
async def test_mqtt_meter_alarm_reaches_the_context(grid, keystore, event_customers, broker, monkeypatch):
    import aiomqtt
    from aiohttp.test_utils import TestClient, TestServer

    from grid.gateway.app import create_app
    from grid.gateway.decisions import MQTT, MQTT_READY

    monkeypatch.setenv("CONTEXTGRID_MQTT_BROKER", f"127.0.0.1:{broker}")
    cid = event_customers[5]
    sp = f"S{int(cid[1:]):08d}"  # tests/factories.py: service point of customer i is S<i:08d>
    app = create_app(grid, keys=keystore)
    async with TestClient(TestServer(app)) as client:
        await asyncio.wait_for(app[MQTT_READY].wait(), 10)
        async with aiomqtt.Client("127.0.0.1", broker) as pub:
            body = json.dumps({"alarm": "tamper", "time": at(int(time.time()))}).encode()
            await pub.publish(f"meters/{sp}/alarm", body, qos=1)
            await pub.publish(f"meters/{sp}/alarm", body, qos=1)       # a redelivery: counted once
            await pub.publish("meters/S-nobody/alarm", body, qos=1)   # unknown service point: dropped
            await pub.publish(f"meters/{sp}/alarm", b"not json", qos=1)
        counts = app[MQTT]
        deadline = time.time() + 10
        while counts.received < 4 and time.time() < deadline:
            await asyncio.sleep(0.05)
        assert (counts.received, counts.written, counts.rejected) == (4, 2, 2)
        view = await (await client.get(f"/v1/customers/{cid}/events", headers=H)).json()
        alarms = [e for e in view["items"] if e["type"] == "meter_alarm"]
        assert len(alarms) == 1
        assert alarms[0]["payload"]["alarm"] == "tamper" and alarms[0]["payload"]["service_point_id"] == sp
        assert view["features"]["events.meter_alarm.1d"] == 1


class _Server:
    """What grid.decisions.service needs of a shard actor: the shard and its write (here without a log)."""

    def __init__(self, shard):
        self.shard = shard

    async def write(self, op):
        return self.shard.write(op)


async def test_event_is_written_when_the_churn_model_file_is_gone(tmp_path):
    from grid.decisions import service

    sh = shard_with()
    sh.decisions.model = {"version": "v0", "path": str(tmp_path / "models" / "churn-v0.pkl")}
    ops = event_ops({"customer_id": "C0000001", "type": "complaint", "time": at(int(time.time()))}, "gone")
    out = await service.append_events(_Server(sh), ops, None)
    assert out["items"][0]["event_ids"] and sh.decisions.events["C0000001"]["total"] == {"complaint": 1}
    assert "C0000001" not in sh.decisions.churn  # not re-scored, not failed


async def test_decide_with_a_catalogue_changed_on_disk_writes_nothing(tmp_path):
    from grid.decisions import service
    from grid.decisions.catalogue import DEFAULT_PATH, ActionsRef
    from grid.errors import RuleError

    sh = shard_with()
    ops = event_ops({"customer_id": "C0000001", "type": "call", "time": at(int(time.time()))}, "stale")
    with pytest.raises(RuleError):
        await service.append_events(_Server(sh), ops, {"actions": ActionsRef(str(DEFAULT_PATH), "not-this"),
                                                       "channel": "web"})
    assert sh.decisions.events == {}
