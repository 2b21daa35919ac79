"""Who an event reaches: affected customers found on one shard, and the route of each notification.

Runs inside the shard (one scatter per event, ``ShardServer.plan_event`` then ``commit_event``): selection reads
the live records, and the result is ``outbox_enqueue`` ops, so what was decided is what the WAL holds. What of
the selector matched is reported from the same hits (:func:`matched`); the grid refuses an outage nothing
matched before any shard writes (:func:`unmatched`).

Routing (DOMAIN.md section 9): a notification goes to the customer's contacts holding the message's role, in
the order the customer listed them (for a critical load, ``emergency`` contacts first); each contact's channels
in preference order. A contact may narrow the messages it wants (``messages``: a list of types); a critical
load's outage alert is sent whatever the preferences say, because a hospital on generator must know.
"""
from __future__ import annotations

from grid.balances import DUE_DAYS, amount_due
from grid.contacts.outbox import idempotency_key, notification_id
from grid.errors import InvalidInput

PRIORITY = {"normal": 0, "priority": 1, "critical": 2}
ROLES = {"outage": ("outage", "emergency"), "outage_restored": ("outage", "emergency"),
         "key_account": ("key_account",), "bill_ready": ("billing",), "high_bill": ("billing",),
         "payment_due": ("billing",)}
MESSAGE_TYPES = ("outage", "outage_restored", "bill_ready", "high_bill", "payment_due", "escalation")


def route(rec: dict, event_id: str, message_type: str, roles: tuple[str, ...], critical: bool = False) -> list[dict]:
    """Candidates (contact x channel) of one notification, best first; each with its idempotency key."""
    contacts = [c for c in rec.get("contacts", []) if set(c.get("roles", ())) & set(roles)]
    if not critical:
        contacts = [c for c in contacts if not c.get("messages") or message_type in c["messages"]]
    else:
        contacts.sort(key=lambda c: "emergency" not in c.get("roles", ()))  # stable: keeps the customer's order
    out = []
    for c in contacts:
        for ch in sorted(c.get("channels", []), key=lambda ch: ch.get("preference", 1)):
            out.append({"contact_id": c["contact_id"], "name": c.get("name", ""), "channel": ch["type"],
                        "address": ch["address"], "language": c.get("language", "en"),
                        "quiet_hours": ch.get("quiet_hours"),
                        "key": idempotency_key(event_id, c["contact_id"], ch["type"])})
    return out


def _selector(event: dict) -> tuple[set, set, dict | None]:
    sel = event.get("selector", {})
    return set(sel.get("service_point_ids", ())), set(sel.get("premise_ids", ())), sel.get("area")


def affected(shard, event: dict) -> dict[str, list[dict]]:
    """customer id -> affected service points (dicts from the record) on this shard."""
    sp_ids, premises, area = _selector(event)
    out: dict[str, list[dict]] = {}
    if sp_ids and not premises and area is None:  # the common case: a list from the outage system, indexed
        cids = {shard.sp_owner[s][0] for s in sp_ids if s in shard.sp_owner}
    else:
        cids = shard.records.keys()
    for cid in cids:
        rec = shard.records.get(cid)
        if rec is None:
            continue
        for a in rec["accounts"]:
            if a.get("status", "active") != "active":
                continue
            for sp in a["service_points"]:
                if _hit(sp, rec, sp_ids, premises, area):
                    out.setdefault(cid, []).append(sp)
    return out


def _hit(sp: dict, rec: dict, sp_ids: set, premises: set, area: dict | None) -> bool:
    if sp["service_point_id"] in sp_ids:
        return True
    if premises and (sp.get("premise_id") in premises or sp.get("premise_address") in premises):
        return True
    if area is not None:
        attr, value = area["attribute"], area["value"]
        got = sp.get(attr, rec.get("attributes", {}).get(attr))
        return got == value
    return False


SELECTOR_FIELDS = ("service_point_ids", "premise_ids", "area")
UNMATCHED_LIMIT = 100  # unknown ids listed in an answer (the count says how many there were)


