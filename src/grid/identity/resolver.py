"""Deciding whose a record is, from what the shards' indexes found (:func:`decide`): one pure function that the
incremental path (``Grid.aresolve``, the live shards) and the batch path (:mod:`grid.identity.batch`, one
process) share, so both give the same answer for the same state.

Order of evidence, strongest first:

1. a reviewer's decision about this record (``same`` links; ``different`` rules that customer out for good);
2. the record itself, already linked (``record``: its ``source:record_id``), then the deterministic keys of
   ``rules/identity.yaml`` in their order. A key naming exactly one customer links, unless every other field
   compared says it is somebody else (the comparisons' weights sum below zero: a mistyped account number);
   two keys naming two different customers (a meter id of one, an account of another) send the record to
   review, as does that contradiction. A key shared by several customers only narrows the candidates;
3. Fellegi-Sunter: every candidate found by a blocking key is compared field by field with each of its
   members; the best member's total weight decides: link at or above ``thresholds.link``, review at or above
   ``thresholds.review``, otherwise a new customer. Ties go to the customer sharing more exact values with the
   record, then to the smaller customer id (deterministic).
"""
from __future__ import annotations

import hashlib

from grid.identity.compare import compare, probability, score
from grid.identity.evidence import Candidate, Evidence, Resolution, record_key, to_builtins
from grid.identity.members import Member, keys_of, member_of_evidence

__all__ = ["query", "decide", "outcome_op", "new_customer_id", "review_id", "write_id", "MAX_CANDIDATES"]

MAX_CANDIDATES = 5  # runners-up reported per resolution


def query(rules, ev: Evidence) -> tuple[Member, list[tuple[str, str]]]:
    """The record's member and the keys to look up (deterministic ones, the claimed id, the blocking ones)."""
    m = member_of_evidence(ev, None, rules.region, rules.ignore_tax_ids)
    wanted = set(rules.blocking) | set(rules.deterministic) | {"record"}
    keys = [k for k in keys_of(m) if k[0] in wanted]
    if ev.customer_id:
        keys.insert(0, ("customer_id", ev.customer_id))
    return m, keys


def new_customer_id(key: str) -> str:
    """The id a new customer made from this record gets: derived from the record key, so a retried or
    replayed resolution of the same record creates the same customer, never a second one."""
    return "CN" + hashlib.sha1(key.encode()).hexdigest()[:12].upper()


def review_id(key: str, customer_id: str) -> str:
    return "R" + hashlib.sha1(f"{key}|{customer_id}".encode()).hexdigest()[:15].upper()


def write_id(key: str, outcome: str, customer_id: str) -> str:
    """Write ids derived from the record and its outcome: a batch retried after a crash writes nothing twice."""
    return "id-" + hashlib.sha1(f"{key}|{outcome}|{customer_id}".encode()).hexdigest()[:24]


def outcome_op(ev: Evidence, member: Member, res: Resolution) -> dict | None:
    """The shard op that makes a resolution durable (None when nothing is new: the record is linked already).

    A ``new`` outcome gets its customer id here (derived from the record key) and a minimal context the
    importer then fills; the record's member becomes the customer's first linked record.
    """
    if res.outcome == "link" and res.key == "record":
        return None
    if res.outcome == "new":
        res.customer_id = new_customer_id(res.record_key)
    member.customer_id = res.customer_id
    body = {"record_key": res.record_key, "member": to_builtins(member), "resolution": to_builtins(res)}
    if res.outcome == "new":
        kind = "identity_new"
        body["context"] = {"name": ev.name or res.record_key, "kind": ev.kind or "residential",
                           "attributes": {"identity_source": ev.source}}
    elif res.outcome == "link":
        kind = "identity_link"
    else:
        kind = "identity_review"
        body.update(review_id=res.review_id, evidence=to_builtins(ev))
    return {"kind": kind, "customer_id": res.customer_id, "body": body,
            "write_id": write_id(res.record_key, res.outcome, res.customer_id), "if_match": None}


def _merge_found(found: list[dict]) -> dict:
    """One lookup result from every shard's part (customers are on exactly one shard each)."""
    out = {"hits": {}, "members": {}, "decisions": {}, "merged": {}, "open_review": None}
    for f in found:
        for k, v in f["hits"].items():
            out["hits"].setdefault(k, []).extend(v)
        out["members"].update(f["members"])
        out["decisions"].update(f["decisions"])
        out["merged"].update(f["merged"])
        out["open_review"] = out["open_review"] or f["open_review"]
    return out


