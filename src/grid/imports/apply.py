"""The ``import_rows`` op: one batch's rows for one shard, and the source position they reach, applied as one.

Op body (built by ``grid.imports.importer``; columnar, so a WAL record of 50k usage rows stays compact)::

    {"source": str, "position": {"stream", "offset", ...}, "action": "usage" | "upsert" | "bill" | ...,
     "offsets": [int], "customer_id": [str], "digest": [str], "columns": {field: [value]}}

Integer columns (offsets, usage numbers, text codes) may come as int64 bytes or packed
(``grid.imports.columns``: narrow, delta, zstd: a usage row costs ~2 WAL bytes instead of 28).

:func:`prepare` checks the op's shape and that every customer is on this shard (else ``WrongShard``: the
importer re-routes) and changes nothing. :func:`apply` is deterministic in ``(state, op)``, so a WAL replay
rebuilds the same state: rows at or below the stream's stored offset are skipped (already applied), each
remaining row is checked against the state and then either applied whole or refused whole (kept with its
field and reason for the quarantine); the position moves in the same step. Each touched customer's version
goes up once and its change is logged (the gateway's near cache and the key index follow the change log).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pyarrow as pa

from grid.contacts.addresses import normalize_email, normalize_phone
from grid.context import validate_replacement
from grid.errors import InvalidInput, WrongShard
from grid.imports.columns import is_packed, unpack_ints
from grid.timegrid import local_midnight_utc, month_of, next_month, zone

KIND = "import_rows"


def ints(values) -> np.ndarray:
    """A column of integers as the importer sends it: packed (grid.imports.columns), little-endian int64 bytes,
    or a list."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        return np.frombuffer(values, dtype="<i8")
    if is_packed(values):
        return unpack_ints(values)
    return np.asarray(values, dtype=np.int64)


def text(values) -> tuple[list, np.ndarray]:
    """A column of text as (distinct values, int64 codes into them).

    The importer sends busy text columns (service point, customer of 50k readings of a few hundred meters)
    dictionary-encoded, ``{"values": [...], "codes": <int32 bytes>}``: Ray and the WAL then carry a few hundred
    strings, not 50k, and the shard checks each distinct value once. A plain list is encoded here.
    """
    if isinstance(values, dict):
        codes = values["codes"]
        if isinstance(codes, (bytes, bytearray, memoryview)):
            codes = np.frombuffer(codes, dtype="<i4")
        elif is_packed(codes):
            codes = unpack_ints(codes)
        return list(values["values"]), np.asarray(codes, dtype=np.int64)
    index: dict = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int64, len(values))
    return list(index), codes


def _take(values, rows: np.ndarray):
    """Rows ``rows`` of a column in any of its encodings."""
    if isinstance(values, (bytes, bytearray, memoryview)) or is_packed(values):
        return ints(values)[rows]
    if isinstance(values, dict):
        vals, codes = text(values)
        return {"values": vals, "codes": codes[rows]}
    return [values[i] for i in rows]


def _length(values) -> int:
    if isinstance(values, (bytes, bytearray, memoryview)):
        return len(values) // 8
    if is_packed(values):
        return int(values["n"])
    if isinstance(values, dict):
        codes = values.get("codes")
        return int(codes["n"]) if is_packed(codes) else len(text(values)[1])
    return len(values)


MAX_WH = 100_000_000  # as the usage route: one interval's energy above this is a unit error, not a reading


