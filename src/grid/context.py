"""A customer's context record and the writes that change it.

The record is a plain, msgpack-able dict (``grid.model.CustomerContext`` as builtins) so that it travels through
Ray, the write-ahead log and snapshots unchanged; interval usage and bills are held columnar beside it
(grid.usage). Every write is a pure function ``(record, body) -> new record``: the body is decoded once by
``grid.model`` (strict, defaults filled, the offending field named), then applied; a rejected write changes
nothing and a WAL replay re-applies exactly what was acknowledged.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from msgspec import UNSET

from grid import model
from grid.contacts.addresses import normalize_channel  # contacts: email-validator, phonenumbers
from grid.errors import Conflict, InvalidInput

CONTEXT_FIELDS = tuple(model.CustomerContext.__struct_fields__)
KINDS = model.KINDS


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
        elif key == "churn_risk_gte":  # decisions: set by the churn model (grid.decisions.churn)
            risk = (rec.get("classification") or {}).get("churn_risk")
            if risk is None or risk < want:
                return False
        else:
            raise InvalidInput(f"unknown filter {key!r}", field=key)
    return True


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def apply_patch(rec: dict, body: dict, write_id: str, at: str | None = None) -> dict:
    """A new record with ``body`` (a ``grid.model.CustomerPatch``) applied; ``rec`` is untouched.

    ``at`` is the write's timestamp, fixed when the write is first accepted so that a replay yields the same
    record.
    """
    at = at or _now()
    patch = model.decode(model.CustomerPatch, body)
    if not model.to_record(patch):
        raise InvalidInput("a patch needs at least one field", field="body", reason="minProperties")
    # Structural sharing: copy only the parts this patch changes (a deep copy of a large context per write
    # was the write path's main cost); records are never mutated in place, so sharing the rest is safe.
    new = dict(rec)
    if patch.name is not UNSET:
        new["name"] = patch.name
    if patch.segment is not UNSET:
        new["segment"] = patch.segment
    if patch.attributes is not UNSET:
        new["attributes"] = dict(new["attributes"])
        for k, v in patch.attributes.items():
            if v is None:
                new["attributes"].pop(k, None)
            else:
                new["attributes"][k] = v
    if patch.contacts is not UNSET:
        _patch_contacts(new, patch.contacts)
    if patch.programs is not UNSET:
        _patch_programs(new, patch.programs, at[:10])
    if patch.notes is not UNSET:
        new["notes"] = list(new["notes"])
        for i, note in enumerate(patch.notes.add):
            note_id = "N" + hashlib.sha1(f"{write_id}:{i}".encode()).hexdigest()[:12]
            new["notes"].append({"note_id": note_id, "text": note.text, "author": note.author, "created_at": at,
                                 # contacts: a note is internal unless marked for the customer (issue 10)
                                 "visibility": "internal" if note.visibility is UNSET else note.visibility})
    if patch.supplemental is not UNSET:
        _patch_supplemental(new, patch.supplemental, write_id, at)
    _check_growth(new)
    new["version"] = rec["version"] + 1
    return new


# h3 (issue 10): what patches grow stays within the stored context's bounds (grid.model's Meta(max_length)):
# each patch is small, but repeated patches grew notes and attributes without end.
_MOST = {"notes": 1000, "contacts": 50, "attributes": 200}
_MOST_PROJECTS, _MOST_PROGRAMS = 200, 50


def _check_growth(new: dict) -> None:
    for key, most in _MOST.items():
        if len(new.get(key) or ()) > most:
            raise InvalidInput(f"{key} would hold {len(new[key])} entries; at most {most} (remove some first)",
                               field=key, reason="maxItems")
    projects = (new.get("supplemental") or {}).get("projects") or ()
    if len(projects) > _MOST_PROJECTS:
        raise InvalidInput(f"supplemental.projects would hold {len(projects)} entries; at most {_MOST_PROJECTS}",
                           field="supplemental.projects", reason="maxItems")
    for i, account in enumerate(new.get("accounts") or ()):
        if len(account.get("programs") or ()) > _MOST_PROGRAMS:
            raise InvalidInput(f"accounts[{i}].programs would hold more than {_MOST_PROGRAMS} programs",
                               field="programs.add", reason="maxItems")


def _patch_supplemental(new: dict, body: model.SupplementalPatch, write_id: str, at: str) -> None:
    sup = dict(new.get("supplemental") or {})
    projects = list(sup.get("projects") or [])
    req = body.projects
    ids = {p["project_id"] for p in projects}
    for i, pid in enumerate(req.remove):
        if pid not in ids:
            raise InvalidInput(f"no project {pid!r} on this customer", field=f"supplemental.projects.remove[{i}]")
    gone = set(req.remove)
    projects = [p for p in projects if p["project_id"] not in gone]
    for i, p in enumerate(req.add):
        pid = "PRJ" + hashlib.sha1(f"{write_id}:{i}".encode()).hexdigest()[:10]
        projects.append(model.to_record(model.Project(project_id=pid, name=p.name, start_date=p.start_date,
                                                      expected_kwh_per_month=p.expected_kwh_per_month,
                                                      note=p.note, created_at=at)))
    sup["projects"] = projects
    new["supplemental"] = sup


def _patch_contacts(new: dict, body: model.ContactsPatch) -> None:
    by_id = {c["contact_id"]: c for c in new["contacts"]}
    for i, cid in enumerate(body.remove):
        if cid not in by_id:
            raise InvalidInput(f"no contact {cid!r} on this customer", field=f"contacts.remove[{i}]")
        del by_id[cid]
    for i, c in enumerate(body.upsert):
        merged = dict(by_id.get(c.contact_id, {"name": "", "roles": [], "channels": []}))
        merged.update(model.to_record(c))  # fields left out (UNSET) keep their stored values
        if c.channels is not UNSET:  # contacts: addresses a mail server / phone network accepts, normalized
            merged["channels"] = [normalize_channel(ch, f"contacts.upsert[{i}].channels[{j}]")
                                  for j, ch in enumerate(merged["channels"])]
        by_id[c.contact_id] = merged
    new["contacts"] = list(by_id.values())


def _patch_programs(new: dict, body: model.ProgramsPatch, today: str) -> None:
    new["accounts"] = [dict(a, programs=list(a["programs"])) for a in new["accounts"]]
    accounts = {a["account_id"]: a for a in new["accounts"]}
    for group, items in (("remove", body.remove), ("add", body.add)):
        for i, item in enumerate(items):
            acct = accounts.get(item.account_id)
            if acct is None:
                raise InvalidInput(f"no account {item.account_id!r} on this customer",
                                   field=f"programs.{group}[{i}].account_id")
            codes = [p["code"] for p in acct["programs"]]
            if group == "remove":
                if item.code not in codes:
                    raise InvalidInput(f"account {acct['account_id']} is not enrolled in {item.code}",
                                       field=f"programs.remove[{i}].code")
                acct["programs"] = [p for p in acct["programs"] if p["code"] != item.code]
            elif item.code not in codes:
                enrolled = item.enrolled.isoformat() if item.enrolled else today
                acct["programs"].append({"code": item.code, "enrolled": enrolled})


def validate_replacement(customer_id: str, body: dict, at: str | None = None) -> dict:
    """A whole context given by a client (``grid.model.ContextIn``) as the record the shard stores.

    Every default is filled here, once: ``segment`` from ``kind``, ``created_at`` and a program's ``enrolled``
    from ``at`` (the write's time, fixed when the write is accepted, for replay), service points' ``has_solar``
    and ``load_priority``. Ids must be unique within the context (a service point listed twice is refused).
    """
    at = at or _now()
    ctx = model.decode(model.ContextIn, body)
    if ctx.customer_id is not None and ctx.customer_id != customer_id:
        raise InvalidInput("customer_id differs from the addressed customer", field="customer_id")
    _check_unique(ctx)
    day = dt.date.fromisoformat(at[:10])
    for a in ctx.accounts:
        for p in a.programs:
            if p.enrolled is None:
                p.enrolled = day
    for n in ctx.notes:
        if not n.created_at:
            n.created_at = at
    for p in ctx.supplemental.projects:
        if not p.created_at:
            p.created_at = at
    rec = model.CustomerContext(
        customer_id=customer_id, name=ctx.name, kind=ctx.kind, segment=ctx.segment or ctx.kind,
        created_at=ctx.created_at or at, version=0, attributes=ctx.attributes, ownership=ctx.ownership,
        accounts=ctx.accounts, contacts=ctx.contacts, payments=ctx.payments, events=ctx.events, notes=ctx.notes,
        supplemental=ctx.supplemental, classification=ctx.classification)
    return model.to_record(rec)


def _check_unique(ctx: model.ContextIn) -> None:
    """Ids that name one thing must not repeat inside a context (a service point listed twice is refused)."""
    ids = [(f"accounts[{ai}].account_id", "account", a.account_id) for ai, a in enumerate(ctx.accounts)]
    ids += [(f"accounts[{ai}].service_points[{si}].service_point_id", "service point", sp.service_point_id)
            for ai, a in enumerate(ctx.accounts) for si, sp in enumerate(a.service_points)]
    ids += [(f"contacts[{ci}].contact_id", "contact", c.contact_id) for ci, c in enumerate(ctx.contacts)]
    seen: set[tuple[str, str]] = set()
    for field, what, value in ids:
        if (what, value) in seen:
            raise InvalidInput(f"{what} {value!r} is listed twice", field=field, reason="unique")
        seen.add((what, value))


def check_references(customer_id: str, body: dict, rate_plans) -> list[tuple[str, str]]:
    """Check a whole context's references against the grid before it is written.

    ``rate_plans`` is the tariff catalogue (anything answering ``in``): an active account's ``rate_plan_id``
    must name a tariff (422 naming ``accounts[i].rate_plan_id``); a closed account is not billed, so its plan
    may have been retired. Returns the context's service points as ``(field, id)`` for :func:`check_owners`
    (their owners live on every shard, so the caller asks the grid).
    """
    ctx = model.decode(model.ContextIn, body)
    for i, a in enumerate(ctx.accounts):
        if a.status == "active" and a.rate_plan_id not in rate_plans:
            raise InvalidInput(f"no tariff {a.rate_plan_id!r} in the catalogue (GET /v1/tariffs lists them)",
                               field=f"accounts[{i}].rate_plan_id", reason="reference")
    return [(f"accounts[{i}].service_points[{j}].service_point_id", sp.service_point_id)
            for i, a in enumerate(ctx.accounts) for j, sp in enumerate(a.service_points)]


def check_owners(customer_id: str, service_points: list[tuple[str, str]], owners: dict[str, str]) -> None:
    """409 when a service point of the context (``(field, id)`` pairs) is held by another customer."""
    for field, sp in service_points:
        owner = owners.get(sp)
        if owner is not None and owner != customer_id:
            raise Conflict(f"service point {sp} belongs to customer {owner}", field=field)
