"""Contacts with channel preferences, and the timestamped events of a customer's year.

Outages are drawn once per base per city (a storm or a feeder fault takes out part of a town on one day), so
customers of one city share outage ids; every other event is the customer's own.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from grid.synth import names as nm

QUIET_HOURS = ({"start": "21:00", "end": "07:00"}, {"start": "22:00", "end": "08:00"},
               {"start": "20:00", "end": "08:00"}, {"start": "23:00", "end": "06:00"})
WEB_PAGES = ("bill", "usage", "outage-map", "pay", "programs", "start-stop-move", "rate-comparison", "solar")
CALL_REASONS = ("billing question", "high bill", "payment arrangement", "outage report", "start/stop service",
                "program enrollment", "meter read", "rate change")
OFFERABLE = ("GREEN_POWER", "BUDGET_BILLING", "DEMAND_RESPONSE")
OUTAGE_CAUSES = ("storm", "equipment failure", "vehicle accident", "animal contact", "planned maintenance",
                 "heat: transformer overload")


def iso(ts: int) -> str:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ``."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def channels(rng: np.random.Generator, name: str, domain: str | None, *, voice_only_ok: bool = True) -> list[dict]:
    kinds = [k for k, p in (("email", 0.8), ("sms", 0.55), ("voice", 0.85)) if rng.random() < p]
    if not kinds:
        kinds = ["voice" if voice_only_ok else "email"]
    rng.shuffle(kinds)
    out = []
    for pref, kind in enumerate(kinds, start=1):
        if kind == "email":
            address, quiet = nm.email_for(name, rng, domain), None
        else:
            address = nm.phone(rng)
            quiet = dict(nm.pick(rng, QUIET_HOURS)) if rng.random() < 0.55 else None
        out.append({"type": kind, "address": address, "preference": pref, "quiet_hours": quiet})
    return out


def contacts_for(rng: np.random.Generator, kind: str, name: str, *, n_accounts: int, critical: bool,
                 contact_base: int) -> list[dict]:
    """``contact_base``: a base-unique number for the customer; contact ids are ``K<base>-<k>``."""
    out = []
    if kind == "residential":
        out.append({"name": name, "roles": ["billing", "outage"]})
        if rng.random() < 0.3:
            out.append({"name": f"{nm.pick(rng, nm.FIRST_NAMES)} {name.split(' ')[-1]}", "roles": ["outage"]})
        domain = None
    else:
        domain = nm.company_domain(name)
        out.append({"name": nm.person_name(rng), "roles": ["billing"]})
        out.append({"name": nm.person_name(rng), "roles": ["facilities", "outage"]})
        if n_accounts >= 5 or kind in ("industrial", "public") or rng.random() < 0.1:
            out.append({"name": nm.person_name(rng), "roles": ["key_account"]})
        if critical:
            out.append({"name": nm.person_name(rng), "roles": ["emergency", "outage"]})
        if rng.random() < 0.3:  # one person wearing two hats
            out[0]["roles"].append("outage")
    for k, c in enumerate(out, start=1):
        c["contact_id"] = f"K{contact_base:07d}-{k}"
        c["channels"] = channels(rng, c["name"], domain, voice_only_ok=kind == "residential")
    return [{"contact_id": c["contact_id"], "name": c["name"], "roles": c["roles"], "channels": c["channels"]}
            for c in out]


@dataclass(frozen=True)
class OutageCalendar:
    """Per city, the outages of the window: (start epoch seconds, minutes, cause, outage id)."""

    by_city: dict[str, list[tuple[int, int, str, str]]]

    @classmethod
    def draw(cls, rng: np.random.Generator, start_ts: int, end_ts: int) -> "OutageCalendar":
        by_city = {}
        days = (end_ts - start_ts) // 86400
        for city, _ in nm.CITIES:
            n = int(rng.poisson(8 * days / 365))
            events = []
            for k in range(n):
                ts = start_ts + int(rng.integers(0, max(1, end_ts - start_ts)))
                minutes = int(np.clip(rng.lognormal(4.3, 0.9), 5, 2880))
                cause = nm.pick(rng, OUTAGE_CAUSES)
                oid = f"OUT-{iso(ts)[:10].replace('-', '')}-{city[:4].upper().replace(' ', '')}{k:02d}"
                events.append((ts, minutes, cause, oid))
            by_city[city] = sorted(events)
        return cls(by_city)


def city_of(address: str) -> str:
    parts = address.split(", ")
    return parts[-2] if len(parts) >= 3 else ""


def events_for(rng: np.random.Generator, kind: str, city: str, outages: OutageCalendar, start_ts: int,
               end_ts: int, offers_accepted: list[tuple[str, str]]) -> list[dict]:
    """Calls, outages, web visits and offers over ``[start_ts, end_ts)``.

    Accepted offers are appended to ``offers_accepted`` as (program code, YYYY-MM-DD) so the caller can
    enrol the account: an accepted offer and its enrolment tell one story.
    """
    span = max(1, end_ts - start_ts)
    business = kind != "residential"
    out = []
    for _ in range(int(rng.poisson(6.0 if business else 3.5))):
        out.append({"ts": start_ts + int(rng.integers(span)), "type": "web_visit",
                    "detail": {"page": nm.pick(rng, WEB_PAGES)}})
    for _ in range(int(rng.poisson(2.0 if business else 0.9))):
        out.append({"ts": start_ts + int(rng.integers(span)), "type": "call",
                    "detail": {"reason": nm.pick(rng, CALL_REASONS), "minutes": int(rng.integers(2, 40))}})
    for ts, minutes, cause, oid in outages.by_city.get(city, ()):
        if rng.random() < 0.18:  # this customer sits on the affected feeder
            out.append({"ts": ts, "type": "outage", "detail": {"outage_id": oid, "minutes": minutes, "cause": cause}})
    if rng.random() < 0.25:
        code = nm.pick(rng, OFFERABLE)
        ts = start_ts + int(rng.integers(span))
        out.append({"ts": ts, "type": "offer_made", "detail": {"offer": code, "channel": nm.pick(
            rng, ("email", "bill insert", "web", "call"))}})
        if rng.random() < 0.35:
            accepted = min(end_ts - 1, ts + int(rng.integers(3600, 21 * 86400)))
            out.append({"ts": accepted, "type": "offer_accepted", "detail": {"offer": code}})
            offers_accepted.append((code, iso(accepted)[:10]))
    return out


def finish_events(events: list[dict]) -> list[dict]:
    """Sorted by time, timestamps as ISO 8601 UTC text."""
    events.sort(key=lambda e: (e["ts"], e["type"]))
    return [{"ts": iso(e["ts"]), "type": e["type"], "detail": e["detail"]} for e in events]
