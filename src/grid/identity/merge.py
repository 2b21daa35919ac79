"""Merging two customers into one (and undoing it), durably, even when they live on different shards.

A merge of ``merged`` into ``survivor`` is three ops, each written to the WAL of the shard it changes, each
idempotent (by write id, and by content: a step already done is a no-op), so a crash between any two leaves
a state the next attempt completes:

1. ``identity_merge_out`` (merged's shard): the merge is recorded as begun, and the merged context as it stands
   is the op's result, carried by the client to step 2;
2. ``identity_merge_in`` (survivor's shard, the merged context in the op body, so it is in that shard's WAL):
   the survivor takes the merged accounts, contacts, ownership, payments, events and notes (ids it lacks), the
   merged customer's linked records, and the merged context itself as a linked record (the golden record's
   provenance); what was added is recorded, for an unmerge;
3. ``identity_merge_close`` (merged's shard): the merged context leaves the records for a tombstone that keeps
   it whole; the old id answers ``merged_into`` from then on.

An unmerge runs the other way: ``identity_unmerge_out`` removes exactly what step 2 added from the survivor,
then ``identity_unmerge_restore`` brings the merged context back from its tombstone. The merge id is derived
from both ids and the merged context's version, so a retry finds the merge it began, and a merge after an
unmerge is a new one.

When the two customers live on different shards, the merged service points' usage rows and the merged
accounts' legacy bills travel with the context (:mod:`grid.identity.carry`): step 1's result carries copies,
step 2's op body puts them in the survivor's WAL and store, step 3 drops them from the merged shard. An unmerge
carries them back the same way: ``identity_unmerge_out`` keeps what it takes in its merge entry (durable, so a
retry after a crash still has it) and ``identity_unmerge_restore`` puts it back.
"""
from __future__ import annotations

import hashlib

from grid.errors import Conflict, InvalidInput, NotFound
from grid.identity import carry
from grid.identity.evidence import to_builtins
from grid.identity.members import member_of_context
from grid.identity.reads import context_values

__all__ = ["KINDS", "prepare", "apply", "merge_id", "refuse_while_merging"]

KINDS = ("identity_merge_out", "identity_merge_in", "identity_merge_close", "identity_unmerge_out",
         "identity_unmerge_restore")
_BY_ID = (("accounts", "account_id"), ("contacts", "contact_id"), ("ownership", "entity_id"), ("notes", "note_id"),
          ("payments", "payment_id"))
_LISTS = ("events",)


def merge_id(survivor: str, merged: str, version: int) -> str:
    return "MG" + hashlib.sha1(f"{survivor}|{merged}|{version}".encode()).hexdigest()[:14].upper()


def _key(mid: str, role: str) -> str:
    """Each shard keeps its own side of a merge: both sides live on one shard when both customers do."""
    return f"{mid}/{role}"


_ROLE = {"identity_merge_out": "out", "identity_merge_in": "in", "identity_merge_close": "out",
         "identity_unmerge_out": "in", "identity_unmerge_restore": "out"}


def refuse_while_merging(shard, cid: str) -> None:
    """Refuse a write to a customer whose merge is under way (step 1 done, step 3 not): step 1 copied its
    context, usage and links for the survivor, so a write landing in between would be lost with the tombstone.

    A 409 naming ``id`` with ``retry_after``: a merge's steps take milliseconds (a crashed one is finished by
    ``Grid.aresume_merges``); once closed, the writer is told ``merged_into`` (410) and writes there.
    """
    d = shard.identity.durable
    if not d.merges:  # the common case: no merge ever touched this shard
        return
    for m in d.merges.values():
        if m["role"] == "out" and m["state"] == "begun" and m["merged"] == cid:
            raise Conflict(f"customer {cid} is being merged into {m['survivor']}; retry shortly", field="id",
                           retry_after=1, merging_into=m["survivor"])


