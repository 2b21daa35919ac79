"""The real-time bill: bill-to-date of the open period from live usage, and the projected period bill.

Both are computed by the bill kernel under the account's own rate plan, so the projected bill is a real bill
(tiers, demand, fixed and minimum charges, taxes) of a projected load, not an extrapolated amount:

* **To date** bills ``[period start, last day with data]``, capped at today, with the usage that has arrived.
  The kernel prorates monthly charges and tier bounds by the days billed (DOMAIN.md section 3), which is what
  a final bill for those days would say.
* **Projected** bills the whole period: intervals that have reported keep their readings; every later interval
  gets the account's *recent typical* value for its day type (weekday or weekend) and time of day: the mean of
  that slot over the 28 days before the data ends (rounded half-up to whole Wh), import and export alike. A
  customer whose meters never reported projects to zero usage (fixed charges only).

"Today" is the caller's (``as_of``) or the local date in the shard's time zone; readings after the end of today
are ignored, so a past ``as_of`` shows what the customer would have seen that day.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from grid.errors import NotFound
from grid.whatif.loads import DAY, Load, account_load, active_accounts, day_slots, intervals_before, local_date, midnight
from grid.whatif.periods import as_date, open_period, today_in
from grid.whatif.plans import PlanCatalogue, current_plan
from kernels.billing import bill_intervals

PROFILE_DAYS = 28


def _iso(ts: int) -> str | None:
    if ts <= 0:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def recent_profile(shard, account: dict, through: int) -> tuple[np.ndarray, np.ndarray]:
    """Typical Wh per (day type, slot) over the ``PROFILE_DAYS`` days of data before epoch second ``through``.

    Returns (import, export), each int64 of shape (2, slots per day); zeros without data. A slot never seen on
    one day type borrows the other day type's value.
    """
    tz = shard.timezone
    last = local_date(through - 1, tz) if through > 0 else None
    if last is None:
        from grid.whatif.loads import account_interval

        slots = 24 * 60 // account_interval(account)
        z = np.zeros((2, slots), np.int64)
        return z, z
    end = last + DAY
    load = account_load(shard, account, end - dt.timedelta(days=PROFILE_DAYS), end)
    cal = load.calendar
    keep = cal.utc_start < through
    weekend, slot = day_slots(cal)
    slots = 24 * 60 // cal.interval_minutes
    key = (weekend * slots + slot)[keep]
    count = np.bincount(key, minlength=2 * slots).reshape(2, slots)
    out = []
    for series in (load.import_wh, load.export_wh):
        total = np.zeros(2 * slots, np.int64)
        np.add.at(total, key, series[keep])
        total = total.reshape(2, slots)
        mean = np.where(count > 0, (2 * total + count) // np.maximum(2 * count, 1), 0)
        for t in (0, 1):  # a day type never seen borrows the other's slot values
            missing = count[t] == 0
            mean[t, missing] = mean[1 - t, missing]
        out.append(mean)
    return out[0], out[1]


def projected_load(shard, account: dict, load: Load, through: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(import, export, Wh estimated) over ``load``'s period: readings before ``through``, typical values after."""
    cal = load.calendar
    k = intervals_before(cal, through)
    imp, exp = load.import_wh.copy(), load.export_wh.copy()
    if k >= cal.n:
        return imp, exp, 0
    prof_imp, prof_exp = recent_profile(shard, account, through)
    weekend, slot = day_slots(cal)
    imp[k:] = prof_imp[weekend[k:], slot[k:]]
    exp[k:] = prof_exp[weekend[k:], slot[k:]]
    return imp, exp, int(imp[k:].sum())


def open_period_bill(shard, account: dict, plan, today: dt.date) -> dict:
    """The open period of one account as of ``today``: its bill to date and its projected bill.

    The one projection of the open month: the bill card (:func:`current_bill`) shows it and the forecast
    (``grid.whatif.forecast``) takes it as its first month, so the two never disagree.
    """
    tz = shard.timezone
    cutoff = midnight(today + DAY, tz)  # readings after today do not exist yet, as far as this bill knows
    start, end = open_period(today, account.get("bill_cycle_day", 1))
    load = account_load(shard, account, start, end)
    through = min(load.data_through, cutoff)
    iv = load.interval_minutes
    item = {"account_id": account["account_id"], "rate_plan_id": plan.plan_id, "plan_name": plan.name,
            "period_start": start.isoformat(), "period_end": end.isoformat(), "days": (end - start).days,
            "interval_minutes": iv, "data_through": _iso(through)}
    if through > midnight(start, tz):
        td_end = min(local_date(through - 1, tz) + DAY, end)
        k = load.calendar.n if td_end == end else intervals_before(load.calendar, midnight(td_end, tz))
        bill = bill_intervals(plan.tariff, start, td_end, iv, load.import_wh[:k], load.export_wh[:k]).bill(0)
        item["to_date"] = {"start": start.isoformat(), "end": td_end.isoformat(), "days": (td_end - start).days,
                           "import_wh": int(load.import_wh[:k].sum()), "export_wh": int(load.export_wh[:k].sum()),
                           **bill}
    else:
        item["to_date"] = {"start": start.isoformat(), "end": start.isoformat(), "days": 0, "import_wh": 0,
                           "export_wh": 0, "lines": [], "total_cents": 0}
    imp, exp, estimated = projected_load(shard, account, load, through)
    bill = bill_intervals(plan.tariff, start, end, iv, imp, exp).bill(0)
    item["projected"] = {"import_wh": int(imp.sum()), "export_wh": int(exp.sum()), "estimated_import_wh": estimated,
                         **bill}
    return item


def current_bill(shard, cid: str, today: dt.date | str | None = None,
                 catalogue: PlanCatalogue | None = None) -> dict:
    """Bill-to-date and projected bill of each active account of customer ``cid`` for its open period.

    Parameters
    ----------
    shard : grid.shard.Shard
        The owning shard (this runs inside it: ``Grid.acurrent_bill``).
    cid : str
    today : date or YYYY-MM-DD, optional
        The day to look from; default the local date in the shard's time zone.
    catalogue : PlanCatalogue, optional
        Where the accounts' rate plans come from (default ``rules/tariffs``).

    Returns
    -------
    dict
        ``{"customer_id", "as_of", "to_date_cents", "projected_cents", "items": [per account ...]}``, each
        account with its period, ``data_through`` and the two bills (lines in cents, quantities in Wh/W).
    """
    catalogue = catalogue or PlanCatalogue()
    rec = shard.record(cid)
    today = as_date(today) if today is not None else today_in(shard.timezone)
    items = []
    for i, account in enumerate(active_accounts(rec)):
        plan = current_plan(catalogue, account)
        if plan is None:
            raise NotFound(f"rate plan {account['rate_plan_id']!r} of account {account['account_id']} is not in "
                           f"the catalogue", field=f"accounts[{i}].rate_plan_id")
        item = open_period_bill(shard, account, plan, today)
        items.append(item)
    return {"customer_id": cid, "as_of": today.isoformat(),
            "to_date_cents": sum(x["to_date"]["total_cents"] for x in items),
            "projected_cents": sum(x["projected"]["total_cents"] for x in items), "items": items}
