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
# Keys that are plain names become element names; any other key (spaces, a leading digit, a trailing newline,
# "xml..."): <entry key="...">. XML 1.0 cannot carry C0 controls (but tab and newline), U+FFFE/U+FFFF or lone
# surrogates at all, not even as character references, and a parser turns a raw CR into LF: a string holding
# any of them is written JSON-escaped in ASCII with encoding="json" (for a key, key-encoding="json"), so the
# document is well-formed and decodes back to the same text.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml_text(s: str) -> tuple[str, bool]:
    """``s`` as XML can hold it, and whether it was escaped."""
    if _NOT_XML.search(s):
        return json.dumps(s)[1:-1], True
    return s, False


def _from_xml_text(s: str, escaped: bool) -> str:
    return json.loads(f'"{s}"') if escaped else s


def _to_xml(parent: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        parent.set("type", "object")
        for k, v in value.items():
            k = str(k)
            if _NAME.fullmatch(k) and not k.lower().startswith("xml"):
                child = ET.SubElement(parent, k)
            else:
                key, escaped = _xml_text(k)
                child = ET.SubElement(parent, "entry", {"key": key})
                if escaped:
                    child.set("key-encoding", "json")
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
        text, escaped = _xml_text(str(value))
        parent.text = text
        if escaped:
            parent.set("encoding", "json")


def encode_xml(data: Any, root: str = "response") -> bytes:
    el = ET.Element(root or "response")
    _to_xml(el, data)
    return ET.tostring(el, encoding="utf-8", xml_declaration=True)


def _key_of(el: ET.Element) -> str:
    if el.tag == "entry" and el.get("key") is not None:
        return _from_xml_text(el.get("key"), el.get("key-encoding") == "json")
    return el.tag


def _from_xml(el: ET.Element) -> Any:
    kind = el.get("type", "string")
    if kind == "object":
        return {_key_of(c): _from_xml(c) for c in el}
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
    return _from_xml_text(text, el.get("encoding") == "json")


def decode_xml(body: bytes) -> Any:
    try:
        return _from_xml(ET.fromstring(body))
    except ET.ParseError as exc:
        raise InvalidInput(f"malformed XML: {exc}", field="body") from exc


# -- CSV ----------------------------------------------------------------------------------------------------
# OWASP "CSV Injection": a spreadsheet runs a cell that begins with = + - @ (or tab / CR, which some strip
# first) as a formula. Such text cells and headers are written with a leading ' (shown as text, not run);
# text that itself begins with ' gets one more, so decode_csv removes exactly one and gets the text back.
# Numbers are written as they are: -5 is a number, not a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unneutralise(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def flatten(value: Any, prefix: str | None = None, out: dict | None = None) -> dict:
    """Nested data -> {dotted.path: scalar}; empty containers keep a column holding ``[]`` / ``{}``; a bare
    scalar is the column ``value``."""
    out = {} if out is None else out
    if isinstance(value, dict):
        if not value and prefix is not None:
            out[prefix] = "{}"
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix is not None else str(k), out)
    elif isinstance(value, (list, tuple)):
        if not value and prefix is not None:
            out[prefix] = "[]"
        for i, v in enumerate(value):
            flatten(v, f"{prefix}.{i}" if prefix is not None else str(i), out)
    else:
        out["value" if prefix is None else prefix] = value
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return neutralise(str(v))


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
    w.writerow([neutralise(c) for c in columns])
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue().encode()


def decode_csv(body: bytes) -> list[dict]:
    """Rows as {column: text}; the caller knows which columns are numbers. Undoes :func:`neutralise`."""
    reader = csv.reader(io.StringIO(body.decode(), newline=""))
    header = [_unneutralise(h) for h in next(reader, [])]
    return [{h: _unneutralise(v) for h, v in zip(header, row)} for row in reader]


register(Format("json", "application/json", encode_json, decode_json))
register(Format("xml", "application/xml", encode_xml, decode_xml))
register(Format("csv", "text/csv", encode_csv, decode_csv))
