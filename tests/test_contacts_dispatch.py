"""The dispatcher's fast paths (no Ray): the email it writes, the status of a large outage, batched claims."""
from __future__ import annotations

import email
import email.policy

import pytest
from factories import context

from grid.contacts.events import outage_op
from grid.contacts.transports import text_message
from grid.partitions import PARTITIONS
from grid.shard import Shard

EVENT = {"id": "OUT-00000000000B", "group": "OUT-00000000000B", "type": "outage", "start": "2026-12-01T11:00:00Z",
         "estimated_restoration": None, "cause": "storm", "selector": {"area": {"attribute": "feeder", "value": "F1"}}}


@pytest.fixture
def shard():
    s = Shard(0, list(range(PARTITIONS)))
    for i in range(30):
        cid, body = context(i)
        body["attributes"]["feeder"] = "F1"
        body["contacts"] = [{"contact_id": f"K{i}", "name": "A", "roles": ["outage"], "channels": [
            {"type": "sms", "address": f"+1415555{i:04d}", "preference": 1, "quiet_hours": None}]}]
        s.write({"kind": "replace", "customer_id": cid, "body": body, "write_id": f"put-{i}"})
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
