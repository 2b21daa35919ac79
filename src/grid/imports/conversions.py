"""Converting a mapped column to its target type, vectorized over a batch (polars); see the type conventions in
:mod:`grid.imports.mapping`. :func:`convert` gives the converted column and the reason a row whose value did not
convert is bad (its value then null).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from grid.errors import InvalidInput

if TYPE_CHECKING:
    from grid.imports.mapping import FieldRule

TRUE = ("true", "t", "yes", "y", "1", "x", "on")
FALSE = ("false", "f", "no", "n", "0", "off")
FRAC_DIGITS = 12


def _exact_units(s: pl.Series, scale: int, decimal: str) -> pl.Series:
    """Decimal text -> integer units (x ``scale``), exact and half-up; null where the text is not a number."""
    whole = s.cast(pl.String).cast(pl.Int64, strict=False)  # most meter exports write whole Wh: one cast
    rest = whole.is_null() & s.is_not_null()
    if not rest.any():
        return whole * scale
    out = _decimal_units(s.filter(rest), scale, decimal)
    return (whole * scale).scatter(rest.arg_true(), out)


def _decimal_units(s: pl.Series, scale: int, decimal: str) -> pl.Series:
    txt = s.cast(pl.String).str.strip_chars().str.replace_all(r"[\$\s]", "")
    # a thousands separator only counts in groups of three ("1,234.5"): "1,5" kWh from a decimal-comma export
    # read with decimal "." is not a number (quarantined, naming the field), never 15 kWh
    sep = "." if decimal == "," else ","
    has_sep = txt.str.contains(sep, literal=True)
    if has_sep.any():
        grouped = txt.str.contains(rf"^[+-]?\d{{1,3}}(?:\{sep}\d{{3}})+(?:\{decimal}\d*)?$")
        txt = txt.set(has_sep & ~grouped, None)
    if decimal == ",":
        txt = txt.str.replace_all(r"\.", "").str.replace(",", ".", literal=True)
    else:
        txt = txt.str.replace_all(",", "", literal=True)
    parts = txt.str.extract_groups(r"^([+-]?)(\d*)(?:\.(\d*))?$")
    sign, whole, frac = parts.struct.field("1"), parts.struct.field("2"), parts.struct.field("3")
    ok = whole.is_not_null() & ((whole.str.len_chars() > 0) | (frac.fill_null("").str.len_chars() > 0))
    ok = ok & (whole.fill_null("").str.len_chars() <= 15)
    w = whole.fill_null("").str.replace(r"^$", "0").cast(pl.Int64, strict=False).fill_null(0)
    f = frac.fill_null("").str.slice(0, FRAC_DIGITS).str.pad_end(FRAC_DIGITS, "0").cast(pl.Int64, strict=False)
    f = f.fill_null(0)
    prod = f * scale
    units = w * scale + prod // 10 ** FRAC_DIGITS + ((prod % 10 ** FRAC_DIGITS) * 2 >= 10 ** FRAC_DIGITS).cast(pl.Int64)
    units = pl.select(pl.when(sign == "-").then(-units).otherwise(units)).to_series().alias(s.name)
    return units.set(~ok.fill_null(False), None)


def convert(s: pl.Series, rule: FieldRule) -> tuple[pl.Series, str]:
    """(converted column, reason given to rows that did not convert)."""
    t = rule.type
    if s.dtype == pl.Null:
        s = s.cast(pl.String)
    if t == "string":
        if s.dtype != pl.String:
            s = s.cast(pl.String)
        return s, "not text"
    if t in ("energy", "money", "decimal"):
        scale = rule.scale if t != "decimal" else 1
        if s.dtype.is_integer():
            return s.cast(pl.Int64) * scale, "not a number"
        if s.dtype.is_float():  # typed cells: their shortest text is the number the user typed
            s = s.cast(pl.String)
        return _exact_units(s, scale, rule.decimal), "not a number"
    if t == "integer":
        if s.dtype.is_integer():
            return s.cast(pl.Int64), "not an integer"
        if s.dtype.is_float():
            return s.cast(pl.Int64, strict=False).set(s != s.round(0), None), "not an integer"
        txt = s.cast(pl.String)
        # thousands separators only in groups of three, as for amounts: "1,0" (a decimal comma) is not 10
        txt = txt.set(txt.str.contains(",", literal=True) & ~txt.str.contains(r"^[+-]?\d{1,3}(?:,\d{3})+$"), None)
        return txt.str.replace_all(",", "", literal=True).cast(pl.Int64, strict=False), "not an integer"
    if t == "boolean":
        if s.dtype == pl.Boolean:
            return s, "not true or false"
        low = s.cast(pl.String).str.to_lowercase()
        out = pl.Series(s.name, [None] * len(s), dtype=pl.Boolean)
        return out.set(low.is_in(TRUE), True).set(low.is_in(FALSE), False), "not true or false"
    if t == "date":
        if s.dtype == pl.Datetime or s.dtype == pl.Date:
            d = s.cast(pl.Date)
        else:
            d = s.cast(pl.String).str.to_date(format=rule.format, strict=False)
            if rule.format:  # a spreadsheet's date cell among typed text arrives as ISO text (mapping._pick)
                iso = s.cast(pl.String).str.extract(r"^(\d{4}-\d{2}-\d{2})(?:[T ][\d:.]+)?$")
                d = d.fill_null(iso.str.to_date(format="%Y-%m-%d", strict=False))
        return _in_years(d).dt.strftime("%Y-%m-%d"), f"not a date{' like ' + rule.format if rule.format else ''}"
    if t == "datetime":
        reason = f"not a date-time{' like ' + rule.format if rule.format else ''}"
        if isinstance(s.dtype, pl.Datetime):
            d = s
        elif s.dtype == pl.Date:
            d = s.cast(pl.Datetime("us"))
        else:
            d = _fast_datetime(s.cast(pl.String)) if rule.format is None else None
        if d is None:
            txt = s.cast(pl.String).str.replace(r"Z$", "+00:00")
            try:
                d = txt.str.to_datetime(format=rule.format, strict=False, time_unit="us")
            except pl.exceptions.PolarsError:  # mixed offsets / naive: one by one through Python
                import datetime as dt
                vals = []
                for v in txt.to_list():
                    try:
                        x = dt.datetime.strptime(v, rule.format) if rule.format else dt.datetime.fromisoformat(v)
                        vals.append(x.astimezone(dt.timezone.utc).replace(tzinfo=None) if x.tzinfo else x)
                    except (TypeError, ValueError):
                        vals.append(None)
                d = pl.Series(s.name, vals, dtype=pl.Datetime("us"))
        if d.dtype.time_zone is None:
            d = d.dt.replace_time_zone(rule.timezone, ambiguous="earliest", non_existent="null")
        return _in_years(d).dt.epoch("s"), reason
    raise InvalidInput(f"unknown field type {t!r}", field=rule.target)


def _in_years(d: pl.Series) -> pl.Series:
    """``d`` with dates outside the years the API takes (1900-2200, api/openapi.yaml) made null (bad rows): a
    two-digit year read by ``%Y`` ("1/5/26") is the year 26, never a payment of 2026 dated 0026."""
    year = d.dt.year()
    return d.set(((year < 1900) | (year > 2200)).fill_null(False), None)


# ISO 8601 shapes parsed with an explicit pattern (10x faster than inferring one per batch): (regex, pattern, utc)
_ISO = ((r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", "%Y-%m-%dT%H:%M:%SZ", True),
        (r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$", "%Y-%m-%dT%H:%M:%S", False),
        (r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$", "%Y-%m-%d %H:%M:%S", False),
        (r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}$", None, False))


def _fast_datetime(txt: pl.Series) -> pl.Series | None:
    """Parse when every value has one common ISO shape; None to take the general path."""
    import re

    first = txt.drop_nulls().head(1).to_list()
    if not first:
        return None
    for rx, pattern, utc in _ISO:
        if pattern and re.match(rx, first[0]):
            d = txt.str.to_datetime(format=pattern, strict=False, time_unit="us")
            if d.null_count() != txt.null_count():
                return None  # mixed shapes: the general path decides row by row
            return d.dt.replace_time_zone("UTC") if utc else d
    return None


def repeated_hour(frame: pl.DataFrame, col: str, keys: list[str], tz: str) -> pl.Series:
    """``frame[col]`` (UTC epoch seconds of local times read as their first occurrence) with the hour repeated
    when daylight time ends read twice: the second row of one key (meter, service point) with the same
    repeated local time is that time's second occurrence. A meter export in local time without offsets writes
    01:00 twice on the night clocks fall back; read both as the first, the second would replace the first (one
    hour lost, the real second hour left stale). Counted within one batch."""
    epoch = frame.get_column(col)
    wall = (epoch * 1_000_000).cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(tz).dt.replace_time_zone(None)
    late = wall.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null").dt.epoch("s")
    repeated = late.is_not_null() & (late != epoch)
    if not repeated.any():
        return epoch
    nth = frame.select(pl.int_range(pl.len()).over([*keys, col]).alias("n")).get_column("n")
    return pl.select(pl.when(repeated & (nth % 2 == 1)).then(late).otherwise(epoch)).to_series().alias(col)
