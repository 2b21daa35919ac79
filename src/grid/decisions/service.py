"""What the shard actor runs for decisioning: event writes, decide-and-record, and the audit and event reads.

Called by the named methods of :class:`grid.shard_actor.ShardServer`; every state change goes through
``server.write`` (prepare -> WAL -> apply). A decision is computed first (inputs, Thompson samples) and then
written as a ``decision`` op holding the whole record, so the audit, the contact-policy counts and a replay
all see exactly the decision that was answered.

``decide`` (the dict the grid client passes) holds: ``actions`` (:class:`~grid.decisions.catalogue.ActionsRef`),
``channel`` (or None), ``plans`` (a :class:`~grid.whatif.plans.PlanCatalogue`, optional), ``write_id``
(optional: makes a retried next-best-action return its first decision), ``now_ts`` (optional, tests) and
``catalogue`` (a compiled catalogue instead of ``actions``: plain-shard tests and benchmarks).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid

from grid.decisions import events as ev
from grid.decisions.catalogue import resolve
from grid.decisions.decide import decide as decide_batch
from grid.errors import ContextGridError, InvalidInput

log = logging.getLogger(__name__)


def decision_id(write_id: str) -> str:
    return "D" + hashlib.sha1(write_id.encode()).hexdigest()[:14]


def event_ops(items: list | dict, write_id: str | None = None, now_ts: int | None = None) -> list[dict]:
    """Check a batch of client events (all of them, before anything is written) and group them into one
    ``event`` op per customer, in order of first appearance.

    Raises
    ------
    InvalidInput
        The first bad event, its field named ``events[i].<field>`` (``body.<field>`` for a single event).
    """
    now_ts = int(time.time()) if now_ts is None else now_ts
    if isinstance(items, dict) and set(items) == {"events"}:  # the batch form {"events": [...]}
        items = items["events"]
    single = isinstance(items, dict)
    events = [items] if single else items
    if not isinstance(events, list) or not events:
        raise InvalidInput("events must be a non-empty list", field="events")
    by_customer: dict[str, list[dict]] = {}
    for i, e in enumerate(events):
        where = "body" if single else f"events[{i}]"
        ev.check_event(e, now_ts, where)
        cid = e.get("customer_id")
        if not isinstance(cid, str) or not cid:
            raise InvalidInput("customer_id must be a non-empty string", field=f"{where}.customer_id")
        by_customer.setdefault(cid, []).append({k: v for k, v in e.items() if k != "customer_id"})
    base = write_id or uuid.uuid4().hex
    return [{"kind": "event", "customer_id": cid, "body": {"events": evs}, "write_id": f"{base}:{cid}",
             "if_match": None} for cid, evs in by_customer.items()]


async def _started(coro) -> asyncio.Task:
    """``coro`` (a ``server.write``) run up to its wait for the log: checked, logged and applied in memory.

    A write is applied in the same event-loop step it is logged in and then only waits for the fsync, so the
    next write (the churn score, the decision) can be computed on the applied state and logged into the same
    group commit; everything is answered only once all of it is durable.
    """
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    if task.done():
        task.result()  # a write refused by its check raises here, before anything else is written
    return task


async def append_events(server, ops: list[dict], decide: dict | None) -> dict:
    """Write event ops; re-score churn if a model is in force; with ``decide``, decide and record."""
    shard = server.shard
    if decide and "catalogue" not in decide:  # a catalogue changed on disk is refused before any write
        decide = dict(decide, catalogue=resolve(decide["actions"]))
    writes = [await _started(server.write(op)) for op in ops]
    later = []
    if shard.decisions.model is not None:  # re-score churn on the new evidence, before any decision
        later += [await _started(rescore(server, op["customer_id"], op["write_id"])) for op in ops]
    decisions = None
    if decide:
        triggers = {op["customer_id"]: [ev.event_id(op["write_id"], i) for i in range(len(op["body"]["events"]))]
                    for op in ops}
        wids = [f"{op['write_id']}:decision" for op in ops]
        decisions, dops = plan_decisions(shard, list(triggers), dict(decide, write_ids=wids), triggers)
        later += [await _started(server.write(op)) for op in dops]
    results = [dict(r) for r in await asyncio.gather(*writes)]
    versions: dict[str, int] = {}
    for r in await asyncio.gather(*later):
        if r is not None:
            versions[r["customer_id"]] = max(versions.get(r["customer_id"], 0), r["version"])
    for r, op in zip(results, ops):
        r["version"] = max(r["version"], versions.get(op["customer_id"], 0))
    out = {"items": results}
    if decide:
        out["decisions"] = decisions
    return out


def plan_decisions(shard, customer_ids: list[str], decide: dict, triggers: dict) -> tuple[list[dict], list[dict]]:
    """(decision records, the ``decision`` ops that record them) for ``customer_ids``; nothing is written.

    A customer whose write id was already applied (a retry) gets its first decision back and no new op.
    """
    wids = decide.get("write_ids") or [decide.get("write_id") or uuid.uuid4().hex for _ in customer_ids]
    done = {}
    for cid, wid in zip(customer_ids, wids):
        if wid in shard.applied:
            done[cid] = shard.decisions.find_decision(cid, decision_id(wid))
    todo = [(c, w) for c, w in zip(customer_ids, wids) if c not in done]
    ops = []
    if todo:
        now_ts = int(decide.get("now_ts") or time.time())
        catalogue = decide["catalogue"] if "catalogue" in decide else resolve(decide["actions"])
        records = decide_batch(shard, [c for c, _ in todo], catalogue, decide.get("channel"), now_ts,
                               [decision_id(w) for _, w in todo], plans=decide.get("plans"),
                               churn_model_version=(shard.decisions.model or {}).get("version"))
        for rec in records:
            rec["trigger"] = list(triggers.get(rec["customer_id"], []))
        ops = [{"kind": "decision", "customer_id": c, "write_id": w, "at": ev.iso(now_ts), "body": r,
                "if_match": None} for (c, w), r in zip(todo, records)]
        done.update({r["customer_id"]: r for r in records})
    return [done[c] for c in customer_ids], ops


async def decide_and_record(server, customer_ids: list[str], decide: dict, triggers: dict) -> list[dict]:
    """Decide for ``customer_ids`` on this shard and write each decision (durable before it is answered)."""
    records, ops = plan_decisions(server.shard, customer_ids, decide, triggers)
    await asyncio.gather(*(server.write(op) for op in ops))
    return records


def decide_now(shard, customer_ids: list[str], decide: dict, triggers: dict | None = None) -> list[dict]:
    """:func:`decide_and_record` on a plain shard without a log (tests, benchmarks, notebooks)."""
    records, ops = plan_decisions(shard, customer_ids, decide, triggers or {})
    for op in ops:
        shard.write(op)
    return records


def churn_scores(shard, model, path: str, write_id: str) -> dict:
    """The ``churn_scores`` op of every customer of ``shard`` under ``model`` (nothing is written)."""
    from grid.decisions.churn import feature_matrix

    ids = sorted(shard.records)
    p, tops = model.score(feature_matrix(shard, ids))
    return {"kind": "churn_scores", "customer_id": None, "write_id": write_id, "if_match": None,
            "body": {"model": {"version": model.version, "path": path},
                     "scores": {c: [float(x), t] for c, x, t in zip(ids, p.tolist(), tops)}}}


async def score_base(server, model, path: str, write_id: str) -> dict:
    """Score every customer of the shard with ``model`` (already in this process) and write the scores."""
    from grid.decisions.churn import remember

    remember(model, path)
    op = churn_scores(server.shard, model, path, write_id)
    return await server.write(op)


async def rescore(server, customer_id: str, write_id: str) -> dict | None:
    """Re-score one customer under the shard's model after an event; returns the write's result (None, and
    the old score kept, when the model file cannot be read: the event itself is written either way)."""
    from grid.decisions.churn import customer_features, load

    shard = server.shard
    info = shard.decisions.model
    try:
        model = load(info["path"])
    except ContextGridError as exc:
        log.warning("shard %s: churn model %s unavailable, %s not re-scored: %s", shard.shard_id,
                    info.get("version"), customer_id, exc)
        return None
    p, tops = model.score(customer_features(shard, customer_id)[None, :])
    op = {"kind": "churn", "customer_id": customer_id, "write_id": f"{write_id}:churn", "if_match": None,
          "body": {"churn_risk": float(p[0]), "top_features": tops[0], "model_version": model.version}}
    return await server.write(op)


def events_view(shard, customer_id: str, limit: int) -> dict:
    shard.record(customer_id)  # NotFound for an unknown customer
    view = ev.view(shard.decisions.events.get(customer_id), int(time.time()), limit)
    view["customer_id"] = customer_id
    view["churn"] = shard.decisions.churn.get(customer_id)
    return view


def decisions_view(shard, customer_id: str, limit: int) -> list[dict]:
    shard.record(customer_id)
    return list(reversed(shard.decisions.audit.get(customer_id, [])[-limit:]))
