"""A source's mapping, compiled once: raw columns -> context fields, vectorized over a batch (polars).

Every field runs the same steps over the whole batch column: pick (column, JSON path or constant), trim, case,
code lookup, convert to the target type, default, required. A value that does not convert marks its row bad
with the field and the reason instead of failing the batch, so bad rows go to quarantine and the rest go on.

Target types and the conventions they follow (DOMAIN.md sections 1, 3 and 7; the conversions are
:mod:`grid.imports.conversions`):

* ``energy``: integer Wh. Text is converted exactly from its decimal digits (``"1.2345" kWh`` -> 1235 Wh,
  half-up), never through a float; ``unit`` is ``Wh`` (default), ``kWh`` or ``MWh``.
* ``money``: integer cents, exactly from the digits; ``unit`` is ``cents`` (default) or ``dollars``; ``$`` and
  thousands separators (only in groups of three: ``"1,5"`` is not a number) are dropped. ``decimal: ","``
  reads ``1.234,56`` (European exports).
* ``datetime``: epoch seconds (UTC). A value without an offset is local time in ``timezone`` (the field's, else
  the source's, else UTC); the repeated hour at the end of daylight time is read as its first occurrence, except
  that a meter's second usage row of it in a batch is its second occurrence; a time that does not exist
  (spring forward) is bad.
* ``date``: ISO ``YYYY-MM-DD`` text. ``format`` is a strptime pattern for both; without it ISO 8601 is read.
* ``boolean``: true/false, yes/no, y/n, 1/0, x (a ticked cell) and empty.

A field is picked from one ``column``, a JSON ``path``, a constant ``value``, or built from several columns by a
``template`` such as ``"{first_name} {last_name}"`` (a web form's two name boxes -> ``contact.name``): each
``{column}`` is the column's trimmed text; a row where every named column is empty gets no value, otherwise the
empty ones count as empty text, runs of spaces fold into one and the ends are trimmed (``"{first} {last}"``
with no first name gives ``"Smith"``). The joined text then goes through the same steps as a column's.
"""
from __future__ import annotations

import datetime as dt
import string
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from grid.errors import InvalidInput
from grid.imports.conversions import convert, repeated_hour

# target field -> type; "attributes.*" and "payload.*" take any key
FIELDS: dict[str, str] = {
    "customer.customer_id": "string", "customer.name": "string", "customer.kind": "string",
    "customer.segment": "string",
    "account.account_id": "string", "account.status": "string", "account.rate_plan_id": "string",
    "account.bill_cycle_day": "integer", "account.billing_address": "string",
    "service_point.service_point_id": "string", "service_point.premise_address": "string",
    "service_point.meter_id": "string", "service_point.interval_minutes": "integer",
    "service_point.has_solar": "boolean", "service_point.load_priority": "string",
    "contact.contact_id": "string", "contact.name": "string", "contact.roles": "string",
    "contact.email": "string", "contact.phone": "string",
    "ownership.entity_id": "string", "ownership.legal_name": "string", "ownership.tax_id": "string",
    "ownership.mailing_address": "string", "ownership.parent_entity_id": "string",
    "usage.service_point_id": "string", "usage.start": "datetime", "usage.import_wh": "energy",
    "usage.export_wh": "energy",
    "usage.duration": "integer",  # seconds a reading covers (ESPI duration); absent: one interval of its point
    "bill.bill_id": "string", "bill.account_id": "string", "bill.period_start": "date",
    "bill.period_end": "date", "bill.total_cents": "money",
    "bill.lines": "string",  # JSON: [{code, quantity, unit, amount_cents}], what reconciliation compares
    "payment.payment_id": "string", "payment.account_id": "string", "payment.date": "date",
    "payment.amount_cents": "money", "payment.method": "string",
    "event.event_id": "string", "event.type": "string", "event.at": "datetime",
    "project.name": "string", "project.start_date": "date", "project.expected_kwh_per_month": "integer",
    "project.note": "string",
}
OPEN_PREFIXES = {"customer.attributes.": "string", "event.payload.": "string"}
# parts each action may write, and the fields it cannot do without
ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "upsert": (("customer", "account", "service_point", "contact", "ownership"), ()),
    "usage": (("usage",), ("usage.start", "usage.import_wh")),
    "bill": (("bill",), ("bill.bill_id", "bill.account_id", "bill.period_start", "bill.period_end",
                         "bill.total_cents")),
    "payment": (("payment",), ("payment.date", "payment.amount_cents")),
    "event": (("event",), ("event.type", "event.at")),
    "project": (("project",), ("project.name", "project.start_date", "project.expected_kwh_per_month")),
}
EVIDENCE = ("customer_id", "account_id", "service_point_id", "meter_id", "entity_id", "tax_id", "email", "phone",
            "name", "address", "record_id")
