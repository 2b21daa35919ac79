"""The dispatcher's fast paths (no Ray): the email it writes, the status of a large outage, batched claims."""
from __future__ import annotations

import asyncio
import copy
import email
import email.policy

import pytest
from factories import context

from grid.contacts.config import ContactsConfig
from grid.contacts.dispatcher import Dispatcher
from grid.contacts.events import outage_op, outage_ops
from grid.contacts.transports import text_message
from grid.partitions import PARTITIONS
from grid.shard import Shard

EVENT = {"id": "OUT-00000000000B", "group": "OUT-00000000000B", "type": "outage", "start": "2026-12-01T11:00:00Z",
         "estimated_restoration": None, "cause": "storm", "selector": {"area": {"attribute": "feeder", "value": "F1"}}}


def _put(s: Shard, i: int) -> None:
    cid, body = context(i)
    body["attributes"]["feeder"] = "F1"
    for a in body["accounts"]:
        for sp in a["service_points"]:
            sp["load_priority"] = "critical" if i % 7 == 3 else "normal"
    body["contacts"] = [{"contact_id": f"K{i}", "name": "A", "roles": ["outage"], "channels": [
        {"type": "sms", "address": f"+1415555{i:04d}", "preference": 1, "quiet_hours": None}]}]
    s.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"put-{i}"})


@pytest.fixture
def shard():
    s = Shard(0, list(range(PARTITIONS)))
    for i in range(30):
        _put(s, i)
    return s


def test_email_is_utf8_text_and_a_line_break_in_the_subject_starts_no_header():
    raw = text_message("alerts@utility.example", "ana@example.com", "Corte de luz — García\nBcc: evil@example.com",
                       "Hola Señora García,\nhay un corte de luz.\n.\nFin", "kabc123")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == "Corte de luz — García Bcc: evil@example.com"
    assert msg["Bcc"] is None
    assert msg["To"] == "ana@example.com" and msg["X-Idempotency-Key"] == "kabc123"
    assert msg["Message-ID"] == "<kabc123@contextgrid>"
    assert msg.get_content() == "Hola Señora García,\nhay un corte de luz.\n.\nFin"


def test_status_of_a_large_outage_shows_only_the_rows_asked_for_with_every_count(shard):
    o, summary = outage_op(shard, EVENT, 900.0)
    shard.write(o)
    assert summary["notifications"] == 30
    status = shard.outbox.group_status(EVENT["id"], None, limit=3)
    assert status["total"] == 30 and status["counts"] == {"queued": 30}
    assert len(status["recipients"]) == 3
    assert shard.outbox.group_status(EVENT["id"], "sending", limit=3)["recipients"] == []


def test_a_large_outage_is_enqueued_in_chunks_critical_first_and_equal_to_one_op(shard):
    ops, summary = outage_ops(shard, copy.deepcopy(EVENT), 900.0, chunk=7)
    assert len(ops) == 5 and [len(o["body"]["notifications"]) for o in ops] == [7, 7, 7, 7, 2]
    whole, whole_summary = outage_op(shard, copy.deepcopy(EVENT), 900.0)
    assert summary == whole_summary
    for o in ops:
        shard.write(o)
    due = shard.outbox.due(1e12, 100)
    assert [n["nid"] for n in due] == [n["nid"] for n in whole["body"]["notifications"]]  # same order
    assert [n["critical"] for n in due[:4]] == [True] * 4 and not any(n["critical"] for n in due[4:])
    one = Shard(0, list(range(PARTITIONS)))
    one.records = shard.records
    one.write(whole)
    assert one.outbox.to_blob() == shard.outbox.to_blob()  # chunks hold what one op would


def test_a_declaration_retried_after_losing_chunks_adds_only_the_missing_ones(shard):
    ops, _ = outage_ops(shard, copy.deepcopy(EVENT), 900.0, chunk=7)
    for o in ops[:2]:  # the shard died before the rest were logged; the request was never acknowledged
        shard.write(o)
    assert len(shard.outbox.items) == 14
    _put(shard, 99)  # a customer connected meanwhile
    again, summary = outage_ops(shard, copy.deepcopy(EVENT), 900.0, chunk=7)  # plans one customer more
    assert summary["notifications"] == 31
    for o in again:
        shard.write(o)
    status = shard.outbox.group_status(EVENT["id"], None, limit=100)
    assert status["total"] == 31 and len({r["message_id"] for r in status["recipients"]}) == 31


class SlowOutboxGrid:
    """A grid whose outbox writes take a while (a shard busy with an outage): the receipts' group commit."""

    shards = [object()]

    def __init__(self):
        self.ops: list[dict] = []
        self.writing = asyncio.Event()

    async def aoutbox_write(self, shard: int, o: dict) -> dict:
        self.writing.set()
        await asyncio.sleep(0.1)
        self.ops.append(o)
        return {"changed": len(o["body"]["items"])}

    async def aoutbox_locate(self, nid: str) -> int:
        return 0


async def test_a_receipt_arriving_while_the_last_batch_is_written_is_not_left_waiting():
    grid = SlowOutboxGrid()
    d = Dispatcher(grid, ContactsConfig(), {})
    first = asyncio.create_task(d.receipt("M1", "k1", "delivered"))
    # the first flush is writing now (waited for, not slept for: a sleep as long as the group-commit window
    # raced it, and both receipts went into one batch)
    await asyncio.wait_for(grid.writing.wait(), timeout=2.0)
    second = asyncio.create_task(d.receipt("M2", "k2", "delivered"))
    await asyncio.wait_for(asyncio.gather(first, second), timeout=2.0)
    assert [[it["nid"] for it in o["body"]["items"]] for o in grid.ops] == [["M1"], ["M2"]]


def test_restoration_and_notices_are_chunked_like_the_outage(shard):
    from grid.contacts.events import notice_ops, restoration_ops

    for o in outage_ops(shard, copy.deepcopy(EVENT), 900.0, chunk=7)[0]:
        shard.write(o)
    ops, n = restoration_ops(shard, EVENT["id"], "2026-12-01T15:00:00Z", {"who": "op1"}, chunk=7)
    assert n == 30 and len(ops) == 5
    for o in ops:
        shard.write(o)
    event = shard.outbox.events[EVENT["id"]]
    assert event["state"] == "restored" and event["audit"] == [{"who": "op1"}]  # once, not once per chunk
    assert shard.outbox.group_status(EVENT["id"], None, limit=100)["total"] == 60
    assert restoration_ops(shard, "OUT-NEVERHEARDOF", "2026-12-01T15:00:00Z")[0] is None
    notices, n = notice_ops(shard, {"id": "bill_ready:2026-11", "type": "bill_ready", "period": "2026-11"}, chunk=7)
    assert len(notices) == max(1, -(-n // 7))  # one op even when nobody has a bill of that period