def matched(shard, event: dict, hits: dict[str, list[dict]]) -> dict:
    """What of the outage's selector this shard's affected service points (``hits``, from :func:`affected`)
    matched: ``{"service_point_ids": [...], "premise_ids": [...], "area": bool}`` for the fields the selector has.

    Computed from the hits alone (already found by the scatter), so reporting unknown ids costs no second scan.
    """
    sp_ids, premises, area = _selector(event)
    out: dict = {}
    if sp_ids:
        out["service_point_ids"] = [sp["service_point_id"] for sps in hits.values() for sp in sps
                                    if sp["service_point_id"] in sp_ids]
    if premises:
        out["premise_ids"] = sorted({v for sps in hits.values() for sp in sps
                                     for v in (sp.get("premise_id"), sp.get("premise_address")) if v in premises})
    if area is not None:
        out["area"] = any(_hit(sp, shard.records[cid], set(), set(), area) for cid, sps in hits.items() for sp in sps)
    return out


def unmatched(selector: dict, parts: list[dict], limit: int = UNMATCHED_LIMIT) -> tuple[dict, int, bool]:
    """(unmatched, count, any_matched) of an outage over every shard's :func:`matched` ``parts``.

    ``unmatched`` maps each selector field to what no active service point has (sorted, at most ``limit`` ids
    per field; an area that matched nothing is listed as itself), ``count`` is how many there were in all.
    """
    out, count, any_matched = {}, 0, False
    for field in SELECTOR_FIELDS:
        if not selector.get(field):
            continue
        if field == "area":
            hit = any(p.get("area") for p in parts)
            missing = [] if hit else [selector["area"]]
        else:
            found = {v for p in parts for v in p.get(field, ())}
            hit = bool(found)
            missing = sorted(set(selector[field]) - found)
        any_matched |= hit
        if missing:
            out[field], count = missing[:limit], count + len(missing)
    return out, count, any_matched


def plan_outage(shard, event: dict, ack_within_s: float, hits: dict | None = None) -> list[dict]:
    """The notifications of an outage on this shard's customers: critical first, then priority, key accounts.
    ``hits``: :func:`affected`, when the caller has it already (an area outage scans every record)."""
    out = []
    for cid, sps in (affected(shard, event) if hits is None else hits).items():
        rec = shard.records[cid]
        prio = max((sp.get("load_priority", "normal") for sp in sps), key=lambda p: PRIORITY.get(p, 0))
        critical = prio == "critical"
        key_account = bool((rec.get("classification") or {}).get("key_account"))
        variables = {"customer_name": rec["name"], "outage_id": event["id"], "cause": event.get("cause", ""),
                     "start": event["start"], "estimated_restoration": event.get("estimated_restoration"),
                     "premises": sorted({sp.get("premise_address", "") for sp in sps}),
                     "service_points": sorted(sp["service_point_id"] for sp in sps), "critical": critical}
        purposes = [("outage", ROLES["outage"])] + ([("key_account", ROLES["key_account"])] if key_account else [])
        for purpose, roles in purposes:
            r = route(rec, event["id"], "outage", roles, critical)
            if not r:
                continue
            out.append({"nid": notification_id(event["id"], cid, purpose), "event_id": event["id"],
                        "customer_id": cid, "type": "outage", "purpose": purpose, "priority": prio,
                        "critical": critical, "key_account": key_account, "vars": variables, "route": r,
                        "ack_within_s": ack_within_s if critical else None})
    out.sort(key=lambda n: (-PRIORITY.get(n["priority"], 0), not n["key_account"], n["customer_id"]))
    return out


def plan_restoration(shard, group: str, event_id: str, restored_at: str) -> list[dict]:
    """Restoration messages to every customer the outage's alerts were for (same contacts, new keys)."""
    out = []
    for nid in shard.outbox.by_group.get(group, []):
        n = shard.outbox.items[nid]
        if n["type"] != "outage":
            continue
        rec = shard.records.get(n["customer_id"])
        if rec is None:
            continue
        r = route(rec, event_id, "outage_restored", ROLES[n["purpose"]], n["critical"])
        if r:
            out.append({**{k: n[k] for k in ("customer_id", "purpose", "priority", "critical", "key_account")},
                        "nid": notification_id(event_id, n["customer_id"], n["purpose"]), "event_id": event_id,
                        "type": "outage_restored", "vars": {**n["vars"], "restored_at": restored_at},
                        "route": r, "ack_within_s": None})
    return out


