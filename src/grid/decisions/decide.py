"""Next best action: engagement policies, contact policy, arbitration and channel choice, in the owning shard.

For a batch of customers (one, at event time) and an optional requested channel:

1. **inputs**: one row per customer (:mod:`grid.decisions.inputs`), as columns;
2. **engagement policies**, in order, each predicate over all rows at once (the vectorized compiler) and only
   when some row reached its stage: eligibility, applicability, then (the what-if saving priced only for rows
   some action still considers) suitability; a stage not reached is recorded as None;
3. **contact policy** per (row, action): the same action rejected ``K`` times within the suppression window is
   suppressed; offers (not service actions) wait out a cool-off after a complaint; a channel that carried
   ``N`` offers in the last 7 days, or is in its quiet hours, is not available; an action with no channel
   left is out;
4. **arbitration**: priority = propensity x value x lever, the propensity a Thompson sample from the Beta
   posterior of (action, segment) so that rarely tried actions still get explored; the highest wins; when no
   action passes, "no action" is the decision;
5. **channel**: the requested one, else the available channel with the best observed response rate weighted
   by the contact's preference order.

Everything that went in and came out is returned as the decision record the audit stores. Sampling is seeded
by the decision's id, so a decision can be recomputed exactly from its inputs.
"""
from __future__ import annotations

import hashlib

import numpy as np

from grid.contacts.dispatcher import in_quiet_hours
from grid.decisions import events as ev
from grid.decisions.catalogue import INBOUND, SAVING, Catalogue
from grid.decisions.inputs import customer_inputs, rate_plan_saving
from grid.rules.predicates import python_column
from grid.timegrid import zone

WEEK = 7 * ev.DAY


def seed_of(decision_id: str) -> int:
    return int.from_bytes(hashlib.sha256(decision_id.encode()).digest()[:8], "little")


def reachable(rec: dict, now_ts: int, tz) -> dict[str, tuple[int, bool]]:
    """Outbound channel type -> (best preference over contacts, in quiet hours for every contact having it).

    Quiet hours are read the way alerts read them (:func:`grid.contacts.dispatcher.in_quiet_hours`), so an
    offer never goes out when an ordinary alert would wait.
    """
    out: dict[str, tuple[int, bool]] = {}
    for c in rec.get("contacts", []):
        for ch in c.get("channels", []):
            quiet = in_quiet_hours(ch.get("quiet_hours"), now_ts, tz) is not None
            pref, all_quiet = out.get(ch["type"], (1 << 30, True))
            out[ch["type"]] = (min(pref, int(ch.get("preference", 1))), all_quiet and quiet)
    return out


def _masks(pred, table: dict, n: int) -> np.ndarray:
    return np.ones(n, dtype=bool) if pred is None else pred.evaluate(table, n)


def _columns(rows: list[dict], fields) -> dict:
    return {f: python_column([r.get(f) for r in rows]) for f in fields}


