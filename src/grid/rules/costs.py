"""Cost to serve as data: the hourly wholesale price curve and the per-account service cost.

Prices arrive as decimal text in $/MWh (how ISOs publish them) and are held as exact integers in micro-dollars
per kWh ($1/MWh = 1,000 micro-$/kWh), so an hour's energy cost is Wh x micro-$/kWh = nano-dollars, exactly
(DOMAIN.md section 3). Service costs are decimal dollars per account per month, held as micro-dollars.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from grid.errors import InvalidInput, RuleError
from grid.rules.columns import KINDS
from grid.timegrid import month_of, months_between, zone

MICRO_PER_DOLLAR = 1_000_000
MAX_PRICE_USD_PER_MWH = Decimal(50_000)  # above any ISO offer cap (ERCOT's is 5,000): a typo, not a price
PPM = 1_000_000


@dataclass(frozen=True)
class PriceCurve:
    """Hourly wholesale prices covering whole local months.

    ``micro_per_kwh[h]`` is the price of the hour starting at epoch second ``start + 3600 h`` (int64,
    read-only). ``months`` are the local calendar months covered (YYYY-MM), in order.
    """

    start: int
    micro_per_kwh: np.ndarray
    timezone: str
    months: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.start + 3600 * int(self.micro_per_kwh.shape[0])

    def per_interval(self, utc_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(price of each interval's hour in micro-$/kWh, int64; bool mask of intervals the curve covers)."""
        idx = (np.asarray(utc_start, dtype=np.int64) - self.start) // 3600
        inside = (idx >= 0) & (idx < self.micro_per_kwh.shape[0])
        price = np.zeros(idx.shape[0], dtype=np.int64)
        price[inside] = self.micro_per_kwh[idx[inside]]
        return price, inside


@dataclass(frozen=True)
class CostToServe:
    """Per-account service cost by customer kind (micro-dollars per account-month) and energy losses (ppm)."""

    service_micro_per_month: dict[str, int]
    losses_ppm: int
    price_curve: str  # path of the price file, relative to the rules directory
    timezone: str


def decimal_micro(text, scale: int, *, what: str, file: str, field: str, allow_negative: bool = False) -> int:
    """Exact integer ``Decimal(text) * scale``; refuses text that would need rounding."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise RuleError(f"{file}: {field}: {what} must be a decimal number, got {text!r}", field=field, file=file)
    try:
        value = Decimal(str(text).strip())  # str(float) is the shortest text that reads back: what was typed
    except InvalidOperation as exc:
        raise RuleError(f"{file}: {field}: {what} must be a decimal number, got {text!r}", field=field,
                        file=file) from exc
    if not value.is_finite() or (value < 0 and not allow_negative):
        raise RuleError(f"{file}: {field}: {what} must be a finite{'' if allow_negative else ' non-negative'} "
                        f"number, got {text!r}", field=field, file=file)
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise RuleError(f"{file}: {field}: {what} {text!r} has more decimals than an exact "
                        f"1/{scale} unit allows", field=field, file=file)
    return int(scaled)


def parse_costs(doc: dict, file: str) -> CostToServe:
    """The cost-to-serve configuration (already schema-checked) as exact integers."""
    per_kind = doc["service_cost_per_account_month"]
    service = {}
    for kind in KINDS:
        if kind not in per_kind:
            raise RuleError(f"{file}: service_cost_per_account_month.{kind} is missing", file=file,
                            field=f"service_cost_per_account_month.{kind}")
        service[kind] = decimal_micro(per_kind[kind], MICRO_PER_DOLLAR, what="a service cost", file=file,
                                      field=f"service_cost_per_account_month.{kind}")
    losses = decimal_micro(doc.get("energy_losses_percent", 0), PPM // 100, what="a loss percentage", file=file,
                           field="energy_losses_percent")
    if losses >= PPM // 2:
        raise RuleError(f"{file}: energy_losses_percent must be below 50", file=file, field="energy_losses_percent")
    tz = doc.get("timezone", "America/Los_Angeles")
    try:
        zone(tz)
    except InvalidInput as exc:  # from timegrid: re-raised naming the file
        raise RuleError(f"{file}: unknown time zone {tz!r}", file=file, field="timezone") from exc
    return CostToServe(service, losses, doc["price_curve"], tz)


def _utc(text: str, file: str, line: int) -> int:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RuleError(f"{file}: line {line}: hour_start_utc {text!r} is not an ISO 8601 time", file=file,
                        field=f"line {line}.hour_start_utc") from exc
    if t.tzinfo is None or t.utcoffset() != dt.timedelta(0):
        raise RuleError(f"{file}: line {line}: hour_start_utc must be UTC (Z), got {text!r}", file=file,
                        field=f"line {line}.hour_start_utc")
    return int(t.timestamp())


def parse_prices(data: bytes, file: str, timezone: str) -> PriceCurve:
    """Read ``hour_start_utc, ..., price_usd_per_mwh`` rows: consecutive hours covering whole local months."""
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RuleError(f"{file}: not a UTF-8 CSV file ({exc})", file=file) from exc
    for column in ("hour_start_utc", "price_usd_per_mwh"):
        if column not in (reader.fieldnames or ()):
            raise RuleError(f"{file}: missing column {column!r}", file=file, field=column)
    if not rows:
        raise RuleError(f"{file}: no prices", file=file)
    start = _utc(rows[0]["hour_start_utc"], file, 2)
    prices = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        line = i + 2
        if _utc(row["hour_start_utc"], file, line) != start + 3600 * i:
            raise RuleError(f"{file}: line {line}: hours must be consecutive; expected "
                            f"{dt.datetime.fromtimestamp(start + 3600 * i, dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}",
                            file=file, field=f"line {line}.hour_start_utc")
        price = row["price_usd_per_mwh"]
        micro = decimal_micro(price, 1000, what="a price in $/MWh", file=file,
                              field=f"line {line}.price_usd_per_mwh", allow_negative=True)
        if abs(Decimal(price)) > MAX_PRICE_USD_PER_MWH:
            raise RuleError(f"{file}: line {line}: price {price} $/MWh is beyond +-{MAX_PRICE_USD_PER_MWH}",
                            file=file, field=f"line {line}.price_usd_per_mwh")
        prices[i] = micro
    z = zone(timezone)
    first = dt.datetime.fromtimestamp(start, z)
    last = dt.datetime.fromtimestamp(start + 3600 * len(rows), z)
    for t, what in ((first, "first"), (last, "end")):
        if (t.day, t.hour, t.minute) != (1, 0, 0):
            raise RuleError(f"{file}: the {what} hour must fall on local midnight of a month's first day in "
                            f"{timezone}, got {t.isoformat()}", file=file, field="hour_start_utc")
    n_months = (last.year - first.year) * 12 + last.month - first.month
    prices.setflags(write=False)
    return PriceCurve(start, prices, timezone, tuple(months_between(month_of(first.date()), n_months)))
