"""Read-only identity views of one shard (the bodies of ``ShardServer.identity_*``); nothing here writes."""
from __future__ import annotations

import bisect


__all__ = ["lookup", "view", "reviews", "review", "context_values", "pending_merges"]


def lookup(shard, queries: list, deterministic: tuple, max_block: int) -> list[dict]:
    """One :meth:`IdentityIndex.lookup` result per ``(record_key, keys)`` query, in order."""
    idx = shard.identity
    return [idx.lookup(shard.records, rk, [tuple(k) for k in keys], tuple(deterministic), max_block)
            for rk, keys in queries]


def view(shard, customer_id: str) -> dict:
    """What the shard knows of a customer's identity: the context's own values, every linked record with its
    evidence, decisions about it; or, for a merged-away customer, where it went."""
    d = shard.identity.durable
    gone = d.merged.get(customer_id)
    if gone is not None and customer_id not in shard.records:
        return {"customer_id": customer_id, "merged_into": gone["merged_into"], "merge_id": gone.get("merge_id")}
    rec = shard.record(customer_id)  # NotFound / WrongShard
    decisions = [{"record_key": k, "decision": v[customer_id]} for k, v in sorted(d.decisions.items())
                 if customer_id in v]
    merges = [{f: v[f] for f in ("merge_id", "role", "survivor", "merged", "state", "at")}
              for _, v in sorted(d.merges.items()) if customer_id in (v["survivor"], v["merged"])]
    return {"customer_id": customer_id, "context": context_values(rec), "created_at": rec.get("created_at"),
            "links": list(d.links.get(customer_id, [])), "decisions": decisions, "merges": merges}


def context_values(rec: dict) -> dict:
    """The identifying values a context itself holds (the ``context`` source of the golden record)."""
    out = {"name": rec["name"], "kind": rec["kind"]}
    for a in rec.get("accounts") or []:
        out.setdefault("account_id", a.get("account_id"))
        if a.get("billing_address"):
            out.setdefault("mailing_address", a["billing_address"])
        for sp in a.get("service_points") or []:
            out.setdefault("service_point_id", sp.get("service_point_id"))
            out.setdefault("meter_id", sp.get("meter_id"))
            if sp.get("premise_address"):
                out.setdefault("address", sp["premise_address"])
    for e in rec.get("ownership") or []:
        if e.get("tax_id"):
            out.setdefault("tax_id", e["tax_id"])
    for c in rec.get("contacts") or []:
        for ch in c.get("channels") or []:
            if ch.get("type") == "email":
                out.setdefault("email", ch.get("address"))
            elif ch.get("type") in ("sms", "voice"):
                out.setdefault("phone", ch.get("address"))
    return {k: v for k, v in out.items() if v}


def reviews(shard, state: str | None, after: str | None, limit: int) -> list[dict]:
    """Up to ``limit`` review items with ``review_id > after`` in id order, of one state (or any)."""
    items = shard.identity.durable.reviews
    ids = sorted(items)
    out = []
    for rid in ids[bisect.bisect_right(ids, after) if after else 0:]:
        r = items[rid]
        if state is None or r["state"] == state:
            out.append(r)
            if len(out) >= limit:
                break
    return out


def review(shard, review_id: str) -> dict | None:
    return shard.identity.durable.reviews.get(review_id)


def pending_merges(shard) -> list[dict]:
    """Merges begun on this shard (step 1 done) and not closed: what a crashed merge left to finish."""
    return [{"merge_id": v["merge_id"], "survivor": v["survivor"], "merged": v["merged"]}
            for _, v in sorted(shard.identity.durable.merges.items()) if v["role"] == "out" and v["state"] == "begun"]
