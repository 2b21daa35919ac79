"""A shard's decisioning state and the write ops on it (kinds ``event``, ``decision``, ``response``, ``churn``).

One object per shard (``Shard.decisions``), snapshotted as one blob (:meth:`DecisionState.to_blob`). Every
change arrives as an op through the shard's write path (prepare -> WAL -> apply), so it is durable and replays
to the same state:

* ``event``: ``{"events": [{type, ts, payload}, ...]}`` for one customer; counted into its event state.
* ``decision``: a decision already computed (:mod:`grid.decisions.decide`, Thompson samples included); apply
  only stores it (audit) and counts the offer made (contact policy). Replaying never re-samples.
* ``response``: ``{"decision_id", "outcome"}``; updates the Beta posterior of (action, segment), the customer's
  rejections and the channel's observed responses.
* ``churn``: ``{"churn_risk", "top_features", "model_version"}``; the customer's churn score.
* ``churn_scores`` (shard-wide, no customer): ``{"model": {"version", "path"}, "scores": {customer: [risk,
  top_features]}}``; every score of a whole-base run, and the model that re-scores on later events.

Per customer (plain dicts, msgpack-able): ``events`` (:mod:`grid.decisions.events`), ``contact`` =
``{"offers": [[ts, action, channel, decision_id]], "rejections": {action: [ts, ...]},
"channels": {channel: [accepted, answered]}, "responded": {decision_id: outcome}}``, ``audit`` (the last
``AUDIT`` decisions) and ``churn``. Shard-wide: ``propensity`` = ``{"action|segment": [accepted, rejected]}``
(counts on top of the catalogue's prior: a prior change applies to what was learned so far).
"""
from __future__ import annotations

import datetime as dt

import msgpack

from grid.decisions import events as ev
from grid.errors import Conflict, InvalidInput, NotFound

AUDIT = 200  # decisions kept per customer (the WAL and snapshots hold them; older ones age out)
OFFERS = 100  # offers remembered per customer for the weekly caps
OUTCOMES = ("accepted", "rejected", "ignored")
KINDS = ("event", "decision", "response", "churn")
SCORES = "churn_scores"  # shard-wide: a whole shard's churn scores from one model, in one op


def _ts(at: str) -> int:
    return int(dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())


def empty_contact() -> dict:
    return {"offers": [], "rejections": {}, "channels": {}, "responded": {}}


class DecisionState:
    """Events, contact history, decisions, churn scores and propensities of one shard's customers."""

    def __init__(self):
        self.events: dict[str, dict] = {}
        self.contact: dict[str, dict] = {}
        self.audit: dict[str, list[dict]] = {}
        self.churn: dict[str, dict] = {}
        self.propensity: dict[str, list[float]] = {}
        self.model: dict | None = None  # the churn model in force here: {"version", "path"}

    # -- persistence ----------------------------------------------------------------------------------------
    def to_blob(self) -> bytes:
        return msgpack.packb({"events": self.events, "contact": self.contact, "audit": self.audit,
                              "churn": self.churn, "propensity": self.propensity, "model": self.model},
                             use_bin_type=True)

    @classmethod
    def from_blob(cls, blob: bytes) -> "DecisionState":
        d = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        s = cls()
        s.events, s.contact, s.audit = d["events"], d["contact"], d["audit"]
        s.churn, s.propensity, s.model = d["churn"], d["propensity"], d.get("model")
        return s

    # -- partitions move with their customers ---------------------------------------------------------------
    def export(self, customer_ids) -> dict:
        return {name: {c: getattr(self, name)[c] for c in customer_ids if c in getattr(self, name)}
                for name in ("events", "contact", "audit", "churn")}

    def absorb(self, part: dict | None) -> None:
        for name, items in (part or {}).items():
            getattr(self, name).update(items)

    def drop(self, customer_ids) -> None:
        for name in ("events", "contact", "audit", "churn"):
            d = getattr(self, name)
            for c in customer_ids:
                d.pop(c, None)

    # -- reads ----------------------------------------------------------------------------------------------
    def posterior(self, action: str, segment: str, prior: tuple[float, float]) -> tuple[float, float]:
        acc, rej = self.propensity.get(f"{action}|{segment}", (0.0, 0.0))
        return prior[0] + acc, prior[1] + rej

    def find_decision(self, customer_id: str, decision_id: str) -> dict:
        for d in reversed(self.audit.get(customer_id, ())):
            if d["decision_id"] == decision_id:
                return d
        raise NotFound(f"no decision {decision_id!r} for customer {customer_id}", field="decision_id")


