"""The billing system's database, dumped as ``schema.sql`` plus one CSV per table, ready for ``COPY``.

A customer-information system keeps its own codes (``R``/``C``/``I``/``P`` customer types, ``A``/``C`` account
status, upper-case rate codes), splits addresses into columns, and stamps every row with ``updated_at`` (the
change column that polling readers use when logical decoding is not available). Its data is mostly clean, since
it bills from it, but not entirely:

- duplicate customers: a customer who opened a second account was keyed again as a new customer (a new
  number, the name as that clerk spelled it); the second record holds one of the accounts when there are two
  or more, otherwise nothing;
- upper-case legacy names, residential names filed ``LAST, FIRST``, a few typos;
- missing phone, e-mail and tax id.

Truth: ``truth/billing.csv``, one row per ``customers.csv`` row (key = customer number).
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from grid.synth.sources import messy
from grid.synth.sources.records import BaseChunk, CsvFile, Truth

TABLES = {
    "customers": ("customer_number", "name", "customer_type", "tax_id", "mailing_street", "mailing_city",
                  "mailing_state", "mailing_zip", "phone", "email", "created_on", "updated_at"),
    "accounts": ("account_number", "customer_number", "status", "rate_code", "bill_cycle", "billing_address",
                 "opened_on", "updated_at"),
    "premises": ("premise_id", "street", "city", "state", "zip", "updated_at"),
    "meters": ("meter_number", "service_point_id", "premise_id", "account_number", "interval_minutes", "solar",
               "load_priority", "updated_at"),
    "bills": ("bill_id", "account_number", "period_start", "period_end", "total_cents", "lines", "issued_on",
              "updated_at"),
    "payments": ("payment_id", "account_number", "paid_on", "amount_cents", "method", "updated_at"),
}
KEYS = {"customers": "customer_number", "accounts": "account_number", "premises": "premise_id",
        "meters": "meter_number", "bills": "bill_id", "payments": "payment_id"}
SQL_TYPES = {"bill_cycle": "integer", "interval_minutes": "integer", "total_cents": "bigint",
             "amount_cents": "bigint", "lines": "jsonb", "created_on": "date", "opened_on": "date",
             "period_start": "date", "period_end": "date", "issued_on": "date", "paid_on": "date",
             "updated_at": "timestamptz"}
TYPE_CODES = {"residential": "R", "commercial": "C", "industrial": "I", "public": "P"}
DUPLICATE_RATE = 0.02


def schema_sql() -> str:
    """``CREATE TABLE`` statements of the dump (primary keys, so logical decoding names the changed row)."""
    out = ["-- contextgrid synthetic billing system (grid.synth.sources.billing); load each table with\n"
           "-- \\copy <table> FROM '<table>.csv' WITH (FORMAT csv, HEADER true)\n"]
    for table, cols in TABLES.items():
        body = ",\n".join(f"    {c} {SQL_TYPES.get(c, 'text')}" + (" PRIMARY KEY" if c == KEYS[table] else "")
                          for c in cols)
        out.append(f"CREATE TABLE {table} (\n{body}\n);\n")
    return "\n".join(out)


def _stamp(day: dt.date, rng: np.random.Generator) -> str:
    """A change time on ``day`` (UTC, second resolution): when the row was last written."""
    s = int(rng.integers(0, 86400))
    return f"{day.isoformat()}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"


def _phone_email(contacts: list[dict]) -> tuple[str | None, str | None]:
    phone = email = None
    for c in contacts[:1]:
        for ch in c.get("channels", []):
            if ch["type"] in ("sms", "voice") and phone is None:
                phone = ch["address"]
            elif ch["type"] == "email" and email is None:
                email = ch["address"]
    return phone, email


class BillingDump:
    """Writes ``billing/`` (schema and tables) and ``truth/billing.csv`` chunk by chunk."""

    source = "billing"

    def __init__(self, root: Path, manifest: dict):
        self.dir = root / "billing"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "schema.sql").write_text(schema_sql(), encoding="utf-8")
        self.files = {t: CsvFile(self.dir / f"{t}.csv", cols) for t, cols in TABLES.items()}
        self.truth = Truth(root, self.source)
        self.as_of = dt.date.fromisoformat(manifest["months"][-1] + "-01")
        self.next_duplicate = int(manifest["customers"]) + 1  # numbers no base customer has

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        f = self.files
        for c in chunk.customers:
            cid, kind = c["customer_id"], c["kind"]
            accounts = chunk.accounts_of.get(cid, [])
            chain = chunk.owner_chain(c)
            owner = chain[0] if chain else {}
            created = c["created_at"].date()
            name, defects = c["name"], []
            if kind == "residential" and rng.random() < 0.3:
                name, defects = messy.reorder_person(name, rng), ["reordered"]
            elif rng.random() < 0.25:
                name, defects = name.upper(), ["cosmetic"]
            if rng.random() < 0.02:
                name = messy.typo(name, rng)
                defects.append("typo")
            phone, email = _phone_email(c["contacts"])
            if rng.random() < 0.1:
                phone, defects = None, defects + ["missing_phone"]
            if rng.random() < 0.3:
                email = None
            street, city, state, zip_code = messy.split_address(owner.get("mailing_address") or
                                                                (accounts[0]["billing_address"] if accounts else ""))
            updated = _stamp(self.as_of - dt.timedelta(days=int(rng.integers(1, 400))), rng)
            row = f["customers"].write((cid, name, TYPE_CODES[kind], owner.get("tax_id"), street, city, state,
                                        zip_code, phone, email, created.isoformat(), updated))
            self.truth.record("billing/customers.csv", row, cid, cid, defects, owner.get("entity_id"))
            holder = {a["account_id"]: cid for a in accounts}
            if rng.random() < DUPLICATE_RATE:
                dup = f"C{self.next_duplicate:07d}"
                self.next_duplicate += 1
                dup_name, dup_defects = messy.hand_typed_name(c["name"], rng, person=kind == "residential")
                row = f["customers"].write((dup, dup_name, TYPE_CODES[kind], None, street, city, state, zip_code,
                                            None, None, (created + dt.timedelta(days=int(rng.integers(30, 900))))
                                            .isoformat(), updated))
                self.truth.record("billing/customers.csv", row, dup, cid, ["duplicate"] + dup_defects,
                                  owner.get("entity_id"))
                if len(accounts) >= 2:
                    holder[accounts[-1]["account_id"]] = dup
            for a in accounts:
                self._account(chunk, a, holder[a["account_id"]], created, rng)
        for b in chunk.bills:
            lines = json.dumps(b["lines"], separators=(",", ":"))
            issued = b["period_end"] + dt.timedelta(days=int(rng.integers(1, 4)))
            f["bills"].write((b["bill_id"], b["account_id"], b["period_start"].isoformat(),
                              b["period_end"].isoformat(), b["total_cents"], lines, issued.isoformat(),
                              _stamp(issued, rng)))
        for p in chunk.payments:
            f["payments"].write((p["payment_id"], p["account_id"], p["date"].isoformat(), p["amount_cents"],
                                 p["method"], _stamp(p["date"], rng)))

    def _account(self, chunk: BaseChunk, a: dict, holder: str, created: dt.date, rng) -> None:
        f = self.files
        aid = a["account_id"]
        opened = created + dt.timedelta(days=int(rng.integers(0, 30)))
        updated = _stamp(self.as_of - dt.timedelta(days=int(rng.integers(1, 400))), rng)
        f["accounts"].write((aid, holder, "A" if a["status"] == "active" else "C", a["rate_plan_id"].upper(),
                             a["bill_cycle_day"], a["billing_address"], opened.isoformat(), updated))
        sp = chunk.sp_of_account.get(aid)
        if sp is None:
            return
        premise = "PR" + sp["service_point_id"][1:]
        street, city, state, zip_code = messy.split_address(sp["premise_address"])
        f["premises"].write((premise, street, city, state, zip_code, updated))
        f["meters"].write((sp["meter_id"], sp["service_point_id"], premise, aid, sp["interval_minutes"],
                           "Y" if sp["has_solar"] else "N", sp["load_priority"], updated))

    def close(self) -> dict:
        for fh in self.files.values():
            fh.close()
        self.truth.close()
        return {"kind": "database", "format": "csv", "schema": "billing/schema.sql",
                "tables": {t: {"file": f"billing/{t}.csv", "rows": fh.rows, "key": KEYS[t]}
                           for t, fh in self.files.items()},
                "truth": "truth/billing.csv"}


def load_dump(conn, feeds_dir: str | Path, *, replace: bool = True) -> dict[str, int]:
    """Create the dump's tables in PostgreSQL (a psycopg connection) and ``COPY`` every CSV in; row counts.

    Tables get ``REPLICA IDENTITY FULL`` so a streamed delete carries the whole old row (what a reader needs to
    tell the grid which account or payment went away, not only its key).
    """
    root = Path(feeds_dir) / "billing"
    with conn.transaction():
        if replace:
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute((root / "schema.sql").read_text(encoding="utf-8"))
        counts = {}
        for table in TABLES:
            conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
            with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                with open(root / f"{table}.csv", "rb") as f:
                    while chunk := f.read(1 << 16):
                        copy.write(chunk)
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts
