"""Tariffs: URDB-shaped JSON compiled to the exact integer form the bill kernel reads (stored by grid.tariffs).

A tariff is OpenEI Utility Rate Database JSON (DOMAIN.md section 2) with contextgrid's extensions under one
key, ``contextgrid``. :func:`compile_tariff` checks every value it uses and turns it into integers:

========================  =====================================================================
URDB value                compiled as
========================  =====================================================================
$/kWh rate + adj, sell    micro-dollars per kWh (int64), exact: ``"0.40206"`` -> 402060
tier ``max`` (kWh)        Wh (int64), exact; ``kWh daily`` tiers keep a flag and are scaled by days
$/kW demand rate          micro-dollars per kW; demand tier ``max`` (kW) -> W
fixed / minimum charge    micro-dollars with their unit (``$/month``, ``$/day``, ``$/year``)
tax ``percent``           micro-percent (percent x 1e6)
schedules                 int8 (12, 24) arrays of 0-based period indices
holidays                  proleptic Gregorian ordinals (billed on the weekend schedule)
========================  =====================================================================

Exactness: decimal text (a string, or a JSON number read with ``json.loads(..., parse_float=Decimal)``)
converts exactly or is rejected; a Python ``float`` is accepted only when its ``repr`` is the decimal it
stands for and that decimal converts exactly. Nothing is ever rounded here, so a rate the tariff book prints
with seven decimals is refused, not silently changed.

Rules this module fixes where URDB and DOMAIN.md are silent (the reference biller follows the same text):

* The last tier of every period is open: energy beyond it is billed at the last tier's price, whatever
  ``max`` it carries (SAM does the same).
* Tiers of one period share one unit (``kWh`` or ``kWh daily``); bounds never decrease.
* ``tier_scope: pooled`` (the default) requires that every energy period a month's schedules can select has
  the same tier bounds and units; a tariff that breaks this is rejected (DOMAIN.md section 2).
* Demand units must be kW (``demandunits``, ``flatdemandunit``, ``demandrateunit`` and tier ``unit``):
  billing kVA or hp as kW would be wrong, so those tariffs are rejected.
* ``contextgrid.net_metering`` is ``"none"`` (default), ``"net"``, ``"sell_rate"`` or
  ``{"mode": ..., "sell_rate": <$/kWh>}``; with ``sell_rate`` and no rate, export is credited at the
  ``sell`` price of the first tier of the period it was exported in. URDB's ``dgrules`` is kept but ignored.
* Rider and tax codes are upper-case ``[A-Z0-9_]``, unique within their list; they name the bill lines
  ``RIDER_<code>`` and ``TAX_<code>``.

Sizes are bounded so the kernel's int64/int128 arithmetic cannot overflow: rates below $1000 per kWh or kW,
tier bounds below 2**40 Wh, at most 24 periods of 16 tiers and 256 bill lines.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

from kernels import timegrid
from kernels import errors

OPEN = np.iinfo(np.int64).max  # bound of an open (last) tier
MAX_PERIODS = 24
MAX_TIERS = 16
MAX_LINES = 256  # the kernel keeps one 128-bit accumulator per line on its stack
MAX_RATE_MICRO = 10**9  # $1000 per kWh or kW
MAX_CHARGE_MICRO = 10**15  # $1e9 fixed or minimum charge
MAX_BOUND = 2**40  # Wh or W
MAX_PERCENT_MICRO = 100 * 10**6
FIXED_UNITS = ("$/month", "$/day", "$/year")
ENERGY_UNITS = {"kwh": False, "kwh daily": True}
NEM_MODES = ("none", "net", "sell_rate")
_CODE = re.compile(r"^[A-Z0-9_]{1,32}$")
TARIFF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, eq=False)
class CompiledTariff:
    """A tariff in exact integer form; picklable (Ray ships it) and immutable (arrays are read-only).

    Money is micro-dollars, energy Wh, demand W. ``P`` energy periods with up to ``T`` tiers, ``Q`` TOU demand
    periods, ``F`` flat demand periods; padded tier slots hold bound ``OPEN`` and price 0.
    """

    id: str
    label: str
    name: str
    timezone: str  # IANA name; schedules are in this local time
    tier_scope: str  # "pooled" or "period"
    # energy
    energy_ntiers: np.ndarray  # int32 (P,)
    energy_max_wh: np.ndarray  # int64 (P, T) cumulative upper bound (per day when daily), OPEN for the last tier
    energy_daily: np.ndarray  # bool (P,) tiers in "kWh daily"
    energy_price: np.ndarray  # int64 (P, T) micro-$/kWh, rate + adj
    energy_sell: np.ndarray  # int64 (P, T) micro-$/kWh
    energy_weekday: np.ndarray  # int8 (12, 24)
    energy_weekend: np.ndarray  # int8 (12, 24)
    # TOU demand
    demand_ntiers: np.ndarray  # int32 (Q,)
    demand_max_w: np.ndarray  # int64 (Q, Td)
    demand_price: np.ndarray  # int64 (Q, Td) micro-$/kW
    demand_weekday: np.ndarray  # int8 (12, 24)
    demand_weekend: np.ndarray  # int8 (12, 24)
    # flat demand
    flat_ntiers: np.ndarray  # int32 (F,)
    flat_max_w: np.ndarray  # int64 (F, Tf)
    flat_price: np.ndarray  # int64 (F, Tf) micro-$/kW
    flat_months: np.ndarray  # int8 (12,) flat demand period of each month
    # charges
    fixed_unit: str | None  # "$/month" | "$/day" | "$/year" | None
    fixed_micro: int
    min_unit: str | None
    min_micro: int
    riders: tuple[tuple[str, int], ...]  # (code, micro-$/kWh on all import energy)
    taxes: tuple[tuple[str, int], ...]  # (code, micro-percent of the subtotal)
    net_metering: str  # "none" | "net" | "sell_rate"
    sell_rate_micro: int | None  # flat export credit for "sell_rate"; None = the period's first-tier sell
    holidays: frozenset[int]  # date ordinals billed on the weekend schedule
    # bill layout: one line per possible charge, in this stable order
    codes: tuple[str, ...]
    units: tuple[str, ...]

    @property
    def n_periods(self) -> int:
        return int(self.energy_ntiers.shape[0])

    @property
    def n_demand_periods(self) -> int:
        return int(self.demand_ntiers.shape[0])

    @property
    def n_flat_periods(self) -> int:
        return int(self.flat_ntiers.shape[0])

    def line(self, code: str) -> int:
        """Index of line ``code`` in :attr:`codes` (ValueError if the tariff has no such line)."""
        return self.codes.index(code)


# ---------------------------------------------------------------------------------------------------------------
# exact decimal conversion


def to_decimal(value: Any, field: str) -> Decimal:
    """The exact decimal a JSON value stands for; floats only when their ``repr`` is that decimal."""
    if isinstance(value, bool) or value is None:
        raise errors.TariffError(f"{field} must be a number, got {value!r}", field=field)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
        if float(d) != value:  # repr always round-trips; this guards against exotic subclasses
            raise errors.TariffError(f"{field}: {value!r} has no exact decimal form", field=field)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation as exc:
            raise errors.TariffError(f"{field} must be decimal text, got {value!r}", field=field) from exc
    else:
        raise errors.TariffError(f"{field} must be a number, got {type(value).__name__}", field=field)
    if not d.is_finite():
        raise errors.TariffError(f"{field} must be finite, got {value!r}", field=field)
    return d


def scaled_int(value: Any, scale: int, field: str, what: str) -> int:
    """``value * scale`` as an exact integer, or TariffError naming ``field``."""
    d = to_decimal(value, field) * scale
    if d != d.to_integral_value():
        raise errors.TariffError(f"{field} = {value} is not a whole number of {what}: it cannot be billed exactly",
                          field=field)
    return int(d)


def _micro(value: Any, field: str, limit: int = MAX_RATE_MICRO, signed: bool = True) -> int:
    m = scaled_int(value, 10**6, field, "micro-dollars")
    if abs(m) > limit or (not signed and m < 0):
        lo = f"-{limit / 1e6:g}" if signed else "0"
        raise errors.TariffError(f"{field} = {value} is outside [{lo}, {limit / 1e6:g}] $", field=field)
    return m


def _bound(value: Any, field: str, what: str) -> int:
    b = scaled_int(value, 1000, field, what)
    if b < 0:
        raise errors.TariffError(f"{field} must not be negative, got {value}", field=field)
    if b > MAX_BOUND:
        raise errors.TariffError(f"{field} = {value} is too large", field=field)
    return b


# ---------------------------------------------------------------------------------------------------------------
# structures


def _list(urdb: dict, key: str, field: str | None = None) -> list:
    v = urdb[key]
    if not isinstance(v, list):
        raise errors.TariffError(f"{field or key} must be a list, got {type(v).__name__}", field=field or key)
    return v


def _schedule(urdb: dict, key: str, n_periods: int) -> np.ndarray:
    if key not in urdb:
        raise errors.TariffError(f"{key} is required with its rate structure", field=key)
    rows = _list(urdb, key)
    if len(rows) != 12:
        raise errors.TariffError(f"{key} must have 12 months of 24 hours, got {len(rows)} months", field=key)
    out = np.empty((12, 24), dtype=np.int8)
    for m, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 24:
            raise errors.TariffError(f"{key}[{m}] must have 24 hours", field=f"{key}[{m}]")
        for h, p in enumerate(row):
            if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < n_periods:
                raise errors.TariffError(f"{key}[{m}][{h}] = {p!r} is not a period index in [0, {n_periods})",
                                  field=f"{key}[{m}][{h}]")
            out[m, h] = p
    out.setflags(write=False)
    return out


def _tiers(urdb: dict, key: str, kind: str) -> list[list[tuple[int, int, int, bool]]]:
    """Parse a rate structure into per-period lists of (bound, price, sell, daily).

    ``kind`` is "energy" (bounds kWh -> Wh, prices per kWh) or "demand" (bounds kW -> W, prices per kW).
    """
    periods = _list(urdb, key)
    if not periods:
        raise errors.TariffError(f"{key} must have at least one period", field=key)
    if len(periods) > MAX_PERIODS:
        raise errors.TariffError(f"{key} has {len(periods)} periods, at most {MAX_PERIODS} are supported", field=key)
    out = []
    for p, tiers in enumerate(periods):
        pf = f"{key}[{p}]"
        if not isinstance(tiers, list) or not tiers:
            raise errors.TariffError(f"{pf} must be a non-empty list of tiers", field=pf)
        if len(tiers) > MAX_TIERS:
            raise errors.TariffError(f"{pf} has {len(tiers)} tiers, at most {MAX_TIERS} are supported", field=pf)
        parsed = []
        units = set()
        prev = 0
        for t, tier in enumerate(tiers):
            tf = f"{pf}[{t}]"
            if not isinstance(tier, dict):
                raise errors.TariffError(f"{tf} must be an object", field=tf)
            if "rate" not in tier:
                raise errors.TariffError(f"{tf}.rate is required", field=f"{tf}.rate")
            price = _micro(tier["rate"], f"{tf}.rate")
            if "adj" in tier and tier["adj"] is not None:
                price += _micro(tier["adj"], f"{tf}.adj")
            if abs(price) > MAX_RATE_MICRO:
                raise errors.TariffError(f"{tf}: rate + adj is outside [-1000, 1000] $", field=f"{tf}.rate")
            sell = _micro(tier["sell"], f"{tf}.sell") if tier.get("sell") is not None else 0
            unit = tier.get("unit")
            if kind == "energy":
                u = "kwh" if unit is None else str(unit).strip().lower()
                if u not in ENERGY_UNITS:
                    raise errors.TariffError(f"{tf}.unit = {unit!r} is not supported (kWh or kWh daily)",
                                      field=f"{tf}.unit")
                daily = ENERGY_UNITS[u]
                units.add(daily)
            else:
                if unit is not None and str(unit).strip().lower() != "kw":
                    raise errors.TariffError(f"{tf}.unit = {unit!r} is not supported (kW)", field=f"{tf}.unit")
                daily = False
            last = t == len(tiers) - 1
            if tier.get("max") is None:
                if not last:
                    raise errors.TariffError(f"{tf}.max is required: only the last tier may be open", field=f"{tf}.max")
                bound = OPEN
            else:
                bound = _bound(tier["max"], f"{tf}.max", "Wh" if kind == "energy" else "W")
                if bound < prev:
                    raise errors.TariffError(f"{tf}.max decreases (tier bounds are cumulative)", field=f"{tf}.max")
                prev = bound
                if last:
                    bound = OPEN  # the last tier is open whatever it says (as in SAM)
            parsed.append((bound, price, sell, daily))
        if len(units) > 1:
            raise errors.TariffError(f"{pf} mixes kWh and kWh daily tiers", field=f"{pf}[0].unit")
        out.append(parsed)
    return out


def _pack(periods: list[list[tuple[int, int, int, bool]]]) -> tuple[np.ndarray, ...]:
    n = len(periods)
    width = max((len(t) for t in periods), default=1)
    ntiers = np.array([len(t) for t in periods], dtype=np.int32)
    bound = np.full((n, width), OPEN, dtype=np.int64)
    price = np.zeros((n, width), dtype=np.int64)
    sell = np.zeros((n, width), dtype=np.int64)
    daily = np.zeros(n, dtype=bool)
    for p, tiers in enumerate(periods):
        for t, (b, pr, se, dly) in enumerate(tiers):
            bound[p, t], price[p, t], sell[p, t] = b, pr, se
            daily[p] = dly
    for a in (ntiers, bound, price, sell, daily):
        a.setflags(write=False)
    return ntiers, bound, price, sell, daily


def _empty_schedule() -> np.ndarray:
    a = np.zeros((12, 24), dtype=np.int8)
    a.setflags(write=False)
    return a


def _charge(urdb: dict, key: str, unit_key: str) -> tuple[str | None, int]:
    if urdb.get(key) is None:
        return None, 0
    unit = urdb.get(unit_key) or "$/month"
    if unit not in FIXED_UNITS:
        raise errors.TariffError(f"{unit_key} = {unit!r} is not one of {FIXED_UNITS}", field=unit_key)
    return unit, _micro(urdb[key], key, MAX_CHARGE_MICRO, signed=False)


def _codes(items: Any, field: str, value_key: str, convert) -> tuple[tuple[str, int], ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise errors.TariffError(f"{field} must be a list", field=field)
    out = []
    seen = set()
    for i, item in enumerate(items):
        f = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise errors.TariffError(f"{f} must be an object with code and {value_key}", field=f)
        code = item.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            raise errors.TariffError(f"{f}.code must match [A-Z0-9_]{{1,32}}, got {code!r}", field=f"{f}.code")
        if code in seen:
            raise errors.TariffError(f"{f}.code {code!r} appears twice", field=f"{f}.code")
        seen.add(code)
        if value_key not in item:
            raise errors.TariffError(f"{f}.{value_key} is required", field=f"{f}.{value_key}")
        out.append((code, convert(item[value_key], f"{f}.{value_key}")))
    return tuple(out)


def _percent(value: Any, field: str) -> int:
    m = scaled_int(value, 10**6, field, "micro-percent")
    if not 0 <= m <= MAX_PERCENT_MICRO:
        raise errors.TariffError(f"{field} = {value} must be between 0 and 100", field=field)
    return m


def _net_metering(value: Any) -> tuple[str, int | None]:
    field = "contextgrid.net_metering"
    if value is None:
        return "none", None
    rate = None
    if isinstance(value, dict):
        mode = value.get("mode", "net")
        if value.get("sell_rate") is not None:
            rate = _micro(value["sell_rate"], f"{field}.sell_rate")
    else:
        mode = value
    if mode not in NEM_MODES:
        raise errors.TariffError(f"{field} must be one of {NEM_MODES}, got {mode!r}", field=field)
    if rate is not None and mode != "sell_rate":
        raise errors.TariffError(f"{field}.sell_rate only applies to mode sell_rate", field=f"{field}.sell_rate")
    return mode, rate


def _holidays(value: Any) -> frozenset[int]:
    field = "contextgrid.holidays"
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise errors.TariffError(f"{field} must be a list of YYYY-MM-DD dates", field=field)
    out = set()
    for i, d in enumerate(value):
        try:
            out.add(dt.date.fromisoformat(d).toordinal())
        except (TypeError, ValueError) as exc:
            raise errors.TariffError(f"{field}[{i}] = {d!r} is not a YYYY-MM-DD date", field=f"{field}[{i}]") from exc
    return frozenset(out)


def _pool_key(tiers) -> list[tuple[int, bool]]:
    return [(b, d and b != OPEN) for b, _, _, d in tiers]  # the open tier's unit does not change a bound


def _check_pooled(periods, weekday: np.ndarray, weekend: np.ndarray) -> None:
    """SAM's pooled tiers need one set of bounds per month: every period a month can select must agree."""
    for m in range(12):
        used = sorted(set(weekday[m].tolist()) | set(weekend[m].tolist()))
        first = _pool_key(periods[used[0]])
        for p in used[1:]:
            if _pool_key(periods[p]) != first:
                raise errors.TariffError(
                    f"energyratestructure[{p}] has tier bounds unlike energyratestructure[{used[0]}], and both "
                    f"are used in month {m + 1}; pooled tiers need the same bounds (set contextgrid.tier_scope "
                    f"to 'period' to bill each period's own tiers)", field=f"energyratestructure[{p}]")


def _check_unit(urdb: dict, key: str) -> None:
    if urdb.get(key) is not None and str(urdb[key]).strip().lower() != "kw":
        raise errors.TariffError(f"{key} = {urdb[key]!r} is not supported: demand is billed in kW", field=key)


def compile_tariff(urdb: dict, *, tariff_id: str | None = None,
                   default_timezone: str = timegrid.DEFAULT_TIMEZONE) -> CompiledTariff:
    """Check a URDB-shaped tariff and compile it to exact integers.

    Parameters
    ----------
    urdb : dict
        URDB JSON (numbers as ``Decimal``, decimal strings, ints, or floats whose repr is exact).
        Unknown keys are kept by the caller and ignored here.
    tariff_id : str, optional
        Catalogue id; defaults to the URDB ``label`` (or ``""``).
    default_timezone : str
        IANA zone for the schedules when ``contextgrid.timezone`` is absent.

    Returns
    -------
    CompiledTariff

    Raises
    ------
    TariffError
        Any invalid value; ``field`` is the URDB key path, e.g. ``energyratestructure[1][0].max``.
    """
    if not isinstance(urdb, dict):
        raise errors.TariffError(f"a tariff must be a JSON object, got {type(urdb).__name__}", field="$")
    ext = urdb.get("contextgrid") or {}
    if not isinstance(ext, dict):
        raise errors.TariffError("contextgrid must be an object", field="contextgrid")

    tz = ext.get("timezone") or default_timezone
    try:
        timegrid.zone(tz)
    except (errors.InvalidInput, TypeError) as exc:
        raise errors.TariffError(f"contextgrid.timezone {tz!r} is not an IANA time zone", field="contextgrid.timezone") \
            from exc
    scope = ext.get("tier_scope", "pooled")
    if scope not in ("pooled", "period"):
        raise errors.TariffError(f"contextgrid.tier_scope must be 'pooled' or 'period', got {scope!r}",
                          field="contextgrid.tier_scope")

    # energy
    if urdb.get("energyratestructure") is not None:
        eperiods = _tiers(urdb, "energyratestructure", "energy")
        ewd = _schedule(urdb, "energyweekdayschedule", len(eperiods))
        ewe = _schedule(urdb, "energyweekendschedule", len(eperiods))
        if scope == "pooled":
            _check_pooled(eperiods, ewd, ewe)
    else:
        eperiods, ewd, ewe = [], _empty_schedule(), _empty_schedule()
    e_nt, e_max, e_price, e_sell, e_daily = _pack(eperiods)

    # TOU demand
    for key in ("demandunits", "flatdemandunit", "demandrateunit"):
        _check_unit(urdb, key)
    if urdb.get("demandratestructure") is not None:
        dperiods = _tiers(urdb, "demandratestructure", "demand")
        dwd = _schedule(urdb, "demandweekdayschedule", len(dperiods))
        dwe = _schedule(urdb, "demandweekendschedule", len(dperiods))
    else:
        dperiods, dwd, dwe = [], _empty_schedule(), _empty_schedule()
    d_nt, d_max, d_price, _, _ = _pack(dperiods)

    # flat demand
    has_fs = urdb.get("flatdemandstructure") is not None
    has_fm = urdb.get("flatdemandmonths") is not None
    if has_fs != has_fm:
        missing = "flatdemandmonths" if has_fs else "flatdemandstructure"
        raise errors.TariffError(f"{missing} is required with "
                          f"{'flatdemandstructure' if has_fs else 'flatdemandmonths'}", field=missing)
    if has_fs:
        fperiods = _tiers(urdb, "flatdemandstructure", "demand")
        months = _list(urdb, "flatdemandmonths")
        if len(months) != 12:
            raise errors.TariffError(f"flatdemandmonths must have 12 entries, got {len(months)}", field="flatdemandmonths")
        fm = np.empty(12, dtype=np.int8)
        for m, f in enumerate(months):
            if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < len(fperiods):
                raise errors.TariffError(f"flatdemandmonths[{m}] = {f!r} is not a period index in [0, {len(fperiods)})",
                                  field=f"flatdemandmonths[{m}]")
            fm[m] = f
    else:
        fperiods, fm = [], np.zeros(12, dtype=np.int8)
    fm.setflags(write=False)
    f_nt, f_max, f_price, _, _ = _pack(fperiods)

    fixed_unit, fixed_micro = _charge(urdb, "fixedchargefirstmeter", "fixedchargeunits")
    min_unit, min_micro = _charge(urdb, "mincharge", "minchargeunits")
    riders = _codes(ext.get("riders"), "contextgrid.riders", "rate", _micro)
    taxes = _codes(ext.get("taxes"), "contextgrid.taxes", "percent", _percent)
    nem, sell_rate = _net_metering(ext.get("net_metering"))
    holidays = _holidays(ext.get("holidays"))

    codes: list[str] = []
    units: list[str] = []
    for p, tiers in enumerate(eperiods):
        for t in range(len(tiers)):
            codes.append(f"ENERGY_P{p}_T{t}")
            units.append("Wh")
    for q in range(len(dperiods)):
        codes.append(f"DEMAND_P{q}")
        units.append("W")
    if fperiods:
        codes.append("DEMAND_FLAT")
        units.append("W")
    if fixed_unit is not None:
        codes.append("FIXED")
        units.append("day" if fixed_unit == "$/day" else "month")
    for code, _ in riders:
        codes.append(f"RIDER_{code}")
        units.append("Wh")
    if nem != "none":
        codes.append("NEM_CREDIT")
        units.append("Wh")
    if min_unit is not None:
        codes.append("MINIMUM")
        units.append("month")
    for code, _ in taxes:
        codes.append(f"TAX_{code}")
        units.append("month")
    if len(codes) > MAX_LINES:
        raise errors.TariffError(f"the tariff has {len(codes)} bill lines, at most {MAX_LINES} are supported",
                          field="energyratestructure")

    label = urdb.get("label")
    return CompiledTariff(
        id=tariff_id if tariff_id is not None else (str(label) if label is not None else ""),
        label="" if label is None else str(label),
        name=str(urdb.get("name") or ""),
        timezone=tz,
        tier_scope=scope,
        energy_ntiers=e_nt, energy_max_wh=e_max, energy_daily=e_daily, energy_price=e_price,
        energy_sell=e_sell, energy_weekday=ewd, energy_weekend=ewe,
        demand_ntiers=d_nt, demand_max_w=d_max, demand_price=d_price, demand_weekday=dwd, demand_weekend=dwe,
        flat_ntiers=f_nt, flat_max_w=f_max, flat_price=f_price, flat_months=fm,
        fixed_unit=fixed_unit, fixed_micro=fixed_micro, min_unit=min_unit, min_micro=min_micro,
        riders=riders, taxes=taxes, net_metering=nem, sell_rate_micro=sell_rate, holidays=holidays,
        codes=tuple(codes), units=tuple(units),
    )


# ---------------------------------------------------------------------------------------------------------------
# JSON in and out


def loads_exact(text: str | bytes, source: str = "tariff") -> dict:
    """Parse tariff JSON keeping every number's decimal text exact (floats become ``Decimal``)."""
    try:
        return json.loads(text, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.TariffError(f"{source} is not valid JSON: {exc}", field="$") from exc


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        f = float(o)
        # A float whose repr is the decimal survives a round trip through any JSON reader; otherwise keep text.
        return f if Decimal(repr(f)) == o else str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(urdb: dict) -> str:
    """Tariff JSON as stored in the catalogue (Decimals written as the numbers they are)."""
    return json.dumps(urdb, indent=2, default=_json_default, ensure_ascii=False) + "\n"