# -- ops ---------------------------------------------------------------------------------------------------------
def prepare(shard, op: dict) -> dict:
    """Validate ``op`` against the state; mutate nothing (the shard has already stamped ``at``)."""
    kind, cid, body = op["kind"], op["customer_id"], op["body"]
    shard.record(cid)  # NotFound for an unknown customer
    if kind == "event":
        at = _ts(op["at"])
        items = body.get("events")
        if not isinstance(items, list) or not items:
            raise InvalidInput("events must be a non-empty list", field="events")
        # checked events replace the client's: apply then reads only what was validated
        op["body"] = {"events": [ev.check_event(e, at, f"events[{i}]") for i, e in enumerate(items)]}
    elif kind == "response":
        if body.get("outcome") not in OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
        d = shard.decisions.find_decision(cid, str(body.get("decision_id")))
        if d["chosen"] is None:
            raise Conflict(f"decision {d['decision_id']} chose no action; there is nothing to respond to",
                           field="decision_id")
        done = shard.decisions.contact.get(cid, {}).get("responded", {}).get(d["decision_id"])
        if done is not None:
            raise Conflict(f"decision {d['decision_id']} already has the response {done!r}", field="decision_id")
        op["body"] = {"decision_id": d["decision_id"], "outcome": body["outcome"],
                      "action_id": d["chosen"]["action_id"], "channel": d["chosen"]["channel"],
                      "segment": d["segment"], "ignored_weight": d["ignored_weight"]}
    elif kind == "decision":
        if not isinstance(body.get("decision_id"), str):
            raise InvalidInput("a decision needs its id", field="decision_id")
    elif kind == "churn":
        p = body.get("churn_risk")
        if not isinstance(p, float) or not 0.0 <= p <= 1.0:
            raise InvalidInput("churn_risk must be a probability", field="churn_risk")
    return op


def apply(shard, op: dict) -> dict:
    """Apply a prepared op (deterministic); the shard's apply path then bumps the customer's version."""
    kind, cid, body = op["kind"], op["customer_id"], op["body"]
    st = shard.decisions
    at = _ts(op["at"])
    result: dict = {"customer_id": cid}
    if kind == "event":
        state = st.events.get(cid)
        if state is None:
            state = st.events[cid] = ev.empty()
        ids = []
        for i, e in enumerate(body["events"]):
            eid = ev.event_id(op["write_id"], i)
            ev.add(state, e, eid, at)
            ids.append(eid)
        result["event_ids"] = ids
    elif kind == "decision":
        log = st.audit.setdefault(cid, [])
        log.append(body)
        del log[:-AUDIT]
        chosen = body.get("chosen")
        if chosen is not None:
            offers = st.contact.setdefault(cid, empty_contact())["offers"]
            offers.append([at, chosen["action_id"], chosen["channel"], body["decision_id"]])
            del offers[:-OFFERS]
        result["decision_id"] = body["decision_id"]
    elif kind == "response":
        c = st.contact.setdefault(cid, empty_contact())
        outcome = body["outcome"]
        c["responded"][body["decision_id"]] = outcome
        if len(c["responded"]) > AUDIT:  # decisions past the audit window cannot be answered anyway
            for k in list(c["responded"])[:-AUDIT]:
                del c["responded"][k]
        key = f"{body['action_id']}|{body['segment']}"
        post = st.propensity.setdefault(key, [0.0, 0.0])
        if outcome == "accepted":
            post[0] += 1.0
        else:
            post[1] += 1.0 if outcome == "rejected" else float(body["ignored_weight"])
        ch = c["channels"].setdefault(body["channel"], [0, 0])
        ch[1] += 1
        if outcome == "accepted":
            ch[0] += 1
        if outcome == "rejected":
            c["rejections"].setdefault(body["action_id"], []).append(at)
        result.update(decision_id=body["decision_id"], outcome=outcome, action_id=body["action_id"])
    elif kind == "churn":
        st.churn[cid] = dict(body)
    if kind == "churn":
        rec = shard.records[cid]
        shard.records[cid] = {**rec, "classification": {**(rec.get("classification") or {}),
                                                        "churn_risk": body["churn_risk"]}}
    return result


def prepare_scores(shard, op: dict) -> dict:
    body = op["body"]
    if not isinstance(body.get("model"), dict) or not isinstance(body.get("scores"), dict):
        raise InvalidInput("churn scores need a model and scores", field="body")
    return op


def apply_scores(shard, op: dict, _prepared=None) -> tuple[dict, list[str]]:
    """Store every score of the op; (result, the scored customers: the shard bumps their versions). Customers
    gone since the scores were computed are skipped."""
    body = op["body"]
    st = shard.decisions
    st.model = dict(body["model"])
    version = body["model"]["version"]
    changed = []
    for cid, (risk, top) in body["scores"].items():
        rec = shard.records.get(cid)
        if rec is None:
            continue
        st.churn[cid] = {"churn_risk": risk, "top_features": top, "model_version": version}
        shard.records[cid] = {**rec, "classification": {**(rec.get("classification") or {}), "churn_risk": risk}}
        changed.append(cid)
    return {"scored": len(changed), "model_version": version}, changed
