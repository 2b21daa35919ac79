"""What customers type into the web site's "update my contact details" form: ``web_contacts.csv``.

Customers type their own names (lower case, a nickname's worth of typos, first and last swapped into the
wrong boxes), their service address the long way round with an apartment number, a mobile number in whatever
format they like (often a new one the utility has never seen), and their account number when they have a bill
at hand: with or without the letter and the leading zeros, sometimes mistyped. Some submit twice; some
submissions come from people who are not customers at all (truth customer empty).

Truth: ``truth/web_contacts.csv`` (key = the submission id).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from grid.synth import names as nm
from grid.synth.sources import messy
from grid.synth.sources.records import BaseChunk, CsvFile, Truth

COLUMNS = ("submission_id", "submitted_at", "first_name", "last_name", "email", "mobile", "service_address",
           "account_number", "topic")
TOPICS = ("update contact", "paperless billing", "outage alerts", "move in", "payment arrangement")
SUBMIT_RATE = 0.12  # of residential customers, over the window
REPEAT_RATE = 0.1
STRANGER_RATE = 0.05  # of submissions


def _account_typed(aid: str, rng: np.random.Generator) -> tuple[str | None, list[str]]:
    r = rng.random()
    if r < 0.55:
        return None, ["missing_account"]
    if r < 0.75:
        return str(int(aid[1:])), ["account_short"]
    if r < 0.8:
        return aid[:-2] + aid[-1] + aid[-2], ["account_typo"] if aid[-1] != aid[-2] else []
    return aid.lower() if r < 0.85 else aid, []


class WebContacts:
    """Writes ``web_contacts.csv`` and ``truth/web_contacts.csv`` chunk by chunk."""

    source = "web_contacts"
    file = "web_contacts.csv"

    def __init__(self, root: Path, manifest: dict):
        self.out = CsvFile(root / self.file, COLUMNS)
        self.truth = Truth(root, self.source)
        self.start = dt.datetime.fromisoformat(manifest["months"][0] + "-01T00:00:00+00:00")
        end = dt.date.fromisoformat(manifest["months"][-1] + "-01")
        self.seconds = int((dt.datetime(end.year, end.month, 28, tzinfo=dt.timezone.utc) - self.start)
                           .total_seconds())
        self.next_id = 1

    def _write(self, rng, first, last, email, mobile, address, account, cid, defects, entity_id=None) -> None:
        sid = f"W{self.next_id:07d}"
        self.next_id += 1
        at = self.start + dt.timedelta(seconds=int(rng.integers(0, self.seconds)))
        row = self.out.write((sid, at.isoformat().replace("+00:00", "Z"), first, last, email, mobile, address,
                              account, nm.pick(rng, TOPICS)))
        self.truth.record(self.file, row, sid, cid, defects, entity_id)

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        for c in chunk.customers:
            if c["kind"] != "residential" or rng.random() >= SUBMIT_RATE:
                continue
            accounts = chunk.accounts_of.get(c["customer_id"], [])
            account = next((a for a in accounts if a["status"] == "active"), accounts[0] if accounts else None)
            sp = chunk.sp_of_account.get(account["account_id"]) if account else None
            contact = c["contacts"][0]
            sms = next((ch["address"] for ch in contact["channels"] if ch["type"] == "sms"), None)
            email = next((ch["address"] for ch in contact["channels"] if ch["type"] == "email"), None)
            for copy in range(2 if rng.random() < REPEAT_RATE else 1):
                defects = ["repeat"] if copy else []
                first, _, last = contact["name"].rpartition(" ")
                if rng.random() < 0.25:
                    first, last = first.lower(), last.lower()
                    defects.append("cosmetic")
                if rng.random() < 0.04:
                    first, last = last, first
                    defects.append("swapped_names")
                if rng.random() < 0.06:
                    last = messy.typo(last, rng) if len(last) >= 4 else last
                    defects.append("typo")
                mobile = sms
                if mobile is None or rng.random() < 0.3:
                    mobile = nm.phone(rng)
                    defects.append("new_phone")
                typed_email = email if email and rng.random() < 0.7 else None
                if typed_email is None and rng.random() < 0.5:
                    typed_email = nm.email_for(contact["name"], rng)
                    defects.append("new_email")
                address = None
                if sp is not None:
                    address = messy.expand_address(sp["premise_address"])
                    if rng.random() < 0.5:
                        address = address.lower()
                    if rng.random() < 0.3:
                        address = messy.street_line(address)
                        defects.append("no_city")
                typed, d = _account_typed(account["account_id"], rng) if account else (None, ["missing_account"])
                self._write(rng, first, last, typed_email, messy.national_phone(mobile, rng), address, typed,
                            c["customer_id"], defects + d, c.get("entity_id"))
            if rng.random() < STRANGER_RATE / (1 - STRANGER_RATE):  # strangers: this share of submissions
                first, _, last = nm.person_name(rng).partition(" ")
                self._write(rng, first, last, nm.email_for(f"{first} {last}", rng), messy.national_phone(
                    nm.phone(rng), rng), nm.random_street_address(rng), None, None, ["stranger"])

    def close(self) -> dict:
        self.out.close()
        self.truth.close()
        return {"kind": "push", "format": "csv", "file": self.file, "rows": self.out.rows,
                "truth": f"truth/{self.source}.csv"}
