"""The key-accounts team's spreadsheet, ``key_accounts.xlsx``: one row per site, typed by hand.

What such a workbook looks like in any utility: a title and an "updated" line above the header (the header
is on row 4), one sheet for businesses and one for public agencies, names and addresses as each account
manager types them (``ACME HOLDINGS LLC, 100 Main St Ste 4`` beside ``Acme Holdings, 100 Main Street, Suite
4``), account numbers sometimes missing, sometimes typed as a bare number (a numeric cell), sometimes mistyped,
the parent company as the team knows it (the root of the ownership chain, often without its legal suffix),
typed cells (a date for the last visit, a number for the estimated annual kWh), the same site entered twice by
two managers, and closed sites nobody removed.

Truth: ``truth/key_accounts.csv`` (file ``key_accounts.xlsx#<sheet>``, row = 1-based data row under the header,
key = the site's true account id).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import xlsxwriter

from grid.synth import names as nm
from grid.synth.sources import messy
from grid.synth.sources.records import BaseChunk, Truth

SHEETS = ("Key Accounts", "Public Agencies")
HEADER = ("Customer", "Parent Company", "Site Address", "Account #", "Acct Mgr", "Contact", "Phone",
          "Est. Annual kWh", "Last Visit", "Notes")
HEADER_ROW = 3  # 0-based: a title, an "updated" line and a blank row come first
MANAGERS = ("D. Alvarez", "Kim Nguyen", "R. Patel", "Sam O'Neil", "T. Brooks")
NOTES = ("", "", "", "call before visit", "PPA renewal 2027", "interested in EV fleet", "DR candidate",
         "billing dispute open", "solar RFP")
DUPLICATE_RATE = 0.04
CREATED = dt.datetime(2026, 1, 5, 9, 0, 0)  # fixed document metadata: the same seed gives the same bytes


def is_key(customer: dict, n_accounts: int) -> bool:
    """Who the key-accounts team tracks: big, public, multi-site, or with a key-account contact."""
    if customer["kind"] == "residential":
        return False
    roles = {r for c in customer["contacts"] for r in c["roles"]}
    return customer["kind"] in ("industrial", "public") or n_accounts >= 3 or "key_account" in roles


def _account_cell(aid: str, rng: np.random.Generator) -> tuple[object, list[str]]:
    r = rng.random()
    if r < 0.2:
        return None, ["missing_account"]
    if r < 0.23:
        d = list(aid[1:])
        k = int(rng.integers(len(d) - 1))
        d[k], d[k + 1] = d[k + 1], d[k]
        return "A" + "".join(d), (["account_typo"] if d != list(aid[1:]) else [])
    if r < 0.45:
        return int(aid[1:]), ["account_number_cell"]
    if r < 0.55:
        return aid[1:], ["account_short"]
    return aid, []


class KeyAccounts:
    """Writes ``key_accounts.xlsx`` and ``truth/key_accounts.csv``; rows are buffered (one per key site)."""

    source = "key_accounts"
    file = "key_accounts.xlsx"

    def __init__(self, root: Path, manifest: dict):
        self.path = root / self.file
        self.truth = Truth(root, self.source)
        self.rows: dict[str, list[tuple]] = {s: [] for s in SHEETS}
        self.as_of = dt.date.fromisoformat(manifest["months"][-1] + "-01")

    def add(self, chunk: BaseChunk, rng: np.random.Generator) -> None:
        energy: dict[str, int] = {}
        for b in chunk.bills:
            wh = sum(line["quantity"] for line in b["lines"] if line["unit"] == "Wh")
            energy[b["account_id"]] = energy.get(b["account_id"], 0) + wh
        months = max(1, len({b["period_start"] for b in chunk.bills}))
        for c in chunk.customers:
            accounts = chunk.accounts_of.get(c["customer_id"], [])
            if not is_key(c, len(accounts)):
                continue
            sheet = SHEETS[1] if c["kind"] == "public" else SHEETS[0]
            contact = next((k for k in c["contacts"] if "key_account" in k["roles"]), c["contacts"][0])
            phone = next((ch["address"] for ch in contact["channels"] if ch["type"] != "email"), None)
            manager = nm.pick(rng, MANAGERS)
            chain = chunk.owner_chain(c)
            parent = chain[-1]["legal_name"] if chain else None  # the decision maker the team calls on
            for a in accounts:
                sp = chunk.sp_of_account.get(a["account_id"])
                if sp is None:
                    continue
                annual = round(energy.get(a["account_id"], 0) * 12 / months / 1e6, 0) * 1000  # typed, rounded
                copies = 2 if rng.random() < DUPLICATE_RATE else 1
                for copy in range(copies):
                    name, d1 = messy.hand_typed_name(c["name"], rng, person=False)
                    address, d2 = messy.hand_typed_address(sp["premise_address"], rng)
                    account, d3 = _account_cell(a["account_id"], rng)
                    owner, d4 = messy.hand_typed_name(parent, rng, person=False) if parent else (None, [])
                    if owner is not None and rng.random() < 0.25:
                        owner, d4 = None, ["missing_parent"]
                    defects = d1 + d2 + d3 + [f"parent_{d}" if not d.startswith("missing") else d for d in d4] + \
                        (["duplicate"] if copy else []) + (["stale"] if a["status"] != "active" else [])
                    visit = self.as_of - dt.timedelta(days=int(rng.integers(5, 700)))
                    row = (name, owner, address, account, manager if copy == 0 else nm.pick(rng, MANAGERS),
                           contact["name"], messy.national_phone(phone, rng) if phone and rng.random() < 0.85
                           else None, annual if rng.random() < 0.8 else None, visit, nm.pick(rng, NOTES))
                    self.rows[sheet].append(row)
                    self.truth.record(f"{self.file}#{sheet}", len(self.rows[sheet]), a["account_id"],
                                      c["customer_id"], defects, c.get("entity_id"))

    def close(self) -> dict:
        wb = xlsxwriter.Workbook(str(self.path), {"constant_memory": True})
        wb.set_properties({"title": "Key accounts", "author": "Key Accounts Team", "created": CREATED})
        bold = wb.add_format({"bold": True})
        date = wb.add_format({"num_format": "yyyy-mm-dd"})
        for sheet in SHEETS:
            ws = wb.add_worksheet(sheet)
            ws.write_string(0, 0, f"{sheet} - Central Valley Region", bold)
            ws.write_string(1, 0, f"Updated {self.as_of.isoformat()} by the key accounts team")
            for j, h in enumerate(HEADER):
                ws.write_string(HEADER_ROW, j, h, bold)
            for i, row in enumerate(self.rows[sheet], start=HEADER_ROW + 1):
                for j, v in enumerate(row):
                    if v is None or v == "":
                        continue
                    if isinstance(v, dt.date):
                        ws.write_datetime(i, j, dt.datetime(v.year, v.month, v.day), date)
                    elif isinstance(v, (int, float)):
                        ws.write_number(i, j, v)
                    else:
                        ws.write_string(i, j, v)
        wb.close()
        self.truth.close()
        return {"kind": "file", "format": "xlsx", "file": self.file, "header_row": HEADER_ROW + 1,
                "sheets": {s: len(r) for s, r in self.rows.items()}, "truth": f"truth/{self.source}.csv"}
