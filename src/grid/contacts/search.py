"""Finding a customer the way a call centre does: by name, address, phone, email, account, meter or portfolio.

One pass over a shard's records per query (run on every shard at once by ``Grid.asearch``): a call-centre
search is rare next to reads, and a scan of a shard's contexts stays well under a second at 100k customers,
so no index has to be kept in step with every write. Phone numbers compare by their digits (the last ten, so
"(415) 555-0101" finds "+14155550101"); everything else by case-folded substring.
"""
from __future__ import annotations

import re

MIN_DIGITS = 4  # fewer digits than this is not a phone number worth matching


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _fields(rec: dict):
    """(what, value) pairs of a context that a search may match, most specific first."""
    yield "customer_id", rec["customer_id"]
    for a in rec.get("accounts", []):
        yield "account", a.get("account_id", "")
        for sp in a.get("service_points", []):
            yield "meter", sp.get("meter_id", "")
            yield "service_point", sp.get("service_point_id", "")
    cls = rec.get("classification") or {}
    for pid in [cls.get("portfolio_id"), *(cls.get("portfolio_ids") or [])]:
        if pid:
            yield "portfolio", pid
    yield "name", rec.get("name", "")
    for c in rec.get("contacts", []):
        yield "contact", c.get("name", "")
        for ch in c.get("channels", []):
            yield ("email" if ch.get("type") == "email" else "phone"), ch.get("address", "")
    for a in rec.get("accounts", []):
        yield "address", a.get("billing_address", "")
        for sp in a.get("service_points", []):
            yield "address", sp.get("premise_address", "")
    for e in rec.get("ownership", []):
        yield "owner", e.get("legal_name", "")


def search(records: dict, query: str, limit: int) -> list[dict]:
    """Up to ``limit`` matches ``{customer_id, name, kind, matched, value}``, in customer id order."""
    q = query.strip().casefold()
    digits = _digits(query)
    phone_like = len(digits) >= MIN_DIGITS and len(digits) >= len(re.sub(r"[\s()+.-]", "", query)) - 1
    out = []
    for cid in sorted(records):
        rec = records[cid]
        for what, value in _fields(rec):
            if not value:
                continue
            if what == "phone":
                hit = phone_like and digits[-10:] in _digits(value)
            else:
                hit = q in value.casefold()
            if hit:
                out.append({"customer_id": cid, "name": rec.get("name", ""), "kind": rec.get("kind", ""),
                            "matched": what, "value": value})
                break
        if len(out) >= limit:
            break
    return out
