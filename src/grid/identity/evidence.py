"""What an incoming record says about whose it is (:class:`Evidence`), and what the resolver answers (:class:`Resolution`).

This is the interface between importers and the resolver: an importer maps a source row's identifying columns
into an :class:`Evidence` (every field optional but ``source``), hands a batch to ``Grid.aresolve`` and gets one
:class:`Resolution` per record, in order: ``link`` (this customer), ``review`` (a person must decide; the review
item's id) or ``new`` (nobody known). Each resolution carries its evidence: the deterministic key that decided
it, or every comparison with its level and Fellegi-Sunter weight and the total, so a link can be explained later.

The structs are msgspec structs: decoded once at the edge (unknown fields rejected, types checked), then passed
through Ray and the write-ahead log as plain builtins (:func:`to_builtins`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from grid.errors import InvalidInput

__all__ = ["Evidence", "Comparison", "Candidate", "Resolution", "decode_records", "record_key", "to_builtins"]

Outcome = Literal["link", "review", "new"]


class Evidence(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One source record's identifying fields (all optional but ``source``; an empty field is not evidence).

    ``record_id`` is the row's id in its source: with ``source`` it names the record, so a record seen again
    resolves the same way (and a reviewer's decision about it is remembered). ``email_verified`` says the source
    confirmed the address (a double opt-in, a portal login): only a verified e-mail is a deterministic key.
    ``at`` is when the source last saw the values (RFC 3339), for the golden record's recency rule.
    """

    source: str
    record_id: str | None = None
    customer_id: str | None = None
    account_id: str | None = None
    service_point_id: str | None = None
    meter_id: str | None = None
    tax_id: str | None = None
    email: str | None = None
    email_verified: bool = False
    phone: str | None = None
    name: str | None = None
    address: str | None = None
    mailing_address: str | None = None
    kind: Literal["residential", "commercial", "industrial", "public"] | None = None
    at: str | None = None


class Comparison(msgspec.Struct, omit_defaults=True):
    """One compared field: the level reached (``exact``, ``jaro_winkler_92``, ``else``...) and its weight (bits).

    ``record`` and ``customer`` are the normalized values that met (the customer's closest value).
    """

    field: str
    level: str
    weight: float
    record: str | None = None
    customer: str | None = None


class Candidate(msgspec.Struct, omit_defaults=True):
    """A customer the record was compared with, its total match weight and what decided it."""

    customer_id: str
    score: float | None = None  # None when a key or a decision, not a score, named the customer
    comparisons: list[Comparison] = []
    key: str | None = None  # the deterministic key that matched (``account_id``...), if one did
    member: str | None = None  # which of the customer's records met this one (``context`` or source:record_id)
    decision: str | None = None  # a reviewer's ``same``/``different`` about this record and customer


class Resolution(msgspec.Struct, omit_defaults=True):
    """The resolver's answer for one record.

    ``score`` is the total Fellegi-Sunter match weight (log2 Bayes factor plus the prior) of the best candidate;
    ``probability`` the match probability it implies. A deterministic key or a reviewer's decision is certainty,
    reported as ``key`` / ``decision`` with ``probability = 1``.
    ``candidates`` lists the runners-up (best first, the chosen one included) so a reviewer sees the choice.
    """

    outcome: Outcome
    customer_id: str | None = None
    score: float | None = None
    probability: float | None = None
    key: str | None = None
    decision: str | None = None
    comparisons: list[Comparison] = []
    candidates: list[Candidate] = []
    review_id: str | None = None
    record_key: str = ""
    rules_version: str = ""


_DECODER = msgspec.json.Decoder(list[Evidence])


def decode_records(records: Any, field: str = "records") -> list[Evidence]:
    """Evidence structs from JSON bytes or builtins (dicts), every record checked; errors name the record and key."""
    if isinstance(records, (bytes, str)):
        try:
            return _DECODER.decode(records)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"bad record: {exc}", field=_path(field, str(exc))) from exc
    if not isinstance(records, list):
        raise InvalidInput("records must be a list of objects", field=field)
    out = []
    for i, r in enumerate(records):
        if isinstance(r, Evidence):
            out.append(r)
            continue
        try:
            out.append(msgspec.convert(r, Evidence))
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"bad record: {exc}", field=_path(f"{field}[{i}]", str(exc))) from exc
    return out


def _path(prefix: str, message: str) -> str:
    """``records[3].email`` from msgspec's ``... - at `$[3].email```."""
    if "at `$" in message:
        return prefix + message.rsplit("at `$", 1)[1].rstrip("`")
    if "Object missing required field `" in message:
        return prefix + "." + message.split("`")[1]
    if "Object contains unknown field `" in message:
        return prefix + "." + message.split("`")[1]
    return prefix


def record_key(ev: Evidence) -> str:
    """A stable name for a record: ``source:record_id``, or a digest of its fields when the source has no ids.

    The digest keeps a re-sent record (same fields) the same record, so a decision about it holds for the copy.
    """
    if ev.record_id:
        return f"{ev.source}:{ev.record_id}"
    fields = msgspec.json.encode(msgspec.structs.replace(ev, at=None))
    return f"{ev.source}:#{hashlib.sha1(fields).hexdigest()[:16]}"


def to_builtins(obj) -> Any:
    """Plain dicts/lists for the WAL, Ray and JSON responses (defaults omitted)."""
    return msgspec.to_builtins(obj)
