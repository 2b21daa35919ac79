"""Churners planted in a generated base: signals first, then the accounts close; the truth is recorded.

Every customer of a chunk draws signals that real churn analyses name: bill shock (``high_bill`` events and a
"high bill" call), complaints, missed payments (the ``payment_missed`` events the payment step already drew),
a plan misfit (repeated visits to the rate-comparison page) and a competitor's offer (``competitor_offer``).
The chance to leave is a logistic function of them with thresholds and interactions a linear model cannot
express exactly (missed payments matter from the second one; a competitor's offer matters to a recent customer,
hardly to a loyal one; bill shock or a complaint alone hardly matter, both together a lot), so a tree model has something to find.
A churner's accounts are closed at the end of the window, after its signals; ``truth/churn.parquet`` holds one
row per customer: churned or not, the probability it was drawn with, and the signals.

Opt-in (``generate_base(churn_rate=...)``), so bases generated without it stay byte-identical.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema([("customer_id", pa.string()), ("churned", pa.bool_()), ("probability", pa.float64()),
                    ("bill_shock", pa.bool_()), ("complaints", pa.int64()), ("missed_payments", pa.int64()),
                    ("plan_misfit", pa.bool_()), ("competitor_offer", pa.bool_()), ("tenure_years", pa.float64())])

# intercepts are solved per base so that the mean probability equals the requested rate (see _intercept)
WEIGHTS = {"shock": 0.2, "complaints": 0.1, "missed_from_2": 2.5, "misfit": 0.8, "competitor": 0.2,
           "competitor_recent": 3.5, "shock_and_complaint": 3.5, "tenure": -0.02}


def _logit_without_intercept(shock, complaints, missed, misfit, competitor, tenure) -> np.ndarray:
    w = WEIGHTS
    return (w["shock"] * shock + w["complaints"] * np.minimum(complaints, 3)
            + w["missed_from_2"] * (missed >= 2) + w["misfit"] * misfit + w["competitor"] * competitor
            + w["competitor_recent"] * (competitor & (tenure < 3)) + w["shock_and_complaint"] * (shock & (complaints >= 1))
            + w["tenure"] * np.minimum(tenure, 20))


def _intercept(z: np.ndarray, rate: float) -> float:
    """The intercept b with mean(sigmoid(z + b)) == rate (bisection: the mean is monotone in b)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def plant(chunk, rng: np.random.Generator, start_ts: int, end_ts: int, rate: float) -> pa.Table:
    """Add churn signals to ``chunk.events``, close the churners' accounts; returns the truth rows.

    Parameters
    ----------
    chunk : grid.synth.customers.Chunk
        After payments were drawn (its ``payment_missed`` events count as signals); events still hold epoch
        seconds.
    rng : numpy.random.Generator
        The chunk's own churn stream.
    start_ts, end_ts : int
        The window, epoch seconds.
    rate : float
        Target share of churners (the mean drawn probability).
    """
    cids = chunk.customers["customer_id"]
    n = len(cids)
    span = max(1, end_ts - start_ts)
    created = np.array(chunk.customers["created_at"], dtype=np.int64) // 1_000_000
    tenure = (end_ts - created) / (365.25 * 86_400)
    shock = rng.random(n) < 0.25
    complaints = rng.poisson(0.4, n)
    misfit = rng.random(n) < 0.12
    competitor = rng.random(n) < 0.12
    missed = np.array([sum(e["type"] == "payment_missed" for e in evs) for evs in chunk.events], dtype=np.int64)
    z = _logit_without_intercept(shock, complaints, missed, misfit, competitor, tenure)
    p = 1 / (1 + np.exp(-(z + _intercept(z, rate))))
    churned = rng.random(n) < p

    def when() -> int:  # signals fall in the window's first 11 twelfths: before the accounts close
        return start_ts + int(rng.integers(0, max(1, span * 11 // 12)))

    for i, evs in enumerate(chunk.events):
        if shock[i]:
            t = when()
            evs.append({"ts": t, "type": "high_bill", "detail": {"change_pct": int(rng.integers(35, 140))}})
            evs.append({"ts": t + 3600, "type": "call", "detail": {"reason": "high bill",
                                                                  "minutes": int(rng.integers(4, 30))}})
        for _ in range(int(complaints[i])):
            evs.append({"ts": when(), "type": "complaint", "detail": {"about": str(rng.choice(
                ["billing", "outage", "service", "estimated read"]))}})
        if misfit[i]:
            for _ in range(int(rng.integers(2, 5))):
                evs.append({"ts": when(), "type": "web_visit", "detail": {"page": "rate-comparison"}})
        if competitor[i]:
            evs.append({"ts": when(), "type": "competitor_offer", "detail": {"source": "door-to-door"}})
    accounts = chunk.accounts
    leaving = {cids[i] for i in np.flatnonzero(churned).tolist()}
    for j, cid in enumerate(accounts["customer_id"]):
        if cid in leaving:
            accounts["status"][j] = "closed"
    return pa.Table.from_arrays([
        pa.array(cids, pa.string()), pa.array(churned), pa.array(p), pa.array(shock),
        pa.array(complaints.astype(np.int64)), pa.array(missed), pa.array(misfit), pa.array(competitor),
        pa.array(tenure.astype(np.float64))], schema=SCHEMA)