def prepare(shard, op: dict) -> None:
    kind, cid, body = op["kind"], op["customer_id"], op["body"]
    d = shard.identity.durable
    entry = d.merges.get(_key(str(body.get("merge_id")), _ROLE[kind]))
    if kind == "identity_merge_out":
        if body["survivor"] == cid:
            raise InvalidInput("a customer cannot be merged into itself", field="merged")
        if entry is None:
            shard.record(cid)
            busy = [m for m in d.merges.values() if m["merged"] == cid and m["role"] == "out"
                    and m["state"] == "begun"]
            if busy:
                raise Conflict(f"customer {cid} is being merged into {busy[0]['survivor']}", field="merged")
    elif kind == "identity_merge_in":
        if entry is None:
            shard.record(cid)
    elif kind == "identity_merge_close":
        if entry is None or entry["role"] != "out":
            raise NotFound(f"no merge {body.get('merge_id')!r} begun here", field="merge_id")
    elif kind == "identity_unmerge_out":
        if entry is None or entry["role"] != "in":
            raise NotFound(f"no merge {body.get('merge_id')!r} into {cid}", field="merge_id")
    elif kind == "identity_unmerge_restore":
        if cid not in d.merged and (entry is None or entry["state"] != "undone"):
            raise NotFound(f"customer {cid} is not merged", field="id")


def apply(shard, op: dict) -> tuple[dict, list[str]]:
    """(result, the customers whose context changed; the shard bumps their versions and logs the change)."""
    result = _APPLY[op["kind"]](shard, op, op["customer_id"], op["body"], shard.identity.durable)
    return result, result.pop("_changed", [])


def _merge_out(shard, op, cid, body, d) -> dict:
    mid = body["merge_id"]
    entry = d.merges.get(_key(mid, "out"))
    if entry is None:
        entry = d.merges[_key(mid, "out")] = {"merge_id": mid, "role": "out", "survivor": body["survivor"],
                                              "merged": cid, "state": "begun", "at": op["at"]}
    carried = {"usage": [], "bills": []}
    if entry["state"] == "begun":
        rec, links = shard.records[cid], d.links.get(cid, [])
        if body["survivor"] not in shard.records:  # another shard: the history goes with the context
            carried = carry.take(shard, carry.service_points(rec), carry.account_ids(rec))
    else:  # closed already (step 2 is done): what moved is in the tombstone
        gone = d.merged[cid]
        rec, links = gone["record"], gone["links"]
    return {"customer_id": cid, "merge_id": mid, "state": entry["state"], "record": rec, "links": list(links),
            "carried": carried}


def _merge_in(shard, op, cid, body, d) -> dict:
    mid, merged = body["merge_id"], body["merged"]
    if _key(mid, "in") in d.merges:
        return {"customer_id": cid, "merge_id": mid, "state": d.merges[_key(mid, "in")]["state"]}
    rec, other = shard.records[cid], body["record"]
    new = dict(rec)
    added: dict[str, list] = {}
    for part, key in _BY_ID:
        have = {x.get(key) for x in rec.get(part) or []}
        extra = [x for x in other.get(part) or [] if x.get(key) not in have]
        new[part] = list(rec.get(part) or []) + extra
        added[part] = [x.get(key) for x in extra]
    for part in _LISTS:
        new[part] = list(rec.get(part) or []) + list(other.get(part) or [])
    attrs = dict(rec.get("attributes") or {})
    added["attributes"] = [k for k in (other.get("attributes") or {}) if k not in attrs]
    attrs.update({k: other["attributes"][k] for k in added["attributes"]})
    new["attributes"] = attrs
    carry.put(shard, body.get("carried"), cid)
    for a in other.get("accounts") or []:
        if a.get("account_id") in added["accounts"]:
            for sp in a.get("service_points") or []:
                iv = int(sp.get("interval_minutes", 60))
                shard.sp_owner[sp["service_point_id"]] = (cid, iv)
                shard._store(iv).add_service_points([sp["service_point_id"]], [bool(sp.get("has_solar"))])
    shard.records[cid] = new
    # the merged customer's records are the survivor's now, and so is the merged context itself
    m = member_of_context(other)
    m.customer_id, m.label = cid, f"merged:{merged}"
    m.values = {k: str(v) for k, v in context_values(other).items()}
    m.at = other.get("created_at")
    moved = [dict(link, moved_from=merged) for link in body.get("links") or []]
    here = {link["record_key"] for link in d.links.get(cid, [])}
    moved = [link for link in moved if link["record_key"] not in here]
    moved.append({"record_key": m.label, "member": to_builtins(m), "at": op["at"], "write_id": op["write_id"],
                  "resolution": {"outcome": "link", "customer_id": cid, "decision": "merge", "merge_id": mid}})
    d.links.setdefault(cid, []).extend(moved)
    d.merges[_key(mid, "in")] = {"merge_id": mid, "role": "in", "survivor": cid, "merged": merged, "state": "done",
                                 "at": op["at"], "added": added, "link_keys": [link["record_key"] for link in moved],
                                 "events": list(other.get("events") or [])}
    shard.identity.on_record(new)
    return {"customer_id": cid, "merge_id": mid, "state": "done", "_changed": [cid]}