def prepare(shard, op: dict) -> dict:
    body = op.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("position"), dict):
        raise InvalidInput("import_rows needs a body with a position", field="body.position")
    n = _length(body["offsets"])
    if _length(body["customer_id"]) != n or any(_length(v) != n for v in body["columns"].values()) or \
            len(body.get("raw") or ()) not in (0, n):
        raise InvalidInput("import_rows columns differ in length", field="body.columns")
    for cid in text(body["customer_id"])[0]:
        if not shard.owns(cid):
            raise WrongShard(f"customer {cid} is not on shard {shard.shard_id}", retry_after=1)
    op.setdefault("at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return op


def apply(shard, op: dict) -> tuple[dict, list[str]]:
    body = op["body"]
    st = shard.imports
    source, position = body["source"], body["position"]
    done = st.offset(source, str(position["stream"]))
    offsets = ints(body["offsets"])
    fresh = np.flatnonzero(offsets > done)
    refused: list[dict] = []
    touched: dict[str, int] = {}
    unchanged = 0
    if fresh.size:
        cols, cids = body["columns"], body["customer_id"]
        if fresh.size < offsets.size:  # part of the batch was applied before (a resumed stream)
            cols = {k: _take(v, fresh) for k, v in cols.items()}
            cids = _take(cids, fresh)
        offs = offsets[fresh]
        digests = [body["digest"][i] for i in fresh] if body.get("digest") else [""] * int(fresh.size)
        if body["action"] == "usage":
            refused = _usage(shard, cids, offs, cols, touched)
        else:
            vals, codes = text(cids)
            cids = [vals[c] for c in codes]
            cols = {k: (lambda v, c: [v[i] for i in c])(*text(v)) if isinstance(v, dict) else v
                    for k, v in cols.items()}
            unchanged = _records(shard, body["action"], cids, offs, digests, cols, op["at"], refused, touched)
    raw = body.get("raw")
    at = {int(o): k for k, o in enumerate(offsets.tolist())} if raw and refused else {}
    for r in refused:
        r["stream"] = position["stream"]
        # a batch that cannot be read again at its source carries its raw rows: the refusal keeps its row, so
        # the quarantine entry can be rebuilt if the importer's own write is lost (grid.imports.quarantine)
        r["row"] = raw[at[r["offset"]]] if at else None
    st.reject(source, refused)
    st.advance(source, position)
    applied = int(fresh.size) - len(refused) - unchanged
    st.applied_rows[source] = st.applied_rows.get(source, 0) + applied
    # the shard's apply path re-classifies each touched customer, bumps its version once and logs the change
    result = {"applied": applied, "unchanged": unchanged, "skipped": int(offsets.size - fresh.size),
              "refused": refused, "customers": len(touched)}
    if str(position["stream"]).startswith("push"):
        # a push's few customers with the version this op gives them (the one bump that follows): the gateway
        # raises its near cache's floor to it before it answers, so a read after the receipt sees the rows
        result["versions"] = {c: shard.records[c]["version"] + 1 for c in touched if c in shard.records}
    if op.get("audit") and fresh.size:  # audit (an HTTP push): each customer's rows, for its entry (grid.audit)
        result["audit_rows"] = rows_per_customer(body, fresh, refused)
    return result, list(touched)


def rows_per_customer(body: dict, fresh: np.ndarray, refused: list[dict]) -> dict[str, dict]:
    """customer -> {"accepted", "quarantined"}: the op's new rows of each customer, and those refused."""
    vals, codes = text(body["customer_id"])
    codes = codes[fresh]
    bad = np.isin(ints(body["offsets"])[fresh], np.fromiter((r["offset"] for r in refused), np.int64, len(refused)))
    n, q = np.bincount(codes, minlength=len(vals)), np.bincount(codes[bad], minlength=len(vals))
    return {vals[c]: {"accepted": int(n[c] - q[c]), "quarantined": int(q[c])} for c in np.flatnonzero(n)}


# -- usage: vectorized per (interval length, month) --------------------------------------------------------------
def _usage(shard, cids, offs, cols, touched) -> list[dict]:
    sp_vals, sp_code = text(cols["service_point_id"])
    cid_vals, cid_code = text(cids)
    start = ints(cols["usage.start"])
    imp = ints(cols["usage.import_wh"])
    exp_col = cols.get("usage.export_wh")
    exp = np.zeros_like(imp) if exp_col is None else ints(exp_col)
    n = sp_code.size
    ok = np.ones(n, bool)
    refused = []

    def refuse(mask, fld, reason):
        for i in np.flatnonzero(mask & ok):
            refused.append({"offset": int(offs[i]), "field": fld, "reason": reason})
        ok[mask] = False

    # each distinct service point is looked up once; rows take their point's owner and interval by code
    cid_index = {c: k for k, c in enumerate(cid_vals)}
    owners = [shard.sp_owner.get(sp) for sp in sp_vals]
    owner_code = np.array([cid_index.get(o[0], -1) if o is not None else -2 for o in owners], np.int64)
    minutes_of = np.array([o[1] if o is not None else 60 for o in owners], np.int64)
    refuse(owner_code[sp_code] != cid_code, "usage.service_point_id", "service point is not on this customer")
    refuse((imp < 0) | (imp > MAX_WH), "usage.import_wh", f"not an integer Wh in 0..{MAX_WH}")
    refuse((exp < 0) | (exp > MAX_WH), "usage.export_wh", f"not an integer Wh in 0..{MAX_WH}")
    minutes = minutes_of[sp_code]
    for iv in _present(minutes[ok]):
        sel = np.flatnonzero(ok & (minutes == iv))
        store = shard._store(int(iv))
        row_of = np.array([store.row_of.get(sp, -1) for sp in sp_vals], np.int64)
        used = _present(sp_code[sel])
        missing = used[row_of[used] < 0]
        if missing.size:  # a service point indexed without a usage row yet
            row_of[missing] = store.add_service_points([sp_vals[u] for u in missing], [False] * missing.size)
        rows = row_of[sp_code[sel]]
        ts = start[sel]
        months, month_start = _months(int(ts.min()), int(ts.max()), shard.timezone)
        m = np.searchsorted(month_start, ts, side="right") - 1
        step = int(iv) * 60
        off = ts - month_start[np.clip(m, 0, len(months) - 1)]
        bad = (m < 0) | (m >= len(months)) | (off % step != 0)
        if bad.any():
            for i in sel[bad]:
                refused.append({"offset": int(offs[i]), "field": "usage.start",
                                "reason": f"not the start of a {iv}-minute interval"})
                ok[i] = False
        keep = ~bad
        for k in _present(m[keep]):
            w = keep & (m == k)
            idx = off[w] // step
            r = rows[w]
            b = store.block(months[k])
            b.imp[r, idx] = imp[sel[w]]
            e = exp[sel[w]]
            if e.any():
                for row in np.unique(r[e > 0]):
                    if store.export_row[row] < 0:
                        store.export_row[row] = store.n_export
                        store.n_export += 1
                b = store.block(months[k])
                er = store.export_row[r]
                has = er >= 0
                b.exp[er[has], idx[has]] = e[has]
            end = ts[w] + step
            np.maximum.at(store.filled_through, r, end)
        for c in _present(cid_code[sel[keep]]):
            touched[cid_vals[c]] = 1
    return refused


def _present(codes: np.ndarray) -> np.ndarray:
    """The distinct values of small non-negative integer codes (a counting pass: np.unique sorts)."""
    if codes.size == 0:
        return codes
    return np.flatnonzero(np.bincount(codes))


def _months(t0: int, t1: int, tz: str) -> tuple[list[str], np.ndarray]:
    """Local months covering epoch seconds [t0, t1] and their UTC starts, plus the end of the last."""
    z = zone(tz)
    first = dt.datetime.fromtimestamp(t0, z).date().replace(day=1)
    last = dt.datetime.fromtimestamp(t1, z).date().replace(day=1)
    months, starts = [], []
    d = first
    while d <= last:
        months.append(month_of(d))
        starts.append(local_midnight_utc(d, tz))
        d = next_month(d)
    starts.append(local_midnight_utc(d, tz))
    return months, np.asarray(starts, dtype=np.int64)


# -- record actions ---------------------------------------------------------------------------------------------
def _part(cols: dict, prefix: str, i: int) -> dict:
    """The non-null fields of row ``i`` under ``prefix`` (``account.``), keys without the prefix."""
    out = {}
    for k, v in cols.items():
        if k.startswith(prefix) and v[i] is not None:
            out[k[len(prefix):]] = v[i]
    return out


def _records(shard, action, cids, offs, digests, cols, at, refused, touched) -> int:
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
