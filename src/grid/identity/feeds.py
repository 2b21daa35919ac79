"""Evidence records from the generator's messy sources (``grid.synth.sources``), each with its true customer.

What the precision/recall test and ``bench/bench_identity.py`` resolve: every row of the web form, the
key-accounts workbook, the tax roll and the billing system's customer table, mapped to :class:`Evidence` the way
an import source would map it (the billing rows without their customer number: the point is to find the
duplicates a clerk keyed under new numbers). Truth comes from ``truth/<source>.csv``; a row whose truth is
empty belongs to nobody (a stranger's web form, a vacant parcel).
"""
from __future__ import annotations

import csv
from pathlib import Path

from grid.identity.evidence import Evidence
from grid.synth.sources import read_truth

__all__ = ["feed_records", "SOURCES"]

SOURCES = ("web_contacts", "key_accounts", "tax_roll", "billing")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _text(v) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip() or None


def _web(feeds: Path) -> list[tuple[Evidence, str | None]]:
    truth = {t["key"]: t["customer_id"] for t in read_truth(feeds, "web_contacts")}
    out = []
    for r in _csv(feeds / "web_contacts.csv"):
        name = " ".join(p for p in (r["first_name"], r["last_name"]) if p)
        out.append((Evidence(source="web_form", record_id=r["submission_id"], name=name or None,
                             email=_text(r["email"]), phone=_text(r["mobile"]), address=_text(r["service_address"]),
                             account_id=_text(r["account_number"]), at=_text(r["submitted_at"])),
                    truth.get(r["submission_id"])))
    return out


def _key_accounts(feeds: Path) -> list[tuple[Evidence, str | None]]:
    from python_calamine import CalamineWorkbook

    truth = {(t["file"], t["row"]): t["customer_id"] for t in read_truth(feeds, "key_accounts")}
    wb = CalamineWorkbook.from_path(str(feeds / "key_accounts.xlsx"))
    out = []
    for sheet in wb.sheet_names:
        rows = wb.get_sheet_by_name(sheet).to_python()
        header_at = next(i for i, r in enumerate(rows) if r and r[0] == "Customer")
        header = rows[header_at]
        for n, row in enumerate(rows[header_at + 1:], start=1):
            r = dict(zip(header, row))
            if not _text(r.get("Customer")):
                continue
            key = (f"key_accounts.xlsx#{sheet}", n)
            out.append((Evidence(source="key_accounts", record_id=f"{sheet}:{n}", name=_text(r["Customer"]),
                                 address=_text(r["Site Address"]), account_id=_text(r["Account #"]),
                                 phone=_text(r["Phone"]), kind="commercial"), truth.get(key)))
    return out


def _tax_roll(feeds: Path) -> list[tuple[Evidence, str | None]]:
    truth = {t["key"]: t["customer_id"] for t in read_truth(feeds, "tax_roll")}
    out = []
    for r in _csv(feeds / "tax_roll.csv"):
        situs = ", ".join(p for p in (r["SITUS_ADDRESS"], r["SITUS_CITY"], f"CA {r['SITUS_ZIP']}") if p)
        mail = ", ".join(p for p in (r["MAIL_ADDRESS"], r["MAIL_CITY_STATE_ZIP"]) if p)
        out.append((Evidence(source="tax_roll", record_id=r["APN"], name=_text(r["OWNER_NAME"]), address=situs,
                             mailing_address=mail or None), truth.get(r["APN"])))
    return out


def _billing(feeds: Path) -> list[tuple[Evidence, str | None]]:
    truth = {t["key"]: t["customer_id"] for t in read_truth(feeds, "billing")
             if t["file"] == "billing/customers.csv"}
    out = []
    for r in _csv(feeds / "billing" / "customers.csv"):
        mail = ", ".join(p for p in (r["mailing_street"], r["mailing_city"],
                                     f"{r['mailing_state']} {r['mailing_zip']}".strip()) if p)
        out.append((Evidence(source="billing", record_id=r["customer_number"], name=_text(r["name"]),
                             tax_id=_text(r["tax_id"]), mailing_address=mail or None, phone=_text(r["phone"]),
                             email=_text(r["email"]), at=_text(r["updated_at"])),
                    truth.get(r["customer_number"])))
    return out


_READERS = {"web_contacts": _web, "key_accounts": _key_accounts, "tax_roll": _tax_roll, "billing": _billing}


def feed_records(feeds_dir: str | Path, sources=SOURCES) -> list[tuple[Evidence, str | None]]:
    """(evidence, true customer id or None) for every row of the named sources, in source then file order."""
    feeds = Path(feeds_dir)
    return [pair for s in sources for pair in _READERS[s](feeds)]