def decide(rules, ev: Evidence, member: Member, found: list[dict]) -> Resolution:
    """The resolution of one record given the shards' lookup results (see the module docstring)."""
    f = _merge_found(found)
    key = record_key(ev)
    res = Resolution(outcome="new", record_key=key, rules_version=rules.version)
    decisions = f["decisions"]
    different = {c for c, d in decisions.items() if d == "different"}
    same = sorted(c for c, d in decisions.items() if d == "same" and c in f["members"])
    if same:
        res.outcome, res.customer_id, res.decision, res.probability = "link", same[0], "same", 1.0
        res.candidates = [Candidate(customer_id=same[0], decision="same")]
        return res
    # the record names a customer that was merged away: it is the survivor's now
    hits = {k: [c for c in dict.fromkeys(v) if c not in different] for k, v in f["hits"].items()}
    if ev.customer_id and ev.customer_id in f["merged"] and not hits.get("customer_id"):
        hits["customer_id"] = [f["merged"][ev.customer_id]]
    named: dict[str, str] = {}  # deterministic key -> the one customer it names
    for kind in ("record", "customer_id", *rules.deterministic):
        cands = hits.get(kind)
        if cands and len(cands) == 1 and kind not in named:
            named[kind] = cands[0]
    scored = _score_all(rules, member, f["members"], different)
    if named:
        distinct = list(dict.fromkeys(named.values()))
        first_kind = next(iter(named))
        if len(distinct) == 1:
            cid = distinct[0]
            res.outcome, res.customer_id, res.key, res.probability = "link", cid, first_kind, 1.0
            best = next((c for c in scored if c.customer_id == cid), None)
            if (first_kind not in ("record", "customer_id") and best is not None and best.comparisons
                    and sum(c.weight for c in best.comparisons) < 0):
                # a mistyped account number names somebody else: every other field says so; a person decides
                res.outcome, res.probability = "review", None
                res.review_id = f["open_review"] or review_id(key, cid)
            res.comparisons = best.comparisons if best else []
            res.score = best.score if best else None
            res.candidates = [Candidate(customer_id=cid, score=best.score if best else None,
                                        key=first_kind, comparisons=res.comparisons,
                                        member=best.member if best else None)]
            return res
        # keys disagree: a person decides, shown every customer a key named
        res.outcome, res.customer_id, res.key = "review", named[first_kind], first_kind
        res.candidates = [Candidate(customer_id=c, key=k) for k, c in named.items()]
        res.review_id = review_id(key, res.customer_id)
        return res
    if not scored:
        return res
    best = scored[0]
    res.score, res.probability = round(best.score, 3), round(probability(best.score), 6)
    res.comparisons = best.comparisons
    res.candidates = scored[:MAX_CANDIDATES]
    if best.score >= rules.link:
        res.outcome, res.customer_id = "link", best.customer_id
    elif best.score >= rules.review:
        res.outcome, res.customer_id = "review", best.customer_id
        res.review_id = f["open_review"] or review_id(key, best.customer_id)
    return res


def _score_all(rules, member: Member, members: dict[str, list[Member]], different: set[str]) -> list[Candidate]:
    fields = tuple(c.field for c in rules.comparators)
    mine = _values(member)
    out = []
    agree = {}
    for cid, ms in members.items():
        if cid in different:
            continue
        best = None
        for m in ms:
            total, comps = score(rules, compare(member, m, fields))
            if best is None or total > best[0]:
                best = (total, comps, m.label)
        out.append(Candidate(customer_id=cid, score=round(best[0], 3), comparisons=best[1], member=best[2]))
        # tie-break: two customers of one owner score alike on the owner's name and mailing address; the one
        # whose own premise the record names shares more values with it
        agree[cid] = len(mine & set().union(*(_values(m) for m in ms)))
    out.sort(key=lambda c: (-c.score, -agree[c.customer_id], c.customer_id))
    return out


def _values(m: Member) -> set[str]:
    return {*m.names, *m.addresses, *m.phones, *m.emails, *m.tax_ids}
