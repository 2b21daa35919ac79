"""Bill periods a what-if looks at: the open period, the months of history before it, today's date."""
from __future__ import annotations

import datetime as dt

from grid.errors import InvalidInput
from grid.timegrid import month_bounds, month_of, months_between, next_month, zone


def today_in(tz: str) -> dt.date:
    """Today's local date in the utility's time zone."""
    return dt.datetime.now(zone(tz)).date()


def as_date(value, field: str = "as_of") -> dt.date:
    """A date from ``None`` (caller decides), a ``date`` or ISO text."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{field} must be a YYYY-MM-DD date, got {value!r}", field=field) from None


def _add_months(d: dt.date, k: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + k, 12)
    return dt.date(y, m + 1, 1)


def open_period(today: dt.date, cycle_day: int = 1) -> tuple[dt.date, dt.date]:
    """The bill period holding ``today``: from the last bill cycle day on or before it, one month long.

    ``cycle_day`` is 1-28 (DOMAIN.md accounts), so every month has it; day 1 gives calendar months.
    """
    cycle_day = int(cycle_day or 1)
    if not 1 <= cycle_day <= 28:
        raise InvalidInput(f"bill_cycle_day must be 1-28, got {cycle_day}", field="bill_cycle_day")
    first = today.replace(day=1)
    start = today.replace(day=cycle_day) if today.day >= cycle_day else _add_months(first, -1).replace(day=cycle_day)
    end = _add_months(start.replace(day=1), 1).replace(day=cycle_day)
    return start, end


def history_months(today: dt.date, count: int = 12) -> list[str]:
    """The ``count`` complete calendar months before ``today``'s month, oldest first."""
    return months_between(month_of(_add_months(today.replace(day=1), -count)), count)


def next_months(today: dt.date, count: int) -> list[str]:
    """``count`` calendar months starting with ``today``'s month."""
    return months_between(month_of(today), count)


def shift_month(month: str, k: int) -> str:
    return month_of(_add_months(month_bounds(month)[0], k))


__all__ = ["today_in", "as_date", "open_period", "history_months", "next_months", "shift_month", "month_bounds",
           "next_month"]
