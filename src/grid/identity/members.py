"""Normalized identity records (:class:`Member`) and the index keys they are found by.

A customer is known to the resolver as one or more members: one built from its context (names, addresses,
phones, e-mails, tax ids, account / service point / meter ids) and one per source record linked to it. Every value
is normalized once, when the member is built: names and addresses by :mod:`grid.normalize`, phones to E.164 by
``phonenumbers``, e-mails case-folded, tax ids to their digits. Comparing a record with a customer compares it
with each member and keeps the best, so the evidence points at the one record that matched.

Keys (:func:`keys_of`) are ``(kind, value)`` pairs: deterministic keys (``account_id``, ``meter_id``...) that
name a customer, and blocking keys that only gather candidates to compare. Several blocking keys, each built from
different fields, so a typo in one field still leaves the record in some block with its match:

- ``phone``: the E.164 number;  ``email``: the address;
- ``zip_house``: ZIP + house number (a name typo, a misspelt street);
- ``house_street``: house number + the street name's metaphone (a wrong or missing ZIP);
- ``name_zip``: the name's sorted token metaphones + ZIP (a wrong house number, a moved phone);
- ``name``: the name's sorted token metaphones alone (records with no address); big blocks are skipped.
"""
from __future__ import annotations

import functools
import re

import jellyfish
import msgspec
import phonenumbers

from grid.identity.evidence import Evidence, record_key
from grid.normalize import normalize_address as _normalize_address, normalize_name as _normalize_name

__all__ = ["Member", "member_of_evidence", "member_of_context", "keys_of", "DETERMINISTIC", "BLOCKING",
           "normalize_phone", "normalize_email", "normalize_tax_id", "GENERATIONS", "split_address"]

# A context repeats its addresses (premise, billing, mailing) and a base repeats names and streets: normalize
# each distinct string once (bounded, so a long import cannot grow it without end).
normalize_address = functools.lru_cache(maxsize=1 << 16)(_normalize_address)
normalize_name = functools.lru_cache(maxsize=1 << 16)(_normalize_name)
metaphone = functools.lru_cache(maxsize=1 << 16)(jellyfish.metaphone)

DETERMINISTIC = ("customer_id", "account_id", "service_point_id", "meter_id", "tax_id", "email_verified",
                 "record")
BLOCKING = ("phone", "email", "zip_house", "house_street", "name_zip", "name", "tax_id")
GENERATIONS = frozenset({"jr", "sr", "ii", "iii", "iv", "2nd", "3rd"})
_DIGITS = re.compile(r"\D")


class Member(msgspec.Struct, omit_defaults=True):
    """One normalized identity record of a customer (lists: a context has several addresses, phones...)."""

    customer_id: str | None
    label: str  # "context" or the record key (source:record_id)
    source: str
    at: str | None = None
    kind: str | None = None
    names: list[str] = []
    addresses: list[str] = []
    phones: list[str] = []
    emails: list[str] = []
    verified_emails: list[str] = []
    tax_ids: list[str] = []
    account_ids: list[str] = []
    service_point_ids: list[str] = []
    meter_ids: list[str] = []
    values: dict[str, str] = {}  # the record's raw values (golden record provenance)


def normalize_phone(phone: str | None, region: str = "US") -> str | None:
    """E.164 (``+14155550134``) or None when the text is not a possible number."""
    if not phone:
        return None
    if region == "US":  # North American numbers written any usual way: the digits say it (phonenumbers is slow)
        digits = _DIGITS.sub("", phone)
        plain = not any(c.isalpha() for c in phone)
        if plain and len(digits) == 10 and digits[0] in "23456789" and not phone.lstrip().startswith("+"):
            return "+1" + digits
        if plain and len(digits) == 11 and digits[0] == "1" and digits[1] in "23456789":
            return "+" + digits
    try:
        n = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(n):
        return None
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.strip().casefold()


def normalize_tax_id(tax_id: str | None, ignore: frozenset[str] = frozenset()) -> str | None:
    """Digits of a tax id (``12-3456789`` -> ``123456789``); placeholders clerks key for "unknown" are None."""
    if not tax_id:
        return None
    digits = _DIGITS.sub("", tax_id)
    if len(digits) < 6 or digits in ignore or len(set(digits)) == 1:
        return None
    return digits


def _add(values: list[str], value: str | None) -> None:
    if value and value not in values:
        values.append(value)


