"""The decision inputs of a customer: one row of :data:`grid.decisions.catalogue.DECISION_COLUMNS`.

Built in the owning shard from the live context (record, legacy bills, event counters, churn score) at the
moment of the decision; only the columns the catalogue reads are built (``fields``), so an unused input costs
nothing. ``rate_plan_saving_cents`` is priced separately (:func:`rate_plan_saving`) and only for customers an
action still considers after eligibility and applicability, because it runs the bill kernel.
"""
from __future__ import annotations

import time
import weakref
from collections import OrderedDict

from grid.decisions import events as ev
from grid.decisions.catalogue import CHANNELS
from grid.errors import ContextGridError
from grid.rules.columns import ATTR_PREFIX

BILLS_12M = 12


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def _bills(shard, rec: dict) -> tuple[int, int, int]:
    """(spend over the last 12 bills, newest bill, change of the newest against the mean before, percent)."""
    accounts = [a["account_id"] for a in rec["accounts"]]
    by_period: dict[str, int] = {}
    for b in shard.bills.for_accounts(accounts):
        by_period[b["period_start"]] = by_period.get(b["period_start"], 0) + int(b["total_cents"])
    totals = [by_period[p] for p in sorted(by_period, reverse=True)][:BILLS_12M]
    if not totals:
        return 0, 0, 0
    last = totals[0]
    before = totals[1:]
    mean = sum(before) / len(before) if before else 0
    change = int(round((last - mean) * 100 / mean)) if mean > 0 else 0
    return sum(totals), last, change


def customer_inputs(shard, customer_id: str, now_ts: int, fields: frozenset[str], churn: dict | None = None) -> dict:
    """The input row of one customer, restricted to ``fields`` (missing values are simply absent).

    Parameters
    ----------
    shard : grid.shard.Shard
    customer_id : str
    now_ts : int
        Epoch seconds of the decision (event windows count back from it).
    fields : frozenset of str
        Columns the catalogue reads.
    churn : dict, optional
        The customer's churn score (``{"churn_risk": p, ...}``), when one was computed.
    """
    rec = shard.record(customer_id)
    row: dict = {}
    cls = rec.get("classification") or {}
    active = [a for a in rec["accounts"] if a.get("status", "active") == "active"]
    simple = {
        "kind": lambda: rec["kind"],
        "segment": lambda: rec["segment"],
        "rate_plan_id": lambda: active[0]["rate_plan_id"] if active else None,
        "programs": lambda: sorted({p["code"] for a in rec["accounts"] for p in a["programs"]}),
        "has_solar": lambda: any(sp.get("has_solar") for a in rec["accounts"] for sp in a["service_points"]),
        "key_account": lambda: bool(cls.get("key_account", False)),
        "load_priority": lambda: cls.get("load_priority"),
        "n_accounts": lambda: len(active),
        "payment_methods": lambda: sorted({p.get("method") for p in rec.get("payments", []) if p.get("method")}),
        "channels": lambda: sorted({ch["type"] for c in rec.get("contacts", []) for ch in c.get("channels", [])
                                    if ch.get("type") in CHANNELS}),
        "churn_risk_pct": lambda: int(round(100 * (churn or {}).get("churn_risk", 0.0))),
    }
    for name, fn in simple.items():
        if name in fields:
            row[name] = fn()
    if fields & {"spend_12m_cents", "last_bill_cents", "bill_change_pct"}:
        row["spend_12m_cents"], row["last_bill_cents"], row["bill_change_pct"] = _bills(shard, rec)
    if any(f.startswith("events.") for f in fields):
        feats = ev.features(shard.decisions.events.get(customer_id), now_ts)
        row.update({k: v for k, v in feats.items() if k in fields})
    attrs = [f for f in fields if f.startswith(ATTR_PREFIX)]
    if attrs:
        flat: dict = {}
        _flatten("attr", rec.get("attributes") or {}, flat)
        row.update({f: flat[f] for f in attrs if f in flat})
    return {k: v for k, v in row.items() if v is not None}


# Savings by (customer, plans, accounts object), per shard, for SAVING_TTL_S. Every event bumps the context's
# version, which empties the what-if's own bill cache for that customer, and pricing 12 months of several plans
# costs ~10 ms: at event time that was most of a decision. The saving is an annual figure from 12 complete
# months; an hour-old figure ranks offers as well, and a replaced or re-planned account (a new accounts object)
# is priced again at once.
SAVING_TTL_S = 3600.0
SAVING_CACHE = 100_000
_savings: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()


def rate_plan_saving(shard, customer_id: str, plans: tuple[str, ...], catalogue=None) -> int:
    """Annual saving (cents, >= 0) of the cheapest of ``plans`` over the current plan, priced by the what-if
    kernel on the customer's live last 12 months (:func:`grid.whatif.scenarios.scenarios`); 0 when no plan is
    cheaper or the customer has no priceable account. Cached for ``SAVING_TTL_S`` (see above)."""
    from grid.whatif.plans import PlanCatalogue
    from grid.whatif.scenarios import scenarios

    rec = shard.record(customer_id)
    cache = _savings.get(shard)
    if cache is None:
        cache = _savings[shard] = OrderedDict()
    key = (customer_id, plans, id(rec["accounts"]), getattr(catalogue, "directory", None))
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[1] < SAVING_TTL_S and hit[2] is rec["accounts"]:
        return hit[0]
    try:
        result = scenarios(shard, customer_id, {"plans": list(plans)}, catalogue or PlanCatalogue())
    except ContextGridError:  # no active account, no usage, a plan of another time zone: nothing to save
        saving = 0
    else:
        diffs = [i["difference_cents"] for i in result["items"] if i["difference_cents"] is not None]
        saving = max(0, -min(diffs)) if diffs else 0
    cache[key] = (saving, now, rec["accounts"])  # the object itself: an id is only unique while it lives
    cache.move_to_end(key)
    while len(cache) > SAVING_CACHE:
        cache.popitem(last=False)
    return saving
