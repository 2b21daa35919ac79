"""Interval calendars in a utility's local time.

Usage for a period ``[start, end)`` (local dates) is held interval by interval in UTC order, starting at local
midnight of ``start``. A day that changes to daylight time has 23 hourly intervals, one that changes back has 25;
so the number of intervals in a period depends on the time zone. Schedules (TOU periods, weekday/weekend) are
looked up by each interval's *local* month, day type and hour, which this module computes once per period and
caches: every service point billed for the same period shares one calendar.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from kernels import errors

DEFAULT_TIMEZONE = "America/Los_Angeles"
VALID_INTERVALS = (15, 30, 60)
__all__ = ["DEFAULT_TIMEZONE", "VALID_INTERVALS", "IntervalCalendar", "zone", "local_midnight_utc", "calendar",
           "next_month", "month_bounds", "month_of", "months_between", "intervals_in_month"]


@dataclass(frozen=True)
class IntervalCalendar:
    """Local-time facts for each interval of ``[start, end)``; arrays are read-only, length ``n``."""

    start: dt.date
    end: dt.date
    interval_minutes: int
    timezone: str
    utc_start: np.ndarray  # int64 epoch seconds of each interval's start
    month: np.ndarray  # int8, local month 1..12
    hour: np.ndarray  # int8, local hour 0..23
    weekday: np.ndarray  # int8, local weekday, Monday = 0
    day: np.ndarray  # int32, local day index from ``start`` (0-based)
    date_ordinal: np.ndarray  # int32, local date as proleptic Gregorian ordinal

    @property
    def n(self) -> int:
        return int(self.utc_start.shape[0])

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.InvalidInput(f"unknown time zone {name!r}", field="timezone") from exc


def local_midnight_utc(day: dt.date, tz: str) -> int:
    """Epoch seconds of local midnight starting ``day``."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=zone(tz)).timestamp())


@lru_cache(maxsize=512)
def calendar(start: dt.date, end: dt.date, interval_minutes: int, tz: str = DEFAULT_TIMEZONE) -> IntervalCalendar:
    """The interval calendar of ``[start, end)`` in time zone ``tz``."""
    if interval_minutes not in VALID_INTERVALS:
        raise errors.InvalidInput(f"interval_minutes must be one of {VALID_INTERVALS}, got {interval_minutes}",
                           field="interval_minutes")
    if end <= start:
        raise errors.InvalidInput(f"end {end} must be after start {start}", field="end")
    t0 = local_midnight_utc(start, tz)
    t1 = local_midnight_utc(end, tz)
    step = interval_minutes * 60
    utc = np.arange(t0, t1, step, dtype=np.int64)
    z = zone(tz)
    # One zoneinfo lookup per distinct UTC offset run: offsets change at most twice a year, so convert the
    # first instant of each hour-aligned block and reuse the offset (exact for whole-hour and half-hour zones).
    offsets = np.empty(utc.shape[0], dtype=np.int64)
    i = 0
    n = utc.shape[0]
    while i < n:
        t = int(utc[i])
        off = int(dt.datetime.fromtimestamp(t, z).utcoffset().total_seconds())
        # find the next transition by scanning a day at a time (cheap: ~365 lookups a year)
        j = i + 1
        block = max(1, 86400 // step)
        while j < n:
            k = min(n - 1, j + block - 1)
            if int(dt.datetime.fromtimestamp(int(utc[k]), z).utcoffset().total_seconds()) == off:
                j = k + 1
                continue
            # transition inside [j, k]: walk it
            while j <= k and int(dt.datetime.fromtimestamp(int(utc[j]), z).utcoffset().total_seconds()) == off:
                j += 1
            break
        offsets[i:j] = off
        i = j
    local = utc + offsets
    days_since_epoch = local // 86400
    seconds_of_day = local - days_since_epoch * 86400
    hour = (seconds_of_day // 3600).astype(np.int8)
    weekday = ((days_since_epoch + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday (3)
    ordinal = (days_since_epoch + dt.date(1970, 1, 1).toordinal()).astype(np.int32)
    month = _months_of(ordinal)
    day = (ordinal - start.toordinal()).astype(np.int32)
    arrays = [utc, month, hour, weekday, day, ordinal]
    for a in arrays:
        a.setflags(write=False)
    return IntervalCalendar(start, end, interval_minutes, tz, *arrays)


def _months_of(ordinals: np.ndarray) -> np.ndarray:
    out = np.empty(ordinals.shape[0], dtype=np.int8)
    if ordinals.shape[0] == 0:
        return out
    # ordinals are non-decreasing: fill month by month
    lo = int(ordinals[0])
    hi = int(ordinals[-1])
    d = dt.date.fromordinal(lo).replace(day=1)
    while d.toordinal() <= hi:
        nxt = next_month(d)
        a = np.searchsorted(ordinals, d.toordinal(), side="left")
        b = np.searchsorted(ordinals, nxt.toordinal(), side="left")
        out[a:b] = d.month
        d = nxt
    return out


def next_month(d: dt.date) -> dt.date:
    """First day of the month after ``d``'s month."""
    return dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """``"2026-10"`` -> (2026-10-01, 2026-11-01)."""
    try:
        y, m = month.split("-")
        start = dt.date(int(y), int(m), 1)
    except (ValueError, AttributeError) as exc:
        raise errors.InvalidInput(f"month must look like YYYY-MM, got {month!r}", field="period") from exc
    return start, next_month(start)


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def months_between(first: str, count: int) -> list[str]:
    """``count`` consecutive months starting at ``first`` (YYYY-MM)."""
    d, _ = month_bounds(first)
    out = []
    for _ in range(count):
        out.append(month_of(d))
        d = next_month(d)
    return out


def intervals_in_month(month: str, interval_minutes: int, tz: str = DEFAULT_TIMEZONE) -> int:
    start, end = month_bounds(month)
    return calendar(start, end, interval_minutes, tz).n
