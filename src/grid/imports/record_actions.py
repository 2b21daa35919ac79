"""Record actions of an ``import_rows`` op: what one row does to a customer's context, applied whole or refused.

``upsert`` (a customer, account, service point, contact or ownership part), ``payment``, ``event``, ``project``
and ``bill`` (a legacy bill). Each row builds the customer's new record from the one before it (the batch's
earlier rows included) and goes through the one context model (:func:`conform`); a row that does not fit
raises ``InvalidInput`` naming its field and is refused. Called by ``grid.imports.apply``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pyarrow as pa

from grid.contacts.addresses import normalize_email, normalize_phone
from grid.context import validate_replacement
from grid.errors import InvalidInput


def _part(cols: dict, prefix: str, i: int) -> dict:
    """The non-null fields of row ``i`` under ``prefix`` (``account.``), keys without the prefix."""
    out = {}
    for k, v in cols.items():
        if k.startswith(prefix) and v[i] is not None:
            out[k[len(prefix):]] = v[i]
    return out


def apply_records(shard, action, cids, offs, digests, cols, at, refused, touched) -> int:
    """Apply a batch's new rows of a record action (``upsert``, ``payment``, ``event``, ``project``, ``bill``).

    Parameters
    ----------
    shard : grid.shard.Shard
    action : str
        The source's ``does``.
    cids, offs, digests : list of str, ndarray of int64, list of str
        Each row's customer, stream offset and row digest (the id of what the row creates).
    cols : dict of str to list
        Mapped fields (``customer.name``, ``payment.amount_cents``, ...), one value per row.
    at : str
        The op's time (ISO 8601), stamped on what is created.
    refused, touched : list, dict
        Filled with ``{"offset", "field", "reason"}`` per refused row, and each customer changed.

    Returns
    -------
    int
        Rows that changed nothing (the context already held them).
    """
    unchanged = 0
    pending: dict[str, dict] = {}
    bills = []
    for i, cid in enumerate(cids):
        rec = pending.get(cid) or shard.records.get(cid)
        try:
            if action == "bill":
                row = _bill(shard, rec, cid, _part(cols, "bill.", i))
                if row is None:
                    unchanged += 1
                else:
                    bills.append(row)
                    touched[cid] = 1
                continue
            new = ACTIONS[action](shard, rec, cid, cols, i, digests[i], at)
        except InvalidInput as exc:
            refused.append({"offset": int(offs[i]), "field": exc.field or "row", "reason": exc.detail})
            continue
        if new is rec:
            unchanged += 1
            continue
        try:
            new = conform(cid, new, at)
        except InvalidInput as exc:
            refused.append({"offset": int(offs[i]), "field": exc.field or "row", "reason": exc.detail})
            continue
        pending[cid] = new
        touched[cid] = 1
    for cid, new in pending.items():
        old = shard.records.get(cid)
        shard.records[cid] = new
        if old is None:
            shard._membership_dirty = True
        shard._index_service_points(old, new)
    if bills:
        from grid.bills import BILL_SCHEMA

        shard.bills.append(pa.Table.from_pylist(bills, schema=BILL_SCHEMA))
    return unchanged


def conform(cid: str, rec: dict, at: str) -> dict:
    """An imported or changed record through the one context model (``grid.context.validate_replacement``).

    What an import builds is checked as a client's ``PUT`` would be: shapes and bounds checked, ids unique, and
    every default filled (a service point's ``has_solar`` and ``load_priority``, an account's ``status``,
    ``programs`` and ``bill_cycle_day``, a program's ``enrolled``), so listing filters, classification and bill
    runs read an imported customer as any other. A record that does not fit raises ``InvalidInput`` naming the
    field (``accounts[0].rate_plan_id``): the row goes to quarantine whole. ``version`` is the shard's.
    """
    body = {k: v for k, v in rec.items() if k != "version"}
    out = validate_replacement(cid, body, at)
    out["version"] = rec.get("version", 0)
    return out


def _need(rec, cid):
    if rec is None:
        raise InvalidInput(f"no customer {cid}", field="customer_id")
    return rec


def _upsert(shard, rec, cid, cols, i, digest, at):
    old = rec
    cust = _part(cols, "customer.", i)
    attrs = {k[len("attributes."):]: v for k, v in cust.items() if k.startswith("attributes.")}
    if rec is None:
        if not cust.get("name"):
            raise InvalidInput(f"no customer {cid} and the row gives no name to create it", field="customer.name")
        rec = {"customer_id": cid, "name": cust["name"], "kind": cust.get("kind", "residential"),
               "segment": cust.get("segment") or cust.get("kind", "residential"), "created_at": at, "version": 0,
               "attributes": {}, "ownership": [], "accounts": [], "contacts": [], "payments": [], "events": [],
               "notes": [], "supplemental": {"projects": []}, "classification": {}}
    new = dict(rec)
    for k in ("name", "kind", "segment"):
        if k in cust:
            new[k] = cust[k]
    if attrs:
        new["attributes"] = {**rec["attributes"], **attrs}
    acct, sp = _part(cols, "account.", i), _part(cols, "service_point.", i)
    if "service_point_id" not in sp:
        sp = {}  # only defaults (interval, solar) without an id: the row is not about a service point
    if "account_id" not in acct and not sp:
        acct = {}
    if acct or sp:
        new["accounts"] = _upsert_account(shard, new, cid, acct, sp)
    contact = _part(cols, "contact.", i)
    if contact:
        new["contacts"] = _upsert_keyed(rec["contacts"], "contact_id", "K", _contact(contact, digest))
    owner = _part(cols, "ownership.", i)
    if owner:
        owner.setdefault("entity_id", "E" + hashlib.sha1(str(owner.get("tax_id") or owner.get("legal_name"))
                                                         .encode()).hexdigest()[:10])
        new["ownership"] = _upsert_keyed(rec.get("ownership") or [], "entity_id", "E", owner)
    if old is not None and all(new[k] == old[k] for k in new):
        return old  # the row says what the context already holds: unchanged, no new version
    return new


def _upsert_account(shard, rec, cid, acct, sp):
    accounts = list(rec["accounts"])
    aid = acct.get("account_id")
    if aid is None and sp:
        owner = next((a["account_id"] for a in accounts for s in a["service_points"]
                      if s["service_point_id"] == sp.get("service_point_id")), None)
        if owner is None:
            raise InvalidInput("a new service point needs its account", field="account.account_id")
        aid = owner
    pos = next((j for j, a in enumerate(accounts) if a["account_id"] == aid), None)
    if pos is None:
        a = {"account_id": aid, "status": "active", "rate_plan_id": "", "bill_cycle_day": 1,
             "billing_address": "", "programs": [], "service_points": []}
    else:
        a = accounts[pos]
    a = {**a, **acct}
    if sp:
        spid = sp.get("service_point_id")
        if spid is None:
            raise InvalidInput("a service point needs its id", field="service_point.service_point_id")
        owner = shard.sp_owner.get(spid)
        if owner is not None and owner[0] != cid:
            raise InvalidInput("service point is registered to another customer",
                               field="service_point.service_point_id")
        sps = list(a["service_points"])
        j = next((k for k, s in enumerate(sps) if s["service_point_id"] == spid), None)
        base = sps[j] if j is not None else {"service_point_id": spid, "premise_address": "", "meter_id": "",
                                             "interval_minutes": 60, "has_solar": False, "load_priority": "normal"}
        if j is not None and "interval_minutes" in sp and sp["interval_minutes"] != base["interval_minutes"]:
            raise InvalidInput("a service point's interval length cannot change",
                               field="service_point.interval_minutes")
        merged = {**base, **sp}
        if j is None:
            sps.append(merged)
        else:
            sps[j] = merged
        a["service_points"] = sps
    if pos is None:
        accounts.append(a)
    else:
        accounts[pos] = a
    return accounts


def _contact(c: dict, digest: str) -> dict:
    channels = []
    # what people type (an email, a mobile in any format) is validated and normalized as a PATCH's channels are
    # (email-validator, phonenumbers: E.164); a bad address refuses the row naming its column's field
    if c.get("email"):
        channels.append({"type": "email", "address": normalize_email(str(c.pop("email")).strip(), "contact.email"),
                         "preference": 1, "quiet_hours": None})
    if c.get("phone"):
        channels.append({"type": "sms", "address": normalize_phone(str(c.pop("phone")).strip(), "contact.phone"),
                         "preference": len(channels) + 1, "quiet_hours": None})
    if isinstance(c.get("roles"), str):
        c["roles"] = [r.strip() for r in c["roles"].replace(";", ",").split(",") if r.strip()]
    c.setdefault("contact_id", "K" + digest[:12])
    if channels:
        c["channels"] = channels
    return c


def _upsert_keyed(items: list, key: str, prefix: str, item: dict) -> list:
    out = list(items)
    j = next((k for k, x in enumerate(out) if x.get(key) == item[key]), None)
    if j is None:
        out.append({"name": "", "roles": [], "channels": [], **item} if prefix == "K" else item)
    else:
        out[j] = {**out[j], **item}
    return out


def _append(rec, field, key, item):
    if any(x.get(key) == item[key] for x in rec[field]):
        return rec
    return dict(rec, **{field: rec[field] + [item]})


def _payment(shard, rec, cid, cols, i, digest, at):
    rec = _need(rec, cid)
    p = _part(cols, "payment.", i)
    if p.get("account_id") and not any(a["account_id"] == p["account_id"] for a in rec["accounts"]):
        raise InvalidInput(f"no account {p['account_id']} on customer {cid}", field="payment.account_id")
    p.setdefault("payment_id", "PAY" + digest[:12])
    p.setdefault("method", "")
    return _append(rec, "payments", "payment_id", p)


def _event(shard, rec, cid, cols, i, digest, at):
    rec = _need(rec, cid)
    e = _part(cols, "event.", i)
    payload = {k[len("payload."):]: v for k, v in e.items() if k.startswith("payload.")}
    eid = e.get("event_id") or "EV" + digest[:12]
    if any((x.get("detail") or {}).get("event_id") == eid for x in rec["events"]):
        return rec  # the same source event imported before
    # the model's Event (ts, type, detail): the source's id rides in the detail, where a re-import finds it
    item = {"ts": dt.datetime.fromtimestamp(int(e["at"]), dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "type": e["type"], "detail": {**payload, "event_id": eid}}
    return dict(rec, events=rec["events"] + [item])


def _project(shard, rec, cid, cols, i, digest, at):
    rec = _need(rec, cid)
    p = _part(cols, "project.", i)
    sup = dict(rec.get("supplemental") or {"projects": []})
    projects = list(sup.get("projects") or [])
    pid = "PRJ" + digest[:10]
    if any(x["project_id"] == pid for x in projects):
        return rec
    projects.append({"project_id": pid, "name": p["name"], "start_date": p["start_date"],
                     "expected_kwh_per_month": int(p["expected_kwh_per_month"]), "note": p.get("note", ""),
                     "created_at": at})
    sup["projects"] = projects
    return dict(rec, supplemental=sup)


def _bill(shard, rec, cid, b):
    rec = _need(rec, cid)
    if not any(a["account_id"] == b["account_id"] for a in rec["accounts"]):
        raise InvalidInput(f"no account {b['account_id']} on customer {cid}", field="bill.account_id")
    ids = shard.imports.bill_ids(shard)
    if b["bill_id"] in ids:
        return None
    if b["period_end"] <= b["period_start"]:
        raise InvalidInput("period_end must be after period_start", field="bill.period_end")
    lines = _bill_lines(b.get("lines"))
    ids.add(b["bill_id"])
    return {"bill_id": b["bill_id"], "account_id": b["account_id"], "customer_id": cid,
            "period_start": dt.date.fromisoformat(b["period_start"]), "period_end": dt.date.fromisoformat(b["period_end"]),
            "lines": lines, "total_cents": int(b["total_cents"])}


def _bill_lines(raw) -> list[dict]:
    """A legacy bill's lines (JSON text from the source): reconciliation compares them line by line by code."""
    if raw is None or raw == "":
        return []
    try:
        lines = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise InvalidInput(f"lines must be a JSON list: {exc}", field="bill.lines") from None
    if not isinstance(lines, list):
        raise InvalidInput("lines must be a JSON list of {code, quantity, unit, amount_cents}", field="bill.lines")
    out = []
    for i, line in enumerate(lines):
        if not isinstance(line, dict) or not isinstance(line.get("code"), str) or \
                any(isinstance(line.get(k), bool) or not isinstance(line.get(k), int) for k in ("quantity", "amount_cents")):
            raise InvalidInput(f"line {i} needs a code and integer quantity and amount_cents", field="bill.lines")
        out.append({"code": line["code"], "quantity": line["quantity"], "unit": str(line.get("unit") or ""),
                    "amount_cents": line["amount_cents"]})
    return out


ACTIONS = {"upsert": _upsert, "payment": _payment, "event": _event, "project": _project}