def decide(shard, customer_ids: list[str], catalogue: Catalogue, channel: str | None, now_ts: int,
           decision_ids: list[str], trigger: list[str] | None = None, plans=None,
           churn_model_version: str | None = None) -> list[dict]:
    """Decide for each customer; returns one decision record per customer (see the module docstring).

    Parameters
    ----------
    shard : grid.shard.Shard
    customer_ids : list of str
    catalogue : Catalogue
    channel : str or None
        The channel the decision is for (an inbound web visit or agent call, or one outbound channel); None
        lets the channel be chosen.
    now_ts : int
        Epoch seconds of the decision.
    decision_ids : list of str
        One id per customer; seeds the Thompson samples.
    trigger : list of str, optional
        Event ids that prompted the decision.
    plans : grid.whatif.plans.PlanCatalogue, optional
        Where candidate rate plans are read from.
    """
    n = len(customer_ids)
    st = shard.decisions
    pol = catalogue.policy
    actions = catalogue.actions
    rows = [customer_inputs(shard, c, now_ts, catalogue.fields, st.churn.get(c)) for c in customer_ids]
    table = _columns(rows, catalogue.fields)
    # stages in order, each evaluated only when some row reached it (at event time n == 1: an action the
    # customer is not eligible for costs one predicate, not three)
    elig = [_masks(a.eligibility, table, n) for a in actions]
    appl = [_masks(a.applicability, table, n) & e if e.any() else e for a, e in zip(actions, elig)]
    if any(a.needs_saving for a in actions):
        priced: dict[tuple, int] = {}
        saving = [None] * n
        for a, e, p in zip(actions, elig, appl):
            if not a.needs_saving:
                continue
            for i in np.flatnonzero(e & p).tolist():
                key = (customer_ids[i], a.plans)
                if key not in priced:
                    priced[key] = rate_plan_saving(shard, customer_ids[i], a.plans, plans)
                saving[i] = max(saving[i] or 0, priced[key])
        for i, s in enumerate(saving):
            if s is not None:
                rows[i][SAVING] = s
        table[SAVING] = python_column(saving)
    suit = [_masks(a.suitability, table, n) & p if p.any() else p for a, p in zip(actions, appl)]

    tz = zone(shard.timezone)
    out = []
    for i, cid in enumerate(customer_ids):
        rec = shard.records[cid]
        row = rows[i]
        contact = st.contact.get(cid) or {"offers": [], "rejections": {}, "channels": {}}
        rng = np.random.default_rng(seed_of(decision_ids[i]))
        reach = reachable(rec, now_ts, tz)
        recent = [o for o in contact["offers"] if o[0] > now_ts - WEEK]
        used = {}
        for o in recent:
            used[o[2]] = used.get(o[2], 0) + 1
        state = st.events.get(cid)
        last_complaint = state["last"].get("complaint") if state else None
        cooloff = last_complaint is not None and now_ts - last_complaint < pol.complaint_cooloff_days * ev.DAY
        scored, fired, items = [], [], []
        for j, a in enumerate(actions):
            e, p = bool(elig[j][i]), bool(appl[j][i])
            # a stage not reached is not evaluated: None
            stages = {"eligible": e, "applicable": p if e else None, "suitable": bool(suit[j][i]) if p else None}
            item = {"action_id": a.id, **stages, "policy": None, "channels": [], "priority": None}
            for stage, ok in (("eligibility", stages["eligible"]), ("applicability", stages["applicable"]),
                              ("suitability", stages["suitable"])):
                if getattr(a, stage) is not None and ok:
                    fired.append(f"{a.id}:{stage}")
            if stages["suitable"]:
                rejected = [t for t in contact["rejections"].get(a.id, []) if t > now_ts - pol.suppression_days * ev.DAY]
                if len(rejected) >= pol.suppress_after_rejections:
                    item["policy"] = f"suppressed: rejected {len(rejected)} times in {pol.suppression_days} days"
                elif cooloff and a.kind == "offer":
                    item["policy"] = f"complaint cool-off ({pol.complaint_cooloff_days} days)"
                else:
                    if channel is not None:
                        cands = [channel] if channel in a.channels and (channel in INBOUND or channel in reach) else []
                    else:
                        cands = [c for c in a.channels if c in reach]
                    quiet = [c for c in cands if c in reach and reach[c][1]]
                    capped = [c for c in cands if used.get(c, 0) >= pol.max_offers_per_channel_per_week]
                    item["channels"] = [c for c in cands if c not in quiet and c not in capped]
                    if not item["channels"]:
                        why = "no channel" if not cands else ", ".join(
                            [f"{c}: quiet hours" for c in quiet] +
                            [f"{c}: {pol.max_offers_per_channel_per_week} offers this week" for c in capped
                             if c not in quiet])
                        item["policy"] = f"no channel available ({why})"
            alpha, beta = st.posterior(a.id, rec["segment"], (pol.prior_accepted, pol.prior_rejected))
            theta = float(rng.beta(alpha, beta))  # drawn for every action, so a row's draws don't depend on others
            value = a.value.cents + (a.value.factor * row.get(a.value.field, 0) if a.value.field else 0.0)
            if a.value.rate_plan_saving:
                value += row.get(SAVING, 0)
            item.update(propensity={"alpha": alpha, "beta": beta, "sample": round(theta, 6)},
                        value_cents=int(round(value)), lever=a.lever)
            if stages["suitable"] and item["policy"] is None:
                item["priority"] = round(theta * value * a.lever, 4)
                scored.append((item["priority"], -j, item))
            items.append(item)
        chosen = None
        reason = "no action passed eligibility, applicability, suitability and the contact policy"
        if scored:
            pri, _, best = max(scored, key=lambda s: (s[0], s[1]))
            if pri > 0:
                ch = best["channels"][0] if channel is not None else _best_channel(best["channels"], reach,
                                                                                   contact["channels"])
                chosen = {"action_id": best["action_id"], "channel": ch, "priority": pri,
                          "value_cents": best["value_cents"]}
                reason = None
            else:
                reason = "every passing action has zero value"
        out.append({
            "decision_id": decision_ids[i], "customer_id": cid, "at": ev.iso(now_ts),
            "channel_requested": channel, "trigger": list(trigger or []), "segment": rec["segment"],
            "inputs": row, "rules_fired": fired, "actions": items, "chosen": chosen, "reason": reason,
            "versions": {"actions": catalogue.version, "churn_model": churn_model_version},
            "ignored_weight": pol.ignored_weight,
        })
    return out


def _best_channel(channels: list[str], reach: dict, observed: dict) -> str:
    """Best observed response rate (Beta(1, 1) smoothed) divided by the preference rank; ties: action order."""
    def score(c: str) -> float:
        acc, answered = observed.get(c, (0, 0))
        pref = reach.get(c, (len(channels) + 1, False))[0]
        return (1 + acc) / (2 + answered) / pref

    return max(channels, key=lambda c: (score(c), -channels.index(c)))
