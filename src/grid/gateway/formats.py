"""Response encoders keyed by media type, and content negotiation.

A new format is one ``register(Format(...))`` call: handlers return plain data and never know the format.
XML keeps types (``type`` attributes) so it decodes back to the same data; CSV flattens nested data into dotted
columns (``accounts.0.rate_plan_id``), one row per item of a list response, and is untyped like every CSV.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Callable
from xml.etree import ElementTree as ET

from grid.errors import InvalidInput, UnsupportedFormat


@dataclass(frozen=True)
class Format:
    name: str  # the ?format= value
    media_type: str
    encode: Callable[[Any, str], bytes]  # (data, root element / resource name) -> body
    decode: Callable[[bytes], Any] | None = None


_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> None:
    """Add or replace a format; handlers pick it up through negotiation."""
    _REGISTRY[fmt.name] = fmt


def formats() -> dict[str, Format]:
    return dict(_REGISTRY)


def served_media_types() -> tuple[str, ...]:
    """Every registered media type, JSON first (the default)."""
    return tuple(f.media_type for f in _REGISTRY.values())


def by_name(name: str) -> Format:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedFormat(f"unknown format {name!r}; one of {sorted(_REGISTRY)}", field="format") from None


def _accepted(accept: str) -> list[tuple[str, float]]:
    """``Accept`` entries as (media range, q), best first; q=0 means "not this" (RFC 9110 section 12.5.1)."""
    choices = []
    for i, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media, q = pieces[0].lower(), 1.0
        for p in pieces[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if media and q > 0:
            choices.append((-q, i, media))
    return [(media, -q) for q, _, media in sorted(choices)]


def _matches(media_range: str, media_type: str) -> bool:
    if media_range in ("*/*", "*"):
        return True
    if media_range.endswith("/*"):
        return media_type.startswith(media_range[:-1])
    return media_range == media_type


def choose(query_format: str | None, accept: str | None, offered: tuple[str, ...]) -> str:
    """The media type to answer with, among ``offered`` (the operation's, first = default).

    ``?format=`` wins; else the best ``Accept`` entry offered; else the first offered. 406 when the caller
    accepts none of them: decided before the handler runs, so a refused answer never follows a committed write.
    """
    if query_format:
        media = by_name(query_format).media_type
        if media not in offered:
            raise UnsupportedFormat(f"format {query_format!r} is not served here; one of {list(offered)}",
                                    field="format")
        return media
    if not accept or not accept.strip():
        return offered[0]
    for media_range, _ in _accepted(accept):
        for media in offered:
            if _matches(media_range, media):
                return media
    raise UnsupportedFormat(f"none of the accepted types ({accept[:200]}) is served here; try "
                            f"{', '.join(offered)}", field="Accept")


def by_media_type(media_type: str) -> Format:
    for fmt in _REGISTRY.values():
        if fmt.media_type == media_type:
            return fmt
    raise UnsupportedFormat(f"no encoder for {media_type}", field="Accept")


def negotiate(query_format: str | None, accept: str | None, offered: tuple[str, ...] | None = None) -> Format:
    """The encoder for ``choose(...)`` among ``offered`` (default: every registered format, JSON first)."""
    if offered is None:
        offered = served_media_types()
    return by_media_type(choose(query_format, accept, offered))


# -- JSON ---------------------------------------------------------------------------------------------------
def encode_json(data: Any, root: str = "") -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def decode_json(body: bytes) -> Any:
    return json.loads(body)


# -- XML ----------------------------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _to_xml(parent: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        parent.set("type", "object")
        for k, v in value.items():
            k = str(k)
            if _NAME.match(k) and not k.lower().startswith("xml"):
                child = ET.SubElement(parent, k)
            else:
                child = ET.SubElement(parent, "entry", {"key": k})
            _to_xml(child, v)
    elif isinstance(value, (list, tuple)):
        parent.set("type", "array")
        for v in value:
            _to_xml(ET.SubElement(parent, "item"), v)
    elif value is None:
        parent.set("type", "null")
    elif isinstance(value, bool):
        parent.set("type", "boolean")
        parent.text = "true" if value else "false"
    elif isinstance(value, int):
        parent.set("type", "integer")
        parent.text = str(value)
    elif isinstance(value, float):
        parent.set("type", "number")
        parent.text = repr(value)
    else:
        parent.text = str(value)


def encode_xml(data: Any, root: str = "response") -> bytes:
    el = ET.Element(root or "response")
    _to_xml(el, data)
    return ET.tostring(el, encoding="utf-8", xml_declaration=True)


def _from_xml(el: ET.Element) -> Any:
    kind = el.get("type", "string")
    if kind == "object":
        return {c.get("key", c.tag) if c.tag == "entry" and c.get("key") is not None else c.tag: _from_xml(c)
                for c in el}
    if kind == "array":
        return [_from_xml(c) for c in el]
    if kind == "null":
        return None
    text = el.text or ""
    if kind == "boolean":
        return text == "true"
    if kind == "integer":
        return int(text)
    if kind == "number":
        return float(text)
    return text


def decode_xml(body: bytes) -> Any:
    try:
        return _from_xml(ET.fromstring(body))
    except ET.ParseError as exc:
        raise InvalidInput(f"malformed XML: {exc}", field="body") from exc


# -- CSV ----------------------------------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "", out: dict | None = None) -> dict:
    """Nested data -> {dotted.path: scalar}; empty containers keep a column holding ``[]`` / ``{}``."""
    out = {} if out is None else out
    if isinstance(value, dict):
        if not value and prefix:
            out[prefix] = "{}"
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)):
        if not value and prefix:
            out[prefix] = "[]"
        for i, v in enumerate(value):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix or "value"] = value
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def rows_of(data: Any) -> list[dict]:
    """The table a response becomes: list items, or ``items`` of a page, or the object as one row."""
    if isinstance(data, list):
        return [flatten(x) for x in data]
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return [flatten(x) for x in data["items"]]
    return [flatten(data)]


def encode_csv(data: Any, root: str = "") -> bytes:
    rows = rows_of(data)
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(list(columns))
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue().encode()


def decode_csv(body: bytes) -> list[dict]:
    """Rows as {column: text}; the caller knows which columns are numbers."""
    return list(csv.DictReader(io.StringIO(body.decode())))


register(Format("json", "application/json", encode_json, decode_json))
register(Format("xml", "application/xml", encode_xml, decode_xml))
register(Format("csv", "text/csv", encode_csv, decode_csv))
