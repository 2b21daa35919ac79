"""Customer events: validation, retention and the incremental features decisions read.

An event is ``(customer, type, time, payload)`` (DOMAIN.md section 10). Per customer the shard keeps one plain,
msgpack-able dict (it travels through snapshots and partition moves unchanged)::

    {"raw":    [[ts, type, payload, event_id], ...]   # sorted by ts; the last RETENTION_DAYS, at most MAX_RAW
     "days":   {type: {day: count}}                   # daily buckets inside the retention window
     "rollup": {type: {"YYYY-MM": count}}             # counts of events older than the window, by month
     "total":  {type: count}, "last": {type: ts}}

Counters are updated on write (one bucket increment), so a feature read costs a sum over at most
``RETENTION_DAYS`` buckets per type, not a scan of events. Expiry is driven by the write's own timestamp
(``op["at"]``, fixed when the write was accepted), never the wall clock, so a WAL replay rebuilds the same
state. Times are epoch seconds (UTC); a day is ``ts // 86400``.
"""
from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json

from grid.errors import InvalidInput

EVENT_TYPES = ("call", "web_visit", "payment_missed", "payment_made", "complaint", "outage_experienced",
               "high_bill", "offer_response", "meter_alarm", "plan_change", "competitor_offer")
RETENTION_DAYS = 90  # raw events kept this long; older ones live on as monthly counts
MAX_RAW = 500  # raw events per customer (a chatty meter cannot grow a context without bound)
WINDOWS = (1, 7, 30, 90)  # feature windows, days (the last one equals the retention window)
MAX_PAYLOAD_BYTES = 4096  # JSON-encoded payload
MAX_PAYLOAD_DEPTH = 5
MAX_FUTURE_S = 86_400  # an event stamped more than a day after the write is a clock error, not an event
DAY = 86_400


def parse_time(value, field: str) -> int:
    """RFC 3339 text with an offset -> epoch seconds."""
    if not isinstance(value, str):
        raise InvalidInput("time must be an RFC 3339 date-time", field=field)
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput("time must be an RFC 3339 date-time", field=field) from exc
    if ts.tzinfo is None:
        raise InvalidInput("time needs a UTC offset", field=field)
    return int(ts.timestamp())


def iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _depth(value, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level] + [_depth(v, level + 1) for v in value.values()])
    if isinstance(value, list):
        return max([level] + [_depth(v, level + 1) for v in value])
    return level - 1


def check_event(body, at_ts: int, field: str = "body") -> dict:
    """A validated event ``{type, ts, payload}`` from a client's ``{type, time, payload?}``.

    Raises
    ------
    InvalidInput
        Unknown type, a time without offset or far in the future, a payload that is not an object, larger
        than ``MAX_PAYLOAD_BYTES`` encoded or nested deeper than ``MAX_PAYLOAD_DEPTH``; ``field`` names it.
    """
    if not isinstance(body, dict):
        raise InvalidInput("an event must be an object", field=field)
    extra = sorted(set(body) - {"customer_id", "type", "time", "payload"})
    if extra:
        raise InvalidInput(f"unknown field {extra[0]!r}", field=f"{field}.{extra[0]}")
    kind = body.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(EVENT_TYPES)}, got {kind!r}", field=f"{field}.type")
    ts = parse_time(body.get("time"), f"{field}.time")
    if ts > at_ts + MAX_FUTURE_S:
        raise InvalidInput("time is more than a day in the future", field=f"{field}.time")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidInput("payload must be an object", field=f"{field}.payload")
    if _depth(payload) > MAX_PAYLOAD_DEPTH:
        raise InvalidInput(f"payload nests deeper than {MAX_PAYLOAD_DEPTH} levels", field=f"{field}.payload")
    try:
        size = len(json.dumps(payload, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput("payload must be JSON", field=f"{field}.payload") from exc
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"payload is {size} bytes encoded, at most {MAX_PAYLOAD_BYTES}",
                           field=f"{field}.payload")
    return {"type": kind, "ts": ts, "payload": payload}


def event_id(write_id: str, i: int = 0) -> str:
    return "E" + hashlib.sha1(f"{write_id}:{i}".encode()).hexdigest()[:14]


def empty() -> dict:
    return {"raw": [], "days": {}, "rollup": {}, "total": {}, "last": {}}


def _month(day: int) -> str:
    return dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + day).strftime("%Y-%m")


def add(state: dict, event: dict, eid: str, now_ts: int, retention_days: int = RETENTION_DAYS) -> None:
    """Count ``event`` and keep it raw if it is inside the retention window; then expire what fell out."""
    kind, ts = event["type"], event["ts"]
    now_ts = max(now_ts, ts)
    first_day = now_ts // DAY - retention_days + 1
    day = ts // DAY
    state["total"][kind] = state["total"].get(kind, 0) + 1
    if ts > state["last"].get(kind, -1):
        state["last"][kind] = ts
    if day >= first_day:
        buckets = state["days"].setdefault(kind, {})
        buckets[day] = buckets.get(day, 0) + 1
        raw = state["raw"]
        row = [ts, kind, event["payload"], eid]
        bisect.insort(raw, row, key=lambda r: r[0])  # late events land in time order; ties keep arrival order
    else:
        months = state["rollup"].setdefault(kind, {})
        months[_month(day)] = months.get(_month(day), 0) + 1
    expire(state, now_ts, retention_days)


def expire(state: dict, now_ts: int, retention_days: int = RETENTION_DAYS) -> None:
    """Move day buckets older than the window into monthly roll-ups; drop raw events past the window."""
    first_day = now_ts // DAY - retention_days + 1
    for kind, buckets in state["days"].items():
        old = [d for d in buckets if d < first_day]
        if old:
            months = state["rollup"].setdefault(kind, {})
            for d in old:
                months[_month(d)] = months.get(_month(d), 0) + buckets.pop(d)
    raw = state["raw"]
    cut = bisect.bisect_left(raw, first_day * DAY, key=lambda r: r[0])
    cut = max(cut, len(raw) - MAX_RAW)
    if cut > 0:
        del raw[:cut]


def features(state: dict | None, now_ts: int) -> dict:
    """Counts per type and window and days since the last event of each type, as of ``now_ts``.

    Returns
    -------
    dict
        ``events.<type>.<w>d`` (int, events in the last ``w`` days counting today) for every type and window,
        ``events.<type>.days_since`` (int days, absent when the type never happened) and
        ``events.<type>.total`` (every event of the type ever counted).
    """
    out = {}
    today = now_ts // DAY
    for kind in EVENT_TYPES:
        buckets = state["days"].get(kind, {}) if state else {}
        for w in WINDOWS:
            lo = today - w + 1
            out[f"events.{kind}.{w}d"] = sum(c for d, c in buckets.items() if lo <= d <= today)
        total = state["total"].get(kind, 0) if state else 0
        out[f"events.{kind}.total"] = total
        if state and kind in state["last"]:
            out[f"events.{kind}.days_since"] = max(0, (now_ts - state["last"][kind]) // DAY)
    return out


def view(state: dict | None, now_ts: int, limit: int = 100) -> dict:
    """The HTTP view: newest raw events first, the features, and the roll-ups."""
    state = state or empty()
    items = [{"event_id": eid, "type": kind, "time": iso(ts), "payload": payload}
             for ts, kind, payload, eid in reversed(state["raw"][-limit:])]
    return {"items": items, "features": features(state, now_ts),
            "rollup": {k: dict(sorted(v.items())) for k, v in state["rollup"].items()},
            "retention_days": RETENTION_DAYS}
