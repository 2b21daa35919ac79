"""The grid client's identity operations (``Grid.aresolve``, ``Grid.aidentity``, reviews): orchestration only.

Resolving asks every shard's index at once (one parallel round trip for a whole batch when nothing is written),
decides with :func:`grid.identity.resolver.decide`, and, when asked to write, records the outcome through the
owning shard's write path (WAL first): a link with its evidence, a new customer, or a review item. With
``write=True`` records are resolved one after another, each seeing the writes of those before it (two rows of
one new customer in a batch make one customer); every write id is derived from the record and its outcome, so
a batch retried after a crash writes nothing twice.
"""
from __future__ import annotations

import asyncio

from grid.errors import Conflict, InvalidInput, NotFound
from grid.identity.evidence import Evidence, Resolution, decode_records, record_key, to_builtins
from grid.identity.golden import golden_record
from grid.identity.resolver import decide, new_customer_id, outcome_op, query, write_id

__all__ = ["resolve", "resolve_for_import", "identity", "reviews", "decide_review", "merge", "unmerge",
           "resume_merges"]


async def _lookup(grid, rules, batch: list[tuple[str, list]]) -> list[list[dict]]:
    """Per query, every shard's part of the answer."""
    parts = await asyncio.gather(*(grid._aget(s.identity_lookup.remote(batch, rules.deterministic, rules.max_block),
                                              grid.config.request_timeout_s) for s in grid.shards))
    return [[p[i] for p in parts] for i in range(len(batch))]


async def resolve(grid, records, write: bool = False) -> list[Resolution]:
    """One :class:`Resolution` per record, in order; see the module docstring."""
    rules = grid.identity_rules.current
    evs = decode_records(records)
    queries = [query(rules, ev) for ev in evs]
    if not write:
        if not evs:
            return []
        found = await _lookup(grid, rules, [(record_key(ev), keys) for ev, (_, keys) in zip(evs, queries)])
        return [decide(rules, ev, m, f) for ev, (m, _), f in zip(evs, queries, found)]
    out = []
    for ev, (m, keys) in zip(evs, queries):
        (found,) = await _lookup(grid, rules, [(record_key(ev), keys)])
        res = decide(rules, ev, m, found)
        await _record(grid, ev, m, res)
        out.append(res)
    return out


async def resolve_for_import(grid, records: list[dict]) -> list[dict]:
    """The importer's contract (``grid.imports.linking``): one dict per row.

    ``{"outcome", "customer_id", "service_point_id", "interval_minutes", "evidence"}``; a ``new`` row gets the
    customer id it names, or the id derived from its record key when it has a name to make a customer of
    (otherwise ``unresolved``); ``evidence`` is the full resolution. Two things are written (WAL first, on the
    customer's shard; idempotent by record): a ``review`` row's review item, so a reviewer finds it in
    ``GET /v1/identity/reviews`` (the importer quarantines the row, and a replay after the decision links it),
    and a link decided by match weight or by a reviewer, with its evidence, so the customer's identity shows
    why the row is theirs (links by a deterministic key, the bulk of a system-of-record feed, are not written:
    the key is the evidence, and it is in the context).
    """
    rules = grid.identity_rules.current
    evs = decode_records([_evidence_dict(r) for r in records])
    if not evs:
        return []
    queries = [query(rules, ev) for ev in evs]
    found = await _lookup(grid, rules, [(record_key(ev), keys) for ev, (_, keys) in zip(evs, queries)])
    out = []
    writes = []
    for ev, (m, _), f in zip(evs, queries, found):
        res = decide(rules, ev, m, f)
        if res.outcome == "review" or (res.outcome == "link" and res.key is None):
            writes.append(_record(grid, ev, m, res))
        outcome = res.outcome
        if outcome == "new":
            # a row with only keys nobody has (a usage row of an unknown meter) cannot make a customer
            res.customer_id = ev.customer_id or (new_customer_id(res.record_key) if ev.name else None)
            outcome = "new" if res.customer_id else "unresolved"
        points = {k: v for part in f for k, v in part.get("points", {}).items()}
        point = None
        for kind in ("service_point_id", "meter_id"):
            value = getattr(ev, kind)
            if value and f"{kind}:{value}" in points:
                point = points[f"{kind}:{value}"]
                break
        out.append({"outcome": outcome, "customer_id": res.customer_id,
                    "service_point_id": point[0] if point and res.outcome == "link" else None,
                    "interval_minutes": point[1] if point and res.outcome == "link" else None,
                    "evidence": to_builtins(res)})
    await asyncio.gather(*writes)
    return out


_EVIDENCE_FIELDS = frozenset(Evidence.__struct_fields__)


def _evidence_dict(row: dict) -> dict:
    """An importer's evidence row as :class:`Evidence` fields: values as text, unknown keys (entity_id) left out."""
    out = {}
    for k, v in row.items():
        if k not in _EVIDENCE_FIELDS or v is None or v == "":
            continue
        out[k] = v if isinstance(v, bool) and k == "email_verified" else str(v)
    out.setdefault("source", "import")
    return out


async def _record(grid, ev: Evidence, member, res: Resolution) -> None:
    """Make the outcome durable on the customer's shard."""
    op = outcome_op(ev, member, res)
    if op is not None:
        await grid.awrite(op)


async def identity(grid, customer_id: str) -> dict:
    """A customer's identity: every linked record with its evidence, decisions, merges and the golden record;
    a merged-away customer answers where it went."""
    view = await grid._routed(customer_id, "identity_view", customer_id)
    if "merged_into" in view:
        return view
    view["golden"] = golden_record(grid.identity_rules.current, view)
    return view


