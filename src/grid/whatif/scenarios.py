"""Rate-plan what-ifs: up to twelve monthly bills per candidate plan on the customer's live load, ranked.

For one account (the request's ``account_id`` or the customer's first active account) and those of the 12
complete months before today's month **with usage data** (any import or export, the forecast's rule): a month
without readings would be billed its fixed charges alone and make every plan look alike, so it is left out
and named in ``months_without_data``:

* **baseline**: the account's current plan on the load as measured: what the customer paid (or would have,
  had every bill been right);
* each **candidate** plan, and the current plan too, on the **scenario** load: the measured load after the
  requested changes (``grid.whatif.changes``: solar, shift, EV). Shifting follows each plan's own peak
  periods unless the request fixes the hours;
* per plan: 12 monthly bills with their lines (the bill kernel's, exact cents), the annual total, the
  ``difference_cents`` from the current plan on the same scenario load (what switching plans alone changes)
  and ``change_from_today_cents`` from the baseline (what switching *and* the load changes do together);
* ranked by annual total, cheapest first (ties keep request order, the current plan first).

Everything runs in the owning shard on its live data (``Grid.ascenarios``), one kernel call per plan and month; bills
of the *measured* load (the baseline, and every plan when no change is asked) are kept per context version, so
a repeated comparison costs no kernel call until the customer's usage changes.
"""
from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import OrderedDict

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
MEASURED_CACHE = 20_000  # bills of measured (unchanged) loads kept per process

# Bills of *measured* loads, by (customer, account, context version, month, tariff). A usage write bumps the
# context's version, so a cached bill is never stale; the same plans on the same months are asked again and
# again (every portal visit, and the baseline of every what-if with load changes). Keyed weakly by shard, so a
# shard dropped (tests, recovery) takes its entries with it.
_measured: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()
_measured_lock = threading.Lock()


def _bill_row(batch, i: int) -> dict:
    """``batch.bill(i)`` without a Python loop over the tariff's empty lines."""
    q, a = batch.quantity[i], batch.amount_cents[i]
    nz = np.flatnonzero(q | a).tolist()
    codes, units = batch.codes, batch.units
    return {"lines": [{"code": codes[j], "quantity": x, "unit": units[j], "amount_cents": y}
                      for j, x, y in zip(nz, q[nz].tolist(), a[nz].tolist())],
            "total_cents": int(batch.total_cents[i])}


def _kernel(tariff, cal, imp, exp):
    # export is billed only under net metering; otherwise it is not even read (the store's values are valid)
    return bill_intervals(tariff, cal.start, cal.end, cal.interval_minutes, imp,
                          exp if tariff.net_metering != "none" else None)


def _measured_bill(shard, key: tuple, tariff, load) -> dict:
    full = key + (tariff,)
    with _measured_lock:  # what-ifs run in a shard's worker threads (grid.shard_actor)
        cache = _measured.get(shard)
        if cache is None:
            cache = _measured[shard] = OrderedDict()
        hit = cache.get(full)
        if hit is not None:
            cache.move_to_end(full)
            return hit
    hit = _bill_row(_kernel(tariff, load.calendar, load.import_wh, load.export_wh), 0)  # outside the lock
    with _measured_lock:
        cache[full] = hit
        while len(cache) > MEASURED_CACHE:
            cache.popitem(last=False)
    return hit


def _bills(shard, key: tuple, plan: Plan, months, loads, scenario, changes: LoadChanges,
           shifted: dict) -> list[dict]:
    """Monthly bills of ``plan`` on the scenario load (copies: the caller annotates them).

    ``shifted`` memoizes per-plan scenario loads within one request: plans whose prices give no on-peak hours
    (flat, tiered, demand-only) all see the same load, so it is built once.
    """
    bills = []
    for m, load in enumerate(loads):
        cal = load.calendar
        if changes.empty:
            b = dict(_measured_bill(shard, key + (months[m],), plan.tariff, load))
            imp_wh, exp_wh = load.import_sum, load.export_sum
        else:
            if scenario is not None:
                imp, exp, imp_wh, exp_wh = scenario[m]
            else:
                sp = peak_masks(plan.tariff, cal)
                memo = (m, id(sp) if sp.moves else None)
                hit = shifted.get(memo)
                if hit is None:
                    imp, exp = apply(load.import_wh, load.export_wh, cal, changes, sp)
                    hit = shifted[memo] = (imp, exp, int(imp.sum()), int(exp.sum()), sp)  # sp: keeps its id alive
                imp, exp, imp_wh, exp_wh, _ = hit
            b = _bill_row(_kernel(plan.tariff, cal, imp, exp), 0)
        b["period_start"], b["period_end"] = cal.start.isoformat(), cal.end.isoformat()
        b["import_wh"], b["export_wh"] = imp_wh, exp_wh
        bills.append(b)
    return bills


class _MonthLoad:
    """A month's measured load with its sums computed once."""

    __slots__ = ("calendar", "import_wh", "export_wh", "import_sum", "export_sum")

    def __init__(self, load):
        self.calendar, self.import_wh, self.export_wh = load.calendar, load.import_wh, load.export_wh
        self.import_sum, self.export_sum = int(load.import_wh.sum()), int(load.export_wh.sum())


def scenarios(shard, cid: str, request: dict, catalogue: PlanCatalogue | None = None,
              today: dt.date | str | None = None) -> dict:
    """Price candidate rate plans, with optional load changes, on the months with data of the last 12.

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
        The 12 months looked at are the complete months before today's month.

    Returns
    -------
    dict
        ``{"customer_id", "account_id", "current_plan_id", "as_of", "months" (with data, oldest first),
        "months_without_data", "changes", "baseline", "load", "items": [ranked plans]}``; see the module
        docstring. No month with data: every plan totals 0 over no months.

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
    looked_at = history_months(today, MONTHS)
    measured = [_MonthLoad(account_load(shard, account, *month_bounds(m))) for m in looked_at]
    with_data = [i for i, ld in enumerate(measured) if ld.import_sum or ld.export_sum]
    months = [looked_at[i] for i in with_data]
    loads = [measured[i] for i in with_data]
    key = (cid, account["account_id"], rec["version"])

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
    if not changes.empty and not changes.shift_per_plan:
        scenario = []
        for ld in loads:
            imp, exp = apply(ld.import_wh, ld.export_wh, ld.calendar, changes)
            scenario.append((imp, exp, int(imp.sum()), int(exp.sum())))

    results = []
    baseline = None
    shifted: dict = {}
    for order, plan in enumerate(plans):
        is_current = current is not None and plan is current
        bills = _bills(shard, key, plan, months, loads, scenario, changes, shifted)
        if is_current:
            base = [_measured_bill(shard, key + (months[m],), plan.tariff, ld)["total_cents"]
                    for m, ld in enumerate(loads)]
            baseline = {"plan_id": plan.plan_id, "total_cents": sum(base), "monthly_cents": base}
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
        "as_of": today.isoformat(), "months": months,
        "months_without_data": [m for m in looked_at if m not in months], "changes": changes.describe(),
        "baseline": baseline,
        "load": {"import_wh": sum(ld.import_sum for ld in loads), "export_wh": sum(ld.export_sum for ld in loads),
                 "scenario_import_wh": sum(b["import_wh"] for b in first),
                 "scenario_export_wh": sum(b["export_wh"] for b in first)},
        "items": items,
    }