# the row's own id in its source (a web form's submission id): names the record to the resolver, so a reviewer's
# decision about it holds when it is replayed; it says nothing about whose the row is
RECORD_ID = "record_id"
ENUMS = {"customer.kind": ("residential", "commercial", "industrial", "public"),
         "account.status": ("active", "closed"), "service_point.load_priority": ("normal", "priority", "critical"),
         "service_point.interval_minutes": (15, 30, 60)}
SCALE = {"Wh": 1, "kWh": 1000, "MWh": 1_000_000, "cents": 1, "dollars": 100}


@dataclass
class FieldRule:
    """One compiled field: where its value comes from and how it is converted."""

    target: str
    type: str
    column: str | int | None = None
    path: list[str] | None = None
    value: Any = None
    has_value: bool = False
    template: list[tuple[str, str | None]] | None = None  # (literal text, column or None), in order
    template_text: str | None = None
    format: str | None = None
    timezone: str = "UTC"
    scale: int = 1
    decimal: str = "."
    trim: bool = True
    case: str | None = None
    lookup: dict | None = None
    default: Any = None
    required: bool = False

    @property
    def source_name(self) -> str:
        if self.has_value:
            return "<constant>"
        if self.template_text is not None:
            return self.template_text
        return ".".join(self.path) if self.path else str(self.column)


def _type_of(target: str) -> str:
    if target in FIELDS:
        return FIELDS[target]
    for prefix, t in OPEN_PREFIXES.items():
        if target.startswith(prefix) and len(target) > len(prefix):
            return t
    raise KeyError(target)


def compile_field(target: str, spec: Any, where: str, default_tz: str, required: bool = False) -> FieldRule:
    """Check one field's spec (``where`` names the file and key for errors) and compile it."""
    if isinstance(spec, str):
        spec = {"column": spec}
    try:
        typ = spec.get("type") or _type_of(target)
    except KeyError:
        raise InvalidInput(f"{where}: unknown context field {target!r}", field=where) from None
    rule = FieldRule(target, typ, trim=spec.get("trim", True), case=spec.get("case"),
                     default=spec.get("default"), required=spec.get("required", required),
                     format=spec.get("format"), decimal=spec.get("decimal", "."))
    if "value" in spec:
        rule.value, rule.has_value = spec["value"], True
    elif "template" in spec:
        rule.template, rule.template_text = parse_template(spec["template"], f"{where}.template"), spec["template"]
    elif "path" in spec:
        rule.path = str(spec["path"]).split(".")
    else:
        rule.column = spec["column"]
    tz = spec.get("timezone", default_tz)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{where}.timezone: unknown time zone {tz!r}", field=f"{where}.timezone") from None
    rule.timezone = tz
    unit = spec.get("unit")
    if unit is not None:
        if typ == "energy" and unit not in ("Wh", "kWh", "MWh") or typ == "money" and unit not in ("cents", "dollars"):
            raise InvalidInput(f"{where}.unit: {unit!r} does not fit a {typ} field", field=f"{where}.unit")
        if typ not in ("energy", "money"):
            raise InvalidInput(f"{where}.unit: only energy and money fields take a unit", field=f"{where}.unit")
        rule.scale = SCALE[unit]
    if rule.format is not None and "%" not in rule.format:
        raise InvalidInput(f"{where}.format: {rule.format!r} is not a strptime pattern", field=f"{where}.format")
    if "lookup" in spec:
        rule.lookup = {str(k): v for k, v in spec["lookup"].items()}
        allowed = ENUMS.get(target)
        bad = [v for v in rule.lookup.values() if allowed is not None and v not in allowed]
        if bad:
            raise InvalidInput(f"{where}.lookup: {bad[0]!r} is not one of {allowed}", field=f"{where}.lookup")
    return rule