def _merge_close(shard, op, cid, body, d) -> dict:
    entry = d.merges[_key(body["merge_id"], "out")]
    if entry["state"] == "begun":
        rec = shard.records.pop(cid)
        shard._membership_dirty = True
        d.merged[cid] = {"merged_into": entry["survivor"], "merge_id": body["merge_id"], "record": rec,
                         "links": d.links.pop(cid, []), "at": op["at"]}
        for sp in [sp for sp, owner in shard.sp_owner.items() if owner[0] == cid]:
            del shard.sp_owner[sp]
        if entry["survivor"] not in shard.records:  # the survivor's shard holds the history now
            carry.drop(shard, carry.service_points(rec), carry.account_ids(rec))
        entry["state"] = "closed"
        changed = [cid]
    else:
        changed = []
    return {"customer_id": cid, "merge_id": body["merge_id"], "state": entry["state"],
            "merged_into": entry["survivor"], "_changed": changed}


def _unmerge_out(shard, op, cid, body, d) -> dict:
    entry = d.merges[_key(body["merge_id"], "in")]
    if entry["state"] == "undone":
        return {"customer_id": cid, "merge_id": body["merge_id"], "state": "undone",
                "carried": entry.get("carried") or {"usage": [], "bills": []}}
    rec = shard.records[cid]
    new = dict(rec)
    added = entry["added"]
    gone_sps = []
    for part, key in _BY_ID:
        drop = set(added.get(part, ()))
        if part == "accounts":
            gone_sps = [sp["service_point_id"] for a in rec["accounts"] if a.get(key) in drop
                        for sp in a.get("service_points") or []]
        new[part] = [x for x in rec.get(part) or [] if x.get(key) not in drop]
    for part in _LISTS:
        rest = list(rec.get(part) or [])
        for item in entry[part]:
            if item in rest:
                rest.remove(item)
        new[part] = rest
    new["attributes"] = {k: v for k, v in (rec.get("attributes") or {}).items() if k not in set(added["attributes"])}
    for sp in gone_sps:
        if shard.sp_owner.get(sp, (None,))[0] == cid:
            del shard.sp_owner[sp]
    carried = {"usage": [], "bills": []}
    if entry["merged"] not in shard.records and entry["merged"] not in d.merged:  # the merged one lives elsewhere
        gone_accounts = list(added.get("accounts", ()))
        carried = carry.take(shard, gone_sps, gone_accounts)
        carry.drop(shard, gone_sps, gone_accounts)
    entry["carried"] = carried  # durable: a retry after a crash hands the same rows to the restore
    shard.records[cid] = new
    keys = set(entry["link_keys"])
    d.links[cid] = [link for link in d.links.get(cid, []) if link["record_key"] not in keys]
    entry["state"] = "undone"
    shard.identity.on_record(new)
    return {"customer_id": cid, "merge_id": body["merge_id"], "state": "undone", "carried": carried,
            "_changed": [cid]}


def _unmerge_restore(shard, op, cid, body, d) -> dict:
    gone = d.merged.pop(cid, None)
    if gone is not None:
        rec = dict(gone["record"])  # the shard's bump gives it the next version
        shard.records[cid] = rec
        shard._membership_dirty = True
        d.links[cid] = gone["links"]
        carry.put(shard, body.get("carried"), cid)
        for a in rec.get("accounts") or []:
            for sp in a.get("service_points") or []:
                iv = int(sp.get("interval_minutes", 60))
                shard.sp_owner[sp["service_point_id"]] = (cid, iv)
                shard._store(iv).add_service_points([sp["service_point_id"]], [bool(sp.get("has_solar"))])
        entry = d.merges.get(_key(gone["merge_id"], "out"))
        if entry is not None:
            entry["state"] = "undone"
        shard.identity.on_record(rec)
    return {"customer_id": cid, "merge_id": body["merge_id"], "state": "undone",
            "_changed": [cid] if gone is not None else []}


_APPLY = {"identity_merge_out": _merge_out, "identity_merge_in": _merge_in, "identity_merge_close": _merge_close,
          "identity_unmerge_out": _unmerge_out, "identity_unmerge_restore": _unmerge_restore}
