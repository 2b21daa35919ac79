"""An account's interval load over any period, read from its shard's usage store.

A what-if bills *accounts* (DOMAIN.md section 1: a bill belongs to an account), so the load of an account is
the sum of its service points' import and export, interval by interval (integer Wh, exact). Service points of
different interval lengths are summed at the coarsest length: calendars start at local midnight and step in
UTC, so ``60 / k`` consecutive ``k``-minute intervals make exactly one hour, DST days included.

A period ``[start, end)`` may cross month boundaries (a bill cycle day other than 1); the usage store holds one
matrix per calendar month, so the period is read as the matching slices of each month's row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from grid.errors import InvalidInput, NotFound
from grid.timegrid import IntervalCalendar, calendar, local_midnight_utc, month_of, next_month

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Load:
    """Import and export of one account over ``calendar`` (int64 Wh, one value per interval)."""

    calendar: IntervalCalendar
    import_wh: np.ndarray
    export_wh: np.ndarray
    data_through: int  # epoch seconds up to which the account's meters have reported (0: never)

    @property
    def interval_minutes(self) -> int:
        return self.calendar.interval_minutes

    @property
    def start(self) -> dt.date:
        return self.calendar.start

    @property
    def end(self) -> dt.date:
        return self.calendar.end


def active_accounts(rec: dict) -> list[dict]:
    """The accounts a customer is billed on (closed accounts get no new bills)."""
    return [a for a in rec["accounts"] if a.get("status", "active") == "active"]


def pick_account(rec: dict, account_id: str | None) -> dict:
    """``account_id``'s account, or the customer's first active account."""
    if account_id is not None:
        for a in rec["accounts"]:
            if a["account_id"] == account_id:
                return a
        raise NotFound(f"no account {account_id!r} on customer {rec['customer_id']}", field="account_id")
    accounts = active_accounts(rec) or rec["accounts"]
    if not accounts:
        raise NotFound(f"customer {rec['customer_id']} has no account", field="id")
    return accounts[0]


def account_interval(account: dict) -> int:
    """The interval length an account is billed at: the coarsest of its meters (60 without meters)."""
    return max((int(sp["interval_minutes"]) for sp in account["service_points"]), default=60)


def _slice_months(store, row: int | None, start: dt.date, end: dt.date, tz: str) -> tuple[np.ndarray, np.ndarray]:
    iv = store.interval_minutes
    imps, exps = [], []
    d = start
    while d < end:
        m0 = d.replace(day=1)
        seg_end = min(next_month(d), end)
        a = calendar(m0, d, iv, tz).n if d > m0 else 0
        b = a + calendar(d, seg_end, iv, tz).n
        if row is None:
            imps.append(np.zeros(b - a, np.int64))
            exps.append(np.zeros(b - a, np.int64))
        else:
            imp, exp = store.series(row, month_of(d))
            imps.append(imp[a:b])
            exps.append(exp[a:b])
        d = seg_end
    return (np.concatenate(imps).astype(np.int64, copy=False) if len(imps) > 1 else imps[0].astype(np.int64),
            np.concatenate(exps).astype(np.int64, copy=False) if len(exps) > 1 else exps[0].astype(np.int64))


def _coarsen(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else a.reshape(-1, k).sum(axis=1)


def account_load(shard, account: dict, start: dt.date, end: dt.date) -> Load:
    """The load of ``account`` over ``[start, end)`` (local dates in the shard's time zone).

    Intervals with no reading are zero; ``data_through`` says how far the meters have reported.
    """
    if end <= start:
        raise InvalidInput(f"end {end} must be after start {start}", field="end")
    iv = account_interval(account)
    cal = calendar(start, end, iv, shard.timezone)
    imp = np.zeros(cal.n, np.int64)
    exp = np.zeros(cal.n, np.int64)
    through = 0
    for sp in account["service_points"]:
        sp_iv = int(sp["interval_minutes"])
        store = shard.usage.get(sp_iv)
        row = store.row_of.get(sp["service_point_id"]) if store is not None else None
        if row is None:
            continue
        i, e = _slice_months(store, row, start, end, shard.timezone)
        imp += _coarsen(i, iv // sp_iv)
        exp += _coarsen(e, iv // sp_iv)
        through = max(through, int(store.filled_through[row]))
    return Load(cal, imp, exp, through)


def local_date(ts: int, tz: str) -> dt.date:
    """The local date of epoch second ``ts``."""
    from grid.timegrid import zone

    return dt.datetime.fromtimestamp(ts, zone(tz)).date()


def intervals_before(cal: IntervalCalendar, ts: int) -> int:
    """How many intervals of ``cal`` start before epoch second ``ts``."""
    return int(np.searchsorted(cal.utc_start, ts, side="left"))


def day_slots(cal: IntervalCalendar) -> tuple[np.ndarray, np.ndarray]:
    """(day type, slot of the day) of each interval: day type 0 weekday, 1 weekend; slot = hour x per-hour + k.

    A repeated hour (the day daylight time ends) maps onto the same slots as the first one, so profiles by
    slot stay 24 hours long.
    """
    per_hour = 60 // cal.interval_minutes
    n = cal.n
    key = cal.day.astype(np.int64) * 24 + cal.hour
    first = np.ones(n, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    pos = (np.arange(n) - run_start) % per_hour
    slot = cal.hour.astype(np.int64) * per_hour + pos
    weekend = (cal.weekday >= 5).astype(np.int64)
    return weekend, slot


def midnight(day: dt.date, tz: str) -> int:
    return local_midnight_utc(day, tz)