def member_of_evidence(ev: Evidence, customer_id: str | None = None, region: str = "US",
                       ignore_tax_ids: frozenset[str] = frozenset()) -> Member:
    """The normalized member of one incoming record."""
    m = Member(customer_id=customer_id, label=record_key(ev), source=ev.source, at=ev.at, kind=ev.kind)
    if ev.name:
        _add(m.names, normalize_name(ev.name))
    for a in (ev.address, ev.mailing_address):
        if a:
            _add(m.addresses, normalize_address(a))
    _add(m.phones, normalize_phone(ev.phone, region))
    email = normalize_email(ev.email)
    _add(m.emails, email)
    if ev.email_verified:
        _add(m.verified_emails, email)
    _add(m.tax_ids, normalize_tax_id(ev.tax_id, ignore_tax_ids))
    _add(m.account_ids, ev.account_id)
    _add(m.service_point_ids, ev.service_point_id)
    _add(m.meter_ids, ev.meter_id)
    m.values = {k: v for k, v in msgspec.structs.asdict(ev).items()
                if isinstance(v, str) and v and k not in ("source", "record_id", "at", "customer_id")}
    if ev.customer_id:
        m.values["customer_id"] = ev.customer_id
    return m


def member_of_context(rec: dict, region: str = "US", ignore_tax_ids: frozenset[str] = frozenset()) -> Member:
    """The member a customer's context makes: every name, address, phone, e-mail, tax id and id it holds.

    E-mails in a context's contacts count as verified (the utility keeps them; a source's web-form address
    does not count until confirmed).
    """
    m = Member(customer_id=rec["customer_id"], label="context", source="context", at=rec.get("created_at"),
               kind=rec.get("kind"))
    if rec.get("name"):
        _add(m.names, normalize_name(rec["name"]))
    for e in rec.get("ownership") or []:
        if e.get("legal_name"):
            _add(m.names, normalize_name(e["legal_name"]))
        if e.get("mailing_address"):
            _add(m.addresses, normalize_address(e["mailing_address"]))
        _add(m.tax_ids, normalize_tax_id(e.get("tax_id"), ignore_tax_ids))
    for a in rec.get("accounts") or []:
        _add(m.account_ids, a.get("account_id"))
        if a.get("billing_address"):
            _add(m.addresses, normalize_address(a["billing_address"]))
        for sp in a.get("service_points") or []:
            _add(m.service_point_ids, sp.get("service_point_id"))
            _add(m.meter_ids, sp.get("meter_id"))
            if sp.get("premise_address"):
                _add(m.addresses, normalize_address(sp["premise_address"]))
    for c in rec.get("contacts") or []:
        for ch in c.get("channels") or []:
            if ch.get("type") == "email":
                email = normalize_email(ch.get("address"))
                _add(m.emails, email)
                _add(m.verified_emails, email)
            elif ch.get("type") in ("sms", "voice", "phone"):
                _add(m.phones, normalize_phone(ch.get("address"), region))
    attrs = rec.get("attributes") or {}
    if isinstance(attrs.get("phone"), str):
        _add(m.phones, normalize_phone(attrs["phone"], region))
    return m


@functools.lru_cache(maxsize=1 << 16)
def split_address(addr: str) -> tuple[str | None, str | None, str | None]:
    """(house number, street name, ZIP) of a normalized address; None where the address has none."""
    tokens = addr.split()
    if not tokens:
        return None, None, None
    house = tokens[0] if tokens[0][:1].isdigit() else None
    zip5 = tokens[-1] if len(tokens[-1]) == 5 and tokens[-1].isdigit() and len(tokens) > 1 else None
    street = None
    rest = tokens[1:] if house else tokens
    for t in rest:
        if t in ("n", "s", "e", "w", "ne", "nw", "se", "sw"):
            continue
        street = t
        break
    return house, street, zip5


@functools.lru_cache(maxsize=1 << 16)
def name_code(name: str) -> str:
    """Sorted metaphones of a name's tokens, generation suffixes left out (``smith john`` = ``john smith``)."""
    codes = sorted(metaphone(t) or t for t in name.split() if t not in GENERATIONS)
    return " ".join(codes)


def keys_of(m: Member) -> list[tuple[str, str]]:
    """Every deterministic and blocking key of a member, without repeats."""
    out: list[tuple[str, str]] = []
    if m.customer_id:
        out.append(("customer_id", m.customer_id))
    if m.label != "context":
        out.append(("record", m.label))
    out += [("account_id", v) for v in m.account_ids]
    out += [("service_point_id", v) for v in m.service_point_ids]
    out += [("meter_id", v) for v in m.meter_ids]
    out += [("tax_id", v) for v in m.tax_ids]
    out += [("email_verified", v) for v in m.verified_emails]
    out += [("phone", v) for v in m.phones]
    out += [("email", v) for v in m.emails]
    zips = set()
    for a in m.addresses:
        house, street, zip5 = split_address(a)
        if zip5:
            zips.add(zip5)
        if house and zip5:
            out.append(("zip_house", f"{zip5} {house}"))
        if house and street:
            out.append(("house_street", f"{house} {metaphone(street) or street}"))
    for n in m.names:
        code = name_code(n)
        if not code:
            continue
        out.append(("name", code))
        out += [("name_zip", f"{code}|{z}") for z in sorted(zips)]
    return list(dict.fromkeys(out))