def parse_template(text: Any, where: str) -> list[tuple[str, str | None]]:
    """``"{first_name} {last_name}"`` -> ``[("", "first_name"), (" ", "last_name")]``; a bad one is a 422.

    Only plain ``{column}`` references: a format spec or conversion (``{x:>5}``, ``{x!r}``) would be Python
    formatting the mapping does not do, and a template naming no column is a constant (use ``value``).
    """
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: a template is text like '{{first_name}} {{last_name}}'", field=where)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:  # an unmatched brace
        raise InvalidInput(f"{where}: {exc} in {text!r}", field=where) from None
    out = []
    for literal, name, spec, conversion in parts:
        if name is not None and (not name.strip() or spec or conversion):
            raise InvalidInput(f"{where}: {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
                               f" is not a column reference (write {{column}})", field=where)
        out.append((literal, name))
    if not any(name for _, name in out):
        raise InvalidInput(f"{where}: the template names no column", field=where)
    return out


@dataclass
class Mapped:
    """A mapped batch: good rows as columns (target field names, ``_i`` = row index in the batch) and bad ones."""

    frame: pl.DataFrame
    bad: list[dict] = field(default_factory=list)  # {"i", "field", "reason", "detail"}


def _pick(rows, rule: FieldRule, n: int) -> pl.Series:
    if rule.template is not None:
        return _template(rows, rule, n)
    if rule.has_value:
        return pl.Series(rule.target, [rule.value] * n, strict=False)
    if isinstance(rows, pl.DataFrame):
        name = str(rule.column) if rule.path is None else ".".join(rule.path)
        if name not in rows.columns:
            return pl.Series(rule.target, [None] * n, dtype=pl.String)
        return rows.get_column(name).alias(rule.target)
    if rule.path is not None:
        key = ".".join(rule.path)

        def get(r):
            if key in r:
                return r[key]
            v = r
            for p in rule.path:
                if not isinstance(v, dict):
                    return None
                v = v.get(p)
            return v

        values = [get(r) for r in rows]
    else:
        values = [r.get(rule.column) for r in rows]
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and kinds & {dt.date, dt.datetime}:
        # a hand-kept sheet mixes date cells with typed text or numbers: polars would make the dates day counts
        # beside the numbers; as ISO text they convert (conversions' fallback) and the rest by the format
        return pl.Series(rule.target, [v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else
                                       None if v is None else str(v) for v in values], dtype=pl.String)
    try:
        return pl.Series(rule.target, values, strict=False)
    except (TypeError, ValueError, pl.exceptions.PolarsError):  # mixed cell types: read them as text
        return pl.Series(rule.target, [None if v is None else str(v) for v in values], dtype=pl.String)


def _missing(rows, rule: FieldRule) -> str:
    """Why a required field has no value: empty, or its column is not in the file at all (a header spelt
    ``Read_Start`` for ``read_start``: every row would say "missing" without naming what to fix)."""
    col = rule.column
    if col is None or rule.path is not None or rule.has_value:
        return "missing"
    names = rows.columns if isinstance(rows, pl.DataFrame) else (rows[0].keys() if rows else ())
    if str(col) in names or (not isinstance(rows, pl.DataFrame) and any(col in r for r in rows)):
        return "missing"
    shown = ", ".join(repr(str(c)) for c in list(names)[:12])
    return f"missing: no column {str(col)!r} in the rows (they have {shown})"


def _template(rows, rule: FieldRule, n: int) -> pl.Series:
    """The template's columns joined row by row (see the module docstring), as one polars expression."""
    names = list(dict.fromkeys(name for _, name in rule.template if name))
    cols = [_pick(rows, FieldRule(f"c{k}", "string", column=name), n).cast(pl.String).str.strip_chars()
            .alias(f"c{k}") for k, name in enumerate(names)]
    key = {name: f"c{k}" for k, name in enumerate(names)}
    parts = []
    for literal, name in rule.template:
        if literal:
            parts.append(pl.lit(literal))
        if name:
            parts.append(pl.col(key[name]).fill_null(""))
    empty = pl.all_horizontal([pl.col(c).fill_null("") == "" for c in key.values()])
    joined = pl.concat_str(parts).str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.DataFrame(cols).select(pl.when(empty).then(None).otherwise(joined).alias(rule.target)).to_series()