def plan_escalations(shard, now: float, fallback: dict | None) -> tuple[list[str], list[dict]]:
    """(nids escalated, escalation notifications) for critical alerts not acknowledged in time.

    The escalation goes to the customer's key-account manager: the ``key_account_manager`` attribute
    (``{"name", "email"}`` or ``{"name", "phone"}``) when the utility assigned one, else the configured
    key-accounts desk (``fallback``).
    """
    escalated, out = [], []
    for n in shard.outbox.overdue(now):
        rec = shard.records.get(n["customer_id"], {})
        manager = (rec.get("attributes") or {}).get("key_account_manager")
        manager = manager if isinstance(manager, dict) else fallback
        escalated.append(n["nid"])
        if not manager:
            continue
        event_id = f"{n['event_id']}.escalation"
        candidates = []
        for channel, field in (("email", "email"), ("sms", "phone")):
            if manager.get(field):
                mid = manager.get("id", manager[field])
                candidates.append({"contact_id": mid, "name": manager.get("name", ""), "channel": channel,
                                   "address": manager[field], "language": manager.get("language", "en"),
                                   "quiet_hours": None, "key": idempotency_key(event_id, mid, channel)})
        out.append({"nid": notification_id(event_id, n["customer_id"], "escalation"), "event_id": event_id,
                    "customer_id": n["customer_id"], "type": "escalation", "purpose": "escalation",
                    "priority": n["priority"], "critical": True, "key_account": n["key_account"],
                    "vars": {**n["vars"], "escalates": n["nid"], "not_acknowledged_by":
                             [c["contact_id"] for c in n["route"]][:3]},
                    "route": candidates, "ack_within_s": None})
    return escalated, [o for o in out if o["route"]]


def plan_notices(shard, notice: dict) -> list[dict]:
    """Information messages (bill ready, payment due, high bill) for this shard's customers in ``notice``."""
    kind = notice["type"]
    cids = notice.get("customer_ids") or sorted(shard.records)
    out = []
    for cid in cids:
        rec = shard.records.get(cid)
        if rec is None:
            continue
        variables = _notice_vars(shard, rec, notice)
        if variables is None:
            continue
        r = route(rec, notice["id"], kind, ROLES[kind])
        if r:
            out.append({"nid": notification_id(notice["id"], cid, kind), "event_id": notice["id"], "customer_id": cid,
                        "type": kind, "purpose": kind, "priority": "normal", "critical": False,
                        "key_account": bool((rec.get("classification") or {}).get("key_account")),
                        "vars": {"customer_name": rec["name"], **variables}, "route": r, "ack_within_s": None})
    return out


def _notice_vars(shard, rec: dict, notice: dict) -> dict | None:
    """The message's facts, or None when this customer has nothing to be told."""
    kind, cid = notice["type"], rec["customer_id"]
    if kind == "bill_ready":
        bills = shard.customer_bills(cid, notice["period"])
        if not bills:
            return None
        return {"period": notice["period"], "total_cents": sum(b["total_cents"] for b in bills)}
    if kind == "payment_due":  # the amount the portal shows (grid.balances: one computation for both)
        due = amount_due(shard.customer_bills(cid), rec.get("payments", []),
                         [a["account_id"] for a in rec["accounts"]], notice.get("as_of"),
                         notice.get("due_days", DUE_DAYS))
        if due["amount_due_cents"] <= 0:
            return None
        return {"amount_due_cents": due["amount_due_cents"], "due_date": due["due_date"]}
    if kind == "high_bill":
        return high_bill_vars(shard, rec, notice)
    raise InvalidInput(f"unknown notice type {kind!r}", field="type")


def high_bill_vars(shard, rec: dict, notice: dict) -> dict | None:
    """Projected open-month bill above the customer's threshold, or ``ratio`` above the same month last year."""
    from grid.whatif.current import current_bill

    try:
        cur = current_bill(shard, rec["customer_id"], notice.get("as_of"))
    except Exception:  # noqa: BLE001 - a customer whose plan is not in the catalogue simply gets no alert
        return None
    projected = int(cur["projected_cents"])
    threshold = (rec.get("attributes") or {}).get("high_bill_threshold_cents")
    month = cur["items"][0]["period_start"][:7] if cur.get("items") else None
    last_year = None
    if month:
        y, m = month.split("-")
        bills = shard.customer_bills(rec["customer_id"], f"{int(y) - 1}-{m}")
        last_year = sum(b["total_cents"] for b in bills) if bills else None
    reasons = []
    if isinstance(threshold, int) and projected > threshold:
        reasons.append("threshold")
    if last_year and projected > last_year * (1 + notice.get("ratio", 0.3)):
        reasons.append("last_year")
    if not reasons:
        return None
    return {"projected_cents": projected, "threshold_cents": threshold, "last_year_cents": last_year,
            "reasons": reasons, "as_of": cur["as_of"]}
