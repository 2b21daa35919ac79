"""Rate-plan what-ifs: twelve monthly bills per candidate plan on the customer's live load, ranked.

For one account (the request's ``account_id`` or the customer's first active account) and the 12 complete
months before today's month:

* **baseline**: the account's current plan on the load as measured: what the customer paid (or would have,
  had every bill been right);
* each **candidate** plan, and the current plan too, on the **scenario** load: the measured load after the
  requested changes (``grid.whatif.changes``: solar, shift, EV). Shifting follows each plan's own peak
  periods unless the request fixes the hours;
* per plan: 12 monthly bills with their lines (the bill kernel's, exact cents), the annual total, the
  ``difference_cents`` from the current plan on the same scenario load (what switching plans alone changes)
  and ``change_from_today_cents`` from the baseline (what switching *and* the load changes do together);
* ranked by annual total, cheapest first (ties keep request order, the current plan first).

Everything runs in the owning shard on its live data (``grid.arun``), one kernel call per plan and month.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.errors import InvalidInput
from grid.timegrid import month_bounds
from grid.whatif.changes import LoadChanges, apply, peak_masks
from grid.whatif.loads import account_load, pick_account
from grid.whatif.periods import as_date, history_months, today_in
from grid.whatif.plans import Plan, PlanCatalogue, current_plan, resolve_plans
from kernels.billing import bill_intervals

MONTHS = 12
REQUEST_FIELDS = {"plans", "changes", "account_id"}


def _bills(plan: Plan, loads, scenario, changes: LoadChanges, baseline: bool) -> tuple[list[dict], list[int] | None]:
    """Monthly bills of ``plan`` on the scenario load (and the baseline totals when ``baseline``)."""
    bills, base_totals = [], [] if baseline else None
    for m, load in enumerate(loads):
        cal = load.calendar
        if scenario is not None:
            imp, exp = scenario[m]
        else:
            masks = peak_masks(plan.tariff, cal) if changes.shift_per_plan else None
            imp, exp = apply(load.import_wh, load.export_wh, cal, changes, masks)
        if baseline and not changes.empty:
            batch = bill_intervals(plan.tariff, cal.start, cal.end, cal.interval_minutes,
                                   np.stack([load.import_wh, imp]), np.stack([load.export_wh, exp]))
            base_totals.append(int(batch.total_cents[0]))
            row = 1
        else:
            batch = bill_intervals(plan.tariff, cal.start, cal.end, cal.interval_minutes, imp, exp)
            row = 0
            if baseline:
                base_totals.append(int(batch.total_cents[0]))
        b = batch.bill(row)
        b["period_start"], b["period_end"] = cal.start.isoformat(), cal.end.isoformat()
        b["import_wh"], b["export_wh"] = int(imp.sum()), int(exp.sum())
        bills.append(b)
    return bills, base_totals


def scenarios(shard, cid: str, request: dict, catalogue: PlanCatalogue | None = None,
              today: dt.date | str | None = None) -> dict:
    """Price candidate rate plans, with optional load changes, on the last 12 months of an account's load.

    Parameters
    ----------
    shard : grid.shard.Shard
    cid : str
    request : dict
        ``{"plans": [catalogue id | URDB object, ...], "changes": {"solar": {"kw", "profile"?},
        "shift": {"percent", "from_hours"?, "to_hours"?}, "ev": {"kwh_per_day", "charger_kw"?, "start_hour"?,
        "days"?}}?, "account_id"?}``.
    catalogue : PlanCatalogue, optional
    today : date or YYYY-MM-DD, optional
        The 12 months are the complete months before today's month.

    Returns
    -------
    dict
        ``{"customer_id", "account_id", "current_plan_id", "as_of", "months", "changes", "baseline", "load",
        "items": [ranked plans]}``; see the module docstring.

    Raises
    ------
    NotFound
        Unknown catalogue plan (``field="plans[i]"``) or account.
    InvalidInput
        Bad changes (the field is named, e.g. ``changes.solar.kw``), an invalid inline tariff
        (``plans[i].<urdb key>``).
    """
    if not isinstance(request, dict):
        raise InvalidInput("a scenario request must be an object", field="body")
    extra = sorted(set(request) - REQUEST_FIELDS)
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}", field=extra[0])
    catalogue = catalogue or PlanCatalogue()
    rec = shard.record(cid)
    candidates = resolve_plans(request.get("plans"), catalogue, shard.timezone)
    changes = LoadChanges.parse(request.get("changes"))
    account = pick_account(rec, request.get("account_id"))
    today = as_date(today) if today is not None else today_in(shard.timezone)
    months = history_months(today, MONTHS)
    loads = [account_load(shard, account, *month_bounds(m)) for m in months]

    current = current_plan(catalogue, account)
    plans: list[Plan] = [current] if current is not None else []
    seen = {(current.source, current.plan_id)} if current is not None else set()
    for p in candidates:
        if p.source == "catalogue" and (p.source, p.plan_id) in seen:
            continue
        seen.add((p.source, p.plan_id))
        plans.append(p)

    # one scenario load for every plan, unless the shift follows each plan's own peak hours
    scenario = None
    if not changes.shift_per_plan:
        scenario = [apply(ld.import_wh, ld.export_wh, ld.calendar, changes) for ld in loads]

    results = []
    baseline = None
    for order, plan in enumerate(plans):
        is_current = current is not None and plan is current
        bills, base_totals = _bills(plan, loads, scenario, changes, baseline=is_current)
        if is_current:
            baseline = {"plan_id": plan.plan_id, "total_cents": sum(base_totals), "monthly_cents": base_totals}
        results.append((sum(b["total_cents"] for b in bills), order, plan, bills, is_current))

    cur = next((r for r in results if r[4]), None)
    items = []
    for rank, (total, _, plan, bills, is_current) in enumerate(sorted(results, key=lambda r: (r[0], r[1])), 1):
        for m, b in enumerate(bills):
            b["month"] = months[m]
            b["difference_cents"] = b["total_cents"] - cur[3][m]["total_cents"] if cur is not None else None
        items.append({
            "rank": rank, "plan_id": plan.plan_id, "name": plan.name, "source": plan.source, "is_current": is_current,
            "total_cents": total,
            "difference_cents": total - cur[0] if cur is not None else None,
            "change_from_today_cents": total - baseline["total_cents"] if baseline is not None else None,
            "bills": [{k: b[k] for k in ("month", "period_start", "period_end", "total_cents", "difference_cents",
                                         "import_wh", "export_wh", "lines")} for b in bills],
        })
    first = results[0][3] if results else []
    return {
        "customer_id": cid, "account_id": account["account_id"],
        "current_plan_id": current.plan_id if current is not None else None,
        "as_of": today.isoformat(), "months": months, "changes": changes.describe(),
        "baseline": baseline,
        "load": {"import_wh": int(sum(int(ld.import_wh.sum()) for ld in loads)),
                 "export_wh": int(sum(int(ld.export_wh.sum()) for ld in loads)),
                 "scenario_import_wh": sum(b["import_wh"] for b in first),
                 "scenario_export_wh": sum(b["export_wh"] for b in first)},
        "items": items,
    }