class Mapping:
    """All fields and identity evidence of one source, compiled; :meth:`apply` maps one batch."""

    def __init__(self, fields: list[FieldRule], evidence: list[FieldRule]):
        self.fields = fields
        self.evidence = evidence
        self._types: dict[str, pa.DataType] | None = None  # column_types(), once

    def column_types(self) -> dict[str, pa.DataType]:
        """Text columns this mapping reads the same cast (pyarrow) as from their text: whole Wh or integer fields
        as int64, ISO date-times with an offset as UTC seconds. A column two rules read differently, or with a
        lookup, case or format, stays text."""
        want: dict[str, set] = {}
        for rule in self.fields + self.evidence:
            if rule.has_value or rule.path is not None or rule.column is None:
                continue
            typed = None
            if rule.lookup is None and rule.case is None and rule.format is None:
                if rule.type in ("energy", "integer") and rule.decimal == "." and rule.target not in ENUMS:
                    typed = pa.int64()
                elif rule.type == "datetime":
                    typed = pa.timestamp("s", tz="UTC")
            want.setdefault(str(rule.column), set()).add(typed)
        return {c: next(iter(t)) for c, t in want.items() if len(t) == 1 and None not in t}

    def _typed(self, rows: pa.Table) -> pa.Table:
        """``rows`` with the :meth:`column_types` columns cast where every value converts (pyarrow's C++ casts:
        a 250k-row meter block maps in ~9 ms instead of ~30 through polars' text casts); a column with any value
        that does not convert (``1.5``, `` 12``, a time without an offset) stays text, so the text path below
        decides row by row and names the bad ones. Empty cells are nulls either way."""
        import pyarrow.compute as pc

        if self._types is None:
            self._types = self.column_types()
        for name, typ in self._types.items():
            i = rows.schema.get_field_index(name)
            if i < 0 or not pa.types.is_string(rows.schema.field(i).type):
                continue
            col = rows.column(i)
            empty = pc.equal(col, "")
            if pc.any(empty).as_py():
                col = pc.if_else(empty, pa.scalar(None, pa.string()), col)
            try:
                rows = rows.set_column(i, name, pc.cast(col, typ))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return rows

    def apply(self, rows) -> Mapped:
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        if isinstance(rows, pa.Table):
            rows = pl.from_arrow(self._typed(rows))
        n = rows.height if isinstance(rows, pl.DataFrame) else len(rows)
        cols, bad = {"_i": pl.Series("_i", range(n), dtype=pl.Int64)}, {}
        for rule in self.fields + self.evidence:
            raw = _pick(rows, rule, n)
            s = raw
            if s.dtype == pl.String:
                if rule.trim:
                    s = s.str.strip_chars()
                s = s.set(s == "", None)
                if rule.case == "upper":
                    s = s.str.to_uppercase()
                elif rule.case == "lower":
                    s = s.str.to_lowercase()
                elif rule.case == "title":
                    s = s.str.to_titlecase()
            present = s.is_not_null()
            if rule.lookup is not None:
                s = s.cast(pl.String).replace_strict(rule.lookup, default=None, return_dtype=pl.String)
                self._mark(bad, present & s.is_null(), rule, "unknown code")
                present = s.is_not_null()
            out, reason = convert(s, rule)
            self._mark(bad, present & out.is_null(), rule, reason)
            allowed = ENUMS.get(rule.target)
            if allowed is not None and rule.lookup is None:
                self._mark(bad, out.is_not_null() & ~out.is_in(list(allowed)), rule, f"not one of {list(allowed)}")
            if rule.type in ("energy", "money") and rule.target.startswith("usage."):
                self._mark(bad, out.is_not_null() & (out < 0), rule, "negative energy")
            if rule.default is not None:
                out = out.fill_null(pl.Series([rule.default]).cast(out.dtype, strict=False)[0])
            if rule.required:
                missing = out.is_null() & ~present
                if missing.any():
                    self._mark(bad, missing, rule, _missing(rows, rule))
            name = rule.target if rule in self.fields else "id." + rule.target
            cols[name] = out.alias(name)
        frame = pl.DataFrame(list(cols.values()))
        if bad:
            keep = pl.Series([i not in bad for i in range(n)])
            frame = frame.filter(keep)
        start = next((r for r in self.fields if r.target == "usage.start"), None)
        if start is not None and start.timezone != "UTC" and frame.height:  # local times: the fall-back hour
            keys = [c for c in frame.columns if c.startswith("id.") or c == "usage.service_point_id"]
            frame = frame.with_columns(repeated_hour(frame, "usage.start", keys, start.timezone))
        return Mapped(frame, [dict(i=i, **v) for i, v in sorted(bad.items())])

    @staticmethod
    def _mark(bad: dict, mask: pl.Series, rule: FieldRule, reason: str) -> None:
        if not mask.any():
            return
        for i in mask.arg_true().to_list():
            bad.setdefault(i, {"field": rule.target, "column": rule.source_name, "reason": reason})