async def reviews(grid, state: str | None, after: str | None, limit: int) -> list[dict]:
    if state not in (None, "open", "decided"):
        raise InvalidInput("state must be open or decided", field="state")
    parts = await asyncio.gather(*(grid._aget(s.identity_reviews.remote(state, after, limit),
                                              grid.config.request_timeout_s) for s in grid.shards))
    items = sorted((r for p in parts for r in p), key=lambda r: r["review_id"])[:limit]
    return [_review_view(r) for r in items]


def _review_view(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "member"}


async def find_review(grid, review_id: str) -> dict:
    parts = await asyncio.gather(*(grid._aget(s.identity_review.remote(review_id), grid.config.request_timeout_s)
                                   for s in grid.shards))
    for r in parts:
        if r is not None:
            return r
    raise NotFound(f"no review {review_id!r}", field="id")


async def decide_review(grid, review_id: str, decision: str, by: str = "", audit: dict | None = None) -> dict:
    """Record a reviewer's ``same`` / ``different``: durable on the proposed customer's shard, for good.

    ``audit`` (the gateway's block: who, route, request id) rides in the op, so the proposed customer's audit
    trail shows who decided, when and what (grid.audit)."""
    from grid.cluster import make_op

    if decision not in ("same", "different"):
        raise InvalidInput("decision must be 'same' or 'different'", field="decision")
    r = await find_review(grid, review_id)
    op = make_op("identity_decide", r["customer_id"], {"review_id": review_id, "decision": decision, "by": by},
                 write_id(r["record_key"], "decide:" + decision, r["customer_id"]))
    if audit is not None:
        op["audit"] = {**audit, "changes": {"review_id": review_id, "record_key": r["record_key"],
                                            "decision": decision}}
    await grid.awrite(op)
    return _review_view(await find_review(grid, review_id))


# -- merges (the steps are grid.identity.merge's ops) ---------------------------------------------------------
async def merge(grid, survivor: str, merged: str) -> dict:
    """Merge ``merged`` into ``survivor``; a retry (after a crash at any step) finishes the merge it began."""
    from grid.identity.merge import merge_id

    if survivor == merged:
        raise InvalidInput("a customer cannot be merged into itself", field="merged")
    view = await grid._routed(merged, "identity_view", merged)
    if "merged_into" in view:
        if view["merged_into"] != survivor:
            raise Conflict(f"customer {merged} was merged into {view['merged_into']}", field="merged")
        mid = view["merge_id"]
    else:
        begun = [m for m in view["merges"] if m["role"] == "out" and m["state"] == "begun"]
        if begun and begun[0]["survivor"] != survivor:
            raise Conflict(f"customer {merged} is being merged into {begun[0]['survivor']}", field="merged")
        mid = begun[0]["merge_id"] if begun else merge_id(survivor, merged, (await grid.aget(merged))["version"])
    target = await grid._routed(survivor, "identity_view", survivor)
    if "merged_into" in target:
        raise Conflict(f"customer {survivor} was merged into {target['merged_into']}", field="survivor")
    return await merge_steps(grid, survivor, merged, mid)


async def merge_steps(grid, survivor: str, merged: str, mid: str, stop_after: int = 3) -> dict:
    """The three steps of a merge (``stop_after`` < 3 leaves it half done, as a crash would: for tests)."""
    from grid.cluster import make_op

    out = await grid.awrite(make_op("identity_merge_out", merged, {"merge_id": mid, "survivor": survivor},
                                    f"{mid}:out"))
    if stop_after >= 2:
        await grid.awrite(make_op("identity_merge_in", survivor, {"merge_id": mid, "merged": merged,
                                                                  "record": out["record"], "links": out["links"],
                                                                  "carried": out.get("carried")},
                                  f"{mid}:in"))
    if stop_after >= 3:
        await grid.awrite(make_op("identity_merge_close", merged, {"merge_id": mid}, f"{mid}:close"))
    return {"merge_id": mid, "survivor": survivor, "merged": merged,
            "state": "done" if stop_after >= 3 else "begun"}


async def unmerge(grid, merged: str) -> dict:
    """Undo the merge of ``merged``: the survivor gives back exactly what it took, then ``merged`` returns."""
    from grid.cluster import make_op

    view = await grid._routed(merged, "identity_view", merged)
    if "merged_into" not in view:
        undone = [m for m in view["merges"] if m["merged"] == merged and m["state"] == "undone"]
        if undone:  # a retry of an unmerge that completed
            return {"merge_id": undone[-1]["merge_id"], "survivor": undone[-1]["survivor"], "merged": merged,
                    "state": "undone"}
        raise Conflict(f"customer {merged} is not merged", field="merged")
    mid, survivor = view["merge_id"], view["merged_into"]
    back = await grid.awrite(make_op("identity_unmerge_out", survivor, {"merge_id": mid}, f"{mid}:unmerge-out"))
    await grid.awrite(make_op("identity_unmerge_restore", merged, {"merge_id": mid, "carried": back.get("carried")},
                              f"{mid}:unmerge-restore"))
    return {"merge_id": mid, "survivor": survivor, "merged": merged, "state": "undone"}


async def resume_merges(grid) -> list[dict]:
    """Finish every merge a crash left begun (step 1 done, not closed), on every shard."""
    parts = await asyncio.gather(*(grid._aget(s.identity_pending_merges.remote(), grid.config.request_timeout_s)
                                   for s in grid.shards))
    return [await merge_steps(grid, m["survivor"], m["merged"], m["merge_id"]) for p in parts for m in p]
