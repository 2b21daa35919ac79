"""A customer's context record and the writes that change it.

The record is a plain, msgpack-able dict (DOMAIN.md section 1) so that it travels through Ray, the write-ahead
log and snapshots unchanged; interval usage and bills are held columnar beside it (grid.usage). Every write is
a pure function ``(record, body) -> new record`` that validates everything first and returns a fresh record, so a
rejected write changes nothing and a WAL replay re-applies exactly what was acknowledged.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib

from grid.errors import InvalidInput

CONTEXT_FIELDS = ("customer_id", "name", "kind", "segment", "created_at", "version", "attributes", "ownership",
                  "accounts", "contacts", "payments", "events", "notes", "supplemental", "classification")
KINDS = ("residential", "commercial", "industrial", "public")


def summary(rec: dict) -> dict:
    """The listing view of a context."""
    return {
        "customer_id": rec["customer_id"], "name": rec["name"], "kind": rec["kind"], "segment": rec["segment"],
        "accounts": len(rec["accounts"]),
        "service_points": sum(len(a["service_points"]) for a in rec["accounts"]),
    }


def matches(rec: dict, filters: dict) -> bool:
    """Whether a context passes the listing filters (all must hold)."""
    for key, want in filters.items():
        if key in ("kind", "segment"):
            if rec.get(key) != want:
                return False
        elif key == "rate_plan_id":
            if not any(a["rate_plan_id"] == want for a in rec["accounts"]):
                return False
        elif key == "program":
            if not any(p["code"] == want for a in rec["accounts"] for p in a["programs"]):
                return False
        elif key == "load_priority":
            if not any(sp["load_priority"] == want for a in rec["accounts"] for sp in a["service_points"]):
                return False
        elif key == "has_solar":
            if any(sp["has_solar"] for a in rec["accounts"] for sp in a["service_points"]) != want:
                return False
        elif key == "name":
            if want.lower() not in rec["name"].lower():
                return False
        else:
            raise InvalidInput(f"unknown filter {key!r}", field=key)
    return True


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def apply_patch(rec: dict, body: dict, write_id: str, at: str | None = None) -> dict:
    """A new record with ``body`` (a CustomerPatch, see api/openapi.yaml) applied; ``rec`` is untouched.

    ``at`` is the write's timestamp, fixed when the write is first accepted so that a replay yields the same
    record.
    """
    at = at or _now()
    # Structural sharing: copy only the parts this patch changes (a deep copy of a large context per write
    # was the write path's main cost); records are never mutated in place, so sharing the rest is safe.
    new = dict(rec)
    for key in ("name", "segment"):
        if key in body:
            if not isinstance(body[key], str) or not body[key]:
                raise InvalidInput(f"{key} must be a non-empty string", field=key)
            new[key] = body[key]
    if "attributes" in body:
        attrs = body["attributes"]
        if not isinstance(attrs, dict):
            raise InvalidInput("attributes must be an object", field="attributes")
        new["attributes"] = dict(new["attributes"])
        for k, v in attrs.items():
            if v is None:
                new["attributes"].pop(k, None)
            else:
                new["attributes"][k] = v
    if "contacts" in body:
        _patch_contacts(new, body["contacts"])
    if "programs" in body:
        _patch_programs(new, body["programs"], at[:10])
    if "notes" in body:
        new["notes"] = list(new["notes"])
        for i, note in enumerate(body["notes"].get("add", [])):
            if not isinstance(note, dict) or not isinstance(note.get("text"), str) or not note["text"]:
                raise InvalidInput("a note needs non-empty text", field=f"notes.add[{i}].text")
            note_id = "N" + hashlib.sha1(f"{write_id}:{i}".encode()).hexdigest()[:12]
            new["notes"].append({"note_id": note_id, "text": note["text"], "author": note.get("author", ""),
                                 "created_at": at})
    if "supplemental" in body:
        _patch_supplemental(new, body["supplemental"], write_id, at)
    new["version"] = rec["version"] + 1
    return new


def _patch_supplemental(new: dict, body: dict, write_id: str, at: str) -> None:
    sup = dict(new.get("supplemental") or {})
    projects = list(sup.get("projects") or [])
    req = body.get("projects") or {}
    ids = {p["project_id"] for p in projects}
    for i, pid in enumerate(req.get("remove", [])):
        if pid not in ids:
            raise InvalidInput(f"no project {pid!r} on this customer", field=f"supplemental.projects.remove[{i}]")
    projects = [p for p in projects if p["project_id"] not in set(req.get("remove", []))]
    for i, p in enumerate(req.get("add", [])):
        pid = "PRJ" + hashlib.sha1(f"{write_id}:{i}".encode()).hexdigest()[:10]
        projects.append({"project_id": pid, "name": p["name"], "start_date": p["start_date"],
                         "expected_kwh_per_month": int(p["expected_kwh_per_month"]), "note": p.get("note", ""),
                         "created_at": at})
    sup["projects"] = projects
    new["supplemental"] = sup


def _patch_contacts(new: dict, body: dict) -> None:
    by_id = {c["contact_id"]: c for c in new["contacts"]}
    for i, cid in enumerate(body.get("remove", [])):
        if cid not in by_id:
            raise InvalidInput(f"no contact {cid!r} on this customer", field=f"contacts.remove[{i}]")
        del by_id[cid]
    for c in body.get("upsert", []):
        merged = dict(by_id.get(c["contact_id"], {"name": "", "roles": [], "channels": []}))
        merged.update(copy.deepcopy(c))
        merged["channels"] = [dict(ch) for ch in merged["channels"]]
        for ch in merged["channels"]:
            ch.setdefault("preference", 1)
            ch.setdefault("quiet_hours", None)
        by_id[c["contact_id"]] = merged
    new["contacts"] = list(by_id.values())


def _patch_programs(new: dict, body: dict, today: str) -> None:
    new["accounts"] = [dict(a, programs=list(a["programs"])) for a in new["accounts"]]
    accounts = {a["account_id"]: a for a in new["accounts"]}
    for group in ("remove", "add"):
        for i, item in enumerate(body.get(group, [])):
            acct = accounts.get(item["account_id"])
            if acct is None:
                raise InvalidInput(f"no account {item['account_id']!r} on this customer",
                                   field=f"programs.{group}[{i}].account_id")
            codes = [p["code"] for p in acct["programs"]]
            if group == "remove":
                if item["code"] not in codes:
                    raise InvalidInput(f"account {acct['account_id']} is not enrolled in {item['code']}",
                                       field=f"programs.remove[{i}].code")
                acct["programs"] = [p for p in acct["programs"] if p["code"] != item["code"]]
            elif item["code"] not in codes:
                acct["programs"].append({"code": item["code"],
                                         "enrolled": item.get("enrolled") or today})


def validate_replacement(customer_id: str, body: dict, at: str | None = None) -> dict:
    """A whole context given by a client, checked for the fields every reader relies on.

    ``at`` stamps ``created_at`` when the client gave none (fixed when the write is accepted, for replay).
    """
    if not isinstance(body, dict):
        raise InvalidInput("a context must be an object", field="body")
    unknown = set(body) - set(CONTEXT_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    if body.get("customer_id", customer_id) != customer_id:
        raise InvalidInput("customer_id differs from the addressed customer", field="customer_id")
    if body.get("kind") not in KINDS:
        raise InvalidInput(f"kind must be one of {KINDS}", field="kind")
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise InvalidInput("name must be a non-empty string", field="name")
    rec = {"customer_id": customer_id, "name": body["name"], "kind": body["kind"],
           "segment": body.get("segment", body["kind"]), "created_at": body.get("created_at") or at or _now(),
           "version": 0, "attributes": dict(body.get("attributes") or {}),
           "ownership": list(body.get("ownership") or []), "accounts": list(body.get("accounts") or []),
           "contacts": list(body.get("contacts") or []), "payments": list(body.get("payments") or []),
           "events": list(body.get("events") or []), "notes": list(body.get("notes") or []),
           "supplemental": dict(body.get("supplemental") or {"projects": []}),
           "classification": dict(body.get("classification") or {})}
    for i, a in enumerate(rec["accounts"]):
        for key in ("account_id", "rate_plan_id"):
            if not isinstance(a.get(key), str):
                raise InvalidInput(f"accounts[{i}].{key} must be a string", field=f"accounts[{i}].{key}")
        a.setdefault("status", "active")
        a.setdefault("programs", [])
        a.setdefault("service_points", [])
        a.setdefault("bill_cycle_day", 1)
        a.setdefault("billing_address", "")
    return rec
