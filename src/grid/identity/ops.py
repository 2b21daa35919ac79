"""The identity write kinds of a shard: ``(state, op)`` functions the shard's one apply path dispatches to.

Every kind is a customer op (``op["customer_id"]`` routes it): the linked customer, the new customer, or the
customer a review proposes. ``prepare`` checks against the state and mutates nothing; ``apply`` is
deterministic and idempotent by content as well as by write id (a record already linked stays linked once, a
review proposed again is the same review), so a resolution retried after a crash changes nothing twice.

Op bodies (built by ``Grid.aresolve`` and the review routes):

- ``identity_link``: ``{record_key, member, resolution}``: the record belongs to the customer;
- ``identity_new``: ``{record_key, member, resolution, context: {name, kind}}``: a customer made from the
  record (its id derived from the record key), the record its first link;
- ``identity_review``: ``{review_id, record_key, evidence, member, resolution}``: ask a person;
- ``identity_decide``: ``{review_id, decision, by}``: a person's answer, remembered for good;
- the merge and unmerge steps of :mod:`grid.identity.merge`.
"""
from __future__ import annotations

from grid import context as ctx
from grid.errors import Conflict, InvalidInput, NotFound
from grid.identity import merge

__all__ = ["KINDS", "prepare", "apply"]

KINDS = ("identity_link", "identity_new", "identity_review", "identity_decide", *merge.KINDS)


def prepare(shard, op: dict) -> None:
    kind, cid, body = op["kind"], op["customer_id"], op["body"]
    if kind in merge.KINDS:
        merge.prepare(shard, op)
    elif kind == "identity_new":
        ctx.validate_replacement(cid, body["context"], op["at"])
    elif kind in ("identity_link", "identity_review"):
        shard.record(cid)
    elif kind == "identity_decide":
        review = shard.identity.durable.reviews.get(body.get("review_id"))
        if review is None or review["customer_id"] != cid:
            raise NotFound(f"no review {body.get('review_id')!r}", field="id")
        if body.get("decision") not in ("same", "different"):
            raise InvalidInput("decision must be 'same' or 'different'", field="decision")
        if review["state"] == "decided" and review["decision"] != body["decision"]:
            raise Conflict(f"review {review['review_id']} was decided {review['decision']!r} already",
                           field="decision")
    else:
        raise InvalidInput(f"unknown write kind {kind!r}", field="kind")


def apply(shard, op: dict) -> tuple[dict, list[str]]:
    """(result, customers whose context changed): the shard bumps their versions and logs the change.

    Links, reviews and decisions live in the identity index, not in the context: they change no version.
    """
    kind, cid, body = op["kind"], op["customer_id"], op["body"]
    idx = shard.identity
    idx.ensure_built(shard.records)
    if kind in merge.KINDS:
        return merge.apply(shard, op)
    if kind == "identity_new":
        created = cid not in shard.records
        if created:
            rec = ctx.validate_replacement(cid, body["context"], op["at"])
            rec["version"] = 0  # the shard's bump makes it 1
            shard.records[cid] = rec
            shard._membership_dirty = True
        return _link(shard, op, "new"), [cid] if created else []
    if kind == "identity_link":
        return _link(shard, op, "link"), []
    d = idx.durable
    if kind == "identity_review":
        rid = body["review_id"]
        if rid not in d.reviews:
            d.reviews[rid] = {"review_id": rid, "customer_id": cid, "record_key": body["record_key"],
                              "evidence": body["evidence"], "member": body["member"],
                              "resolution": body["resolution"], "state": "open", "created_at": op["at"]}
            d.open_reviews[body["record_key"]] = rid
        return {"customer_id": cid, "review_id": rid, "state": d.reviews[rid]["state"]}, []
    # identity_decide
    review = d.reviews[body["review_id"]]
    if review["state"] != "decided":
        review.update(state="decided", decision=body["decision"], decided_by=body.get("by", ""),
                      decided_at=op["at"])
        d.decisions.setdefault(review["record_key"], {})[cid] = body["decision"]
        if d.open_reviews.get(review["record_key"]) == review["review_id"]:
            del d.open_reviews[review["record_key"]]
        if body["decision"] == "same":
            resolution = dict(review["resolution"], outcome="link", customer_id=cid, decision="same")
            _add_link(shard, cid, review["record_key"], review["member"], resolution, op)
    return {"customer_id": cid, "review_id": review["review_id"], "state": "decided",
            "decision": review["decision"]}, []


def _link(shard, op: dict, how: str) -> dict:
    cid, body = op["customer_id"], op["body"]
    added = _add_link(shard, cid, body["record_key"], body["member"], body["resolution"], op)
    return {"customer_id": cid, "record_key": body["record_key"], "outcome": how, "added": added}


def _add_link(shard, cid: str, key: str, member: dict, resolution: dict, op: dict) -> bool:
    links = shard.identity.durable.links.setdefault(cid, [])
    if any(link["record_key"] == key for link in links):
        return False
    links.append({"record_key": key, "member": member, "resolution": resolution, "at": op["at"],
                  "write_id": op["write_id"]})
    shard.identity.on_record(shard.records[cid])
    return True
