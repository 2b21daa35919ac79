"""One model of a customer context (DOMAIN.md section 1) and of the bodies that write it.

Every part of a context is a strict ``msgspec.Struct``: unknown fields are rejected, types are not coerced, and
every default is filled once, when a body is decoded (:func:`decode`). What comes out is either a struct or an
``InvalidInput`` naming the offending field (``accounts[0].service_points[1].interval_minutes``); code after the
decode reads the fields without checking their shape again.

Records stay plain dicts in the shard (``msgspec.to_builtins`` of the decoded struct): they travel through Ray,
the write-ahead log and snapshots unchanged, and every reader of ``rec["accounts"]`` keeps working.

``api/openapi.yaml`` describes the same structs by the same names (``Account``, ``ServicePoint``,
``CustomerPatch``...); ``tests/test_model.py`` holds the two equal (fields, types, required, enums, bounds).
"""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from grid.errors import InvalidInput


def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, Meta(min_length=min_length, max_length=max_length)] if min_length else \
        Annotated[str, Meta(max_length=max_length)]


Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
ProgramCode = Annotated[str, Meta(pattern=r"^[A-Z0-9_]{1,40}$")]
HourMinute = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
AttributeName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
Instant = Annotated[dt.datetime, Meta(tz=True)]  # RFC 3339 with an offset; stored as text ("...Z" for UTC)
Cents = Annotated[int, Meta(ge=-(10**12), le=10**12)]  # money is integer cents (DOMAIN.md section 3)
Kind = Literal["residential", "commercial", "industrial", "public"]
LoadPriority = Literal["normal", "priority", "critical"]
Role = Literal["billing", "outage", "key_account", "technical", "emergency", "portal", "facilities"]
ChannelType = Literal["email", "sms", "voice"]
IntervalMinutes = Literal[15, 30, 60]
# contacts (issue 13): what a contact may ask for, and who may read a note
MessageType = Literal["outage", "outage_restored", "bill_ready", "high_bill", "payment_due"]
Language = Annotated[str, Meta(pattern=r"^[a-z]{2}$")]
Visibility = Literal["internal", "customer"]
Wh = Annotated[int, Meta(ge=0, le=100_000_000)]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


class Model(Struct, forbid_unknown_fields=True):
    """Base of every struct: strict (unknown fields rejected); each subclass is keyword-only (not inherited)."""


# -- the parts of a context ---------------------------------------------------------------------------------------
class QuietHours(Model, kw_only=True):
    """Local hours a channel is not used (a critical alert ignores them)."""

    start: HourMinute
    end: HourMinute


class Channel(Model, kw_only=True):
    """One way to reach a contact, in preference order (1 first)."""

    type: ChannelType
    address: _text(200, 1)
    preference: Annotated[int, Meta(ge=1, le=10)] = 1
    quiet_hours: QuietHours | None = None


class Contact(Model, kw_only=True):
    """A person to reach about the customer, with roles and channels."""

    contact_id: Id
    name: _text(200) = ""
    roles: Annotated[list[Role], Meta(max_length=10)] = []
    channels: Annotated[list[Channel], Meta(max_length=10)] = []
    # contacts: left out of records when not given (UNSET), so contexts written before keep their shape
    language: Language | UnsetType = UNSET  # messages in this language (en when absent)
    messages: Annotated[list[MessageType], Meta(max_length=10)] | UnsetType = UNSET  # types wanted (all when absent)


class Program(Model, kw_only=True):
    """An account's enrolment in a program; ``enrolled`` defaults to the day of the write."""

    code: ProgramCode
    enrolled: dt.date | None = None


class ServicePoint(Model, kw_only=True):
    """A metered premise of an account."""

    service_point_id: Id
    premise_address: _text(300) = ""
    meter_id: _text(40) = ""
    interval_minutes: IntervalMinutes
    has_solar: bool = False
    load_priority: LoadPriority = "normal"


class Account(Model, kw_only=True):
    """A billed account: its rate plan, programs and service points."""

    account_id: Id
    status: Literal["active", "closed"] = "active"
    rate_plan_id: _text(100, 1)
    bill_cycle_day: Annotated[int, Meta(ge=1, le=28)] = 1
    billing_address: _text(300) = ""
    programs: Annotated[list[Program], Meta(max_length=50)] = []
    service_points: Annotated[list[ServicePoint], Meta(max_length=100)] = []


class Entity(Model, kw_only=True):
    """An owning legal entity; special-purpose vehicles point at their parent."""

    entity_id: Id
    legal_name: _text(300) = ""
    tax_id: _text(40) | None = None
    mailing_address: _text(300) = ""
    parent_entity_id: Id | None = None


class Payment(Model, kw_only=True):
    """A payment received against an account."""

    payment_id: _text(64, 1)
    account_id: _text(40) = ""
    date: dt.date
    amount_cents: Cents
    method: _text(40) = ""


class Event(Model, kw_only=True):
    """A timestamped interaction (call, outage, web visit, offer made or accepted, payment missed)."""

    ts: Instant
    type: _text(64, 1)
    detail: Annotated[dict[str, Any], Meta(max_length=100)] = {}


class NoteIn(Model, kw_only=True):
    """A note as a client adds it."""

    text: _text(4000, 1)
    author: _text(200) = ""
    visibility: Visibility | UnsetType = UNSET  # contacts: staff notes are internal unless marked customer


class Note(Model, kw_only=True):
    """A note on the context; ``created_at`` defaults to the time of the write."""

    note_id: _text(40, 1)
    text: _text(4000, 1)
    author: _text(200) = ""
    created_at: _text(40) = ""
    visibility: Visibility | UnsetType = UNSET  # contacts: absent means internal (never shown to a customer key)


class ProjectIn(Model, kw_only=True):
    """An energy-efficiency project as the customer adds it."""

    name: _text(200, 1)
    start_date: dt.date
    expected_kwh_per_month: Annotated[int, Meta(ge=0, le=10_000_000)]
    note: _text(2000) = ""


class Project(Model, kw_only=True):
    """An energy-efficiency project the customer told us about (used by the portal and forecasts)."""

    project_id: _text(40, 1)
    name: _text(200, 1)
    start_date: dt.date
    expected_kwh_per_month: Annotated[int, Meta(ge=0, le=10_000_000)]
    note: _text(2000) = ""
    created_at: _text(40) = ""


class Supplemental(Model, kw_only=True):
    """Information the customer adds about itself."""

    projects: Annotated[list[Project], Meta(max_length=200)] = []


class Classification(Model, kw_only=True):
    """Computed by the classification run (DOMAIN.md section 5); empty until the first run."""

    key_account: bool | UnsetType = UNSET
    reasons: list[str] | UnsetType = UNSET
    portfolio_id: str | None | UnsetType = UNSET
    portfolio_ids: list[str] | UnsetType = UNSET
    load_priority: LoadPriority | UnsetType = UNSET
    load_priority_reasons: list[str] | UnsetType = UNSET
    rules_version: str | UnsetType = UNSET
    churn_risk: Annotated[float, Meta(ge=0, le=1)] | None | UnsetType = UNSET


class BillLine(Model, kw_only=True):
    """One line of a bill, rounded half-up to the cent."""

    code: str
    label: str = ""  # readable name from the tariff ("Summer peak energy, tier 2"); computed bills carry it
    quantity: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    unit: str
    amount_cents: Cents


class Bill(Model, kw_only=True):
    """A legacy or computed bill; ``period_end`` is exclusive."""

    bill_id: str
    account_id: str
    period_start: dt.date
    period_end: dt.date
    total_cents: Cents
    lines: list[BillLine] = []


class CustomerContext(Model, kw_only=True):
    """A whole stored context, as the shard holds it and GET answers it."""

    customer_id: str
    name: str
    kind: Kind
    segment: str
    created_at: str
    version: int
    attributes: dict[str, Any]
    ownership: list[Entity]
    accounts: list[Account]
    contacts: list[Contact]
    payments: list[Payment]
    events: list[Event]
    notes: list[Note]
    supplemental: Supplemental
    classification: Classification


# -- write bodies -------------------------------------------------------------------------------------------------
class ContextIn(Model, kw_only=True):
    """``PUT /v1/customers/{id}``: a whole context; ``segment`` defaults to ``kind``."""

    customer_id: _text(40) | None = None
    name: _text(200, 1)
    kind: Kind
    segment: _text(100) | None = None
    created_at: _text(40) | None = None
    attributes: Annotated[dict[str, Any], Meta(max_length=200)] = {}
    ownership: Annotated[list[Entity], Meta(max_length=20)] = []
    accounts: Annotated[list[Account], Meta(max_length=500)] = []
    contacts: Annotated[list[Contact], Meta(max_length=50)] = []
    payments: Annotated[list[Payment], Meta(max_length=1000)] = []
    events: Annotated[list[Event], Meta(max_length=1000)] = []
    notes: Annotated[list[Note], Meta(max_length=1000)] = []
    supplemental: Supplemental = msgspec.field(default_factory=Supplemental)
    classification: Classification = msgspec.field(default_factory=Classification)


class ContactUpsert(Model, kw_only=True):
    """A contact to add or change: fields left out keep their stored values."""

    contact_id: Id
    name: _text(200) | UnsetType = UNSET
    roles: Annotated[list[Role], Meta(max_length=10)] | UnsetType = UNSET
    channels: Annotated[list[Channel], Meta(max_length=10)] | UnsetType = UNSET
    language: Language | UnsetType = UNSET  # contacts
    messages: Annotated[list[MessageType], Meta(max_length=10)] | UnsetType = UNSET  # contacts


class ContactsPatch(Model, kw_only=True):
    upsert: Annotated[list[ContactUpsert], Meta(max_length=50)] = []
    remove: Annotated[list[_text(40)], Meta(max_length=50)] = []


class ProgramAdd(Model, kw_only=True):
    account_id: _text(40)
    code: ProgramCode
    enrolled: dt.date | None = None


class ProgramRemove(Model, kw_only=True):
    account_id: _text(40)
    code: _text(40)


class ProgramsPatch(Model, kw_only=True):
    add: Annotated[list[ProgramAdd], Meta(max_length=50)] = []
    remove: Annotated[list[ProgramRemove], Meta(max_length=50)] = []


class NotesPatch(Model, kw_only=True):
    add: Annotated[list[NoteIn], Meta(min_length=1, max_length=20)]


class ProjectsPatch(Model, kw_only=True):
    add: Annotated[list[ProjectIn], Meta(min_length=1, max_length=20)] = []
    remove: Annotated[list[_text(40)], Meta(max_length=50)] = []


class SupplementalPatch(Model, kw_only=True):
    projects: ProjectsPatch = msgspec.field(default_factory=ProjectsPatch)


class CustomerPatch(Model, kw_only=True):
    """``PATCH /v1/customers/{id}``; ``attributes`` is a JSON merge patch (null removes a key)."""

    name: _text(200, 1) | UnsetType = UNSET
    segment: _text(100, 1) | UnsetType = UNSET
    attributes: Annotated[dict[AttributeName, Any], Meta(max_length=200)] | UnsetType = UNSET
    contacts: ContactsPatch | UnsetType = UNSET
    programs: ProgramsPatch | UnsetType = UNSET
    notes: NotesPatch | UnsetType = UNSET
    supplemental: SupplementalPatch | UnsetType = UNSET


class Reading(Model, kw_only=True):
    """One interval reading: energy in integer Wh over the interval starting at ``start``."""

    service_point_id: _text(40)
    start: Instant
    import_wh: Wh
    export_wh: Wh = 0


class UsageReadings(Model, kw_only=True):
    """``POST /v1/customers/{id}/usage``."""

    readings: Annotated[list[Reading], Meta(min_length=1, max_length=10_000)]


# -- decoding -----------------------------------------------------------------------------------------------------
T = TypeVar("T")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_NAMED = re.compile(r"(?:unknown|required) field `([^`]+)`")


def field_of(error: msgspec.ValidationError) -> tuple[str, str]:
    """(field path, reason) of a msgspec validation error: ``accounts[0].rate_plan_id``."""
    m = _AT.match(str(error))
    msg, path = m.group("msg"), (m.group("path") or "")
    named = _NAMED.search(msg)
    if named:  # the error is reported at the object; name the field itself
        path += f".{named.group(1)}"
    return path.lstrip(".") or "body", msg


def decode(kind: type[T], value: Any) -> T:
    """``value`` (decoded JSON) as a ``kind`` struct, every default filled; InvalidInput naming the field."""
    try:
        out = msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        where, msg = field_of(exc)
        reason = "unknown" if "unknown field" in msg else "required" if "missing required" in msg else "schema"
        raise InvalidInput(f"{where}: {msg}", field=where, reason=reason) from None
    _check_free_form(value, "")
    return out


INT64 = (-(2**63), 2**63 - 1)
MAX_DEPTH = 32


def _check_free_form(value: Any, path: str, depth: int = 0) -> None:
    """Free-form parts (``attributes``, an event's ``detail``) hold any JSON, but only what the log can hold:
    integers within int64 (msgpack's range), finite numbers (Python's JSON parser accepts NaN), bounded depth."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"{path or 'body'}: nested deeper than {MAX_DEPTH}", field=path or "body")
        for k, v in value.items():
            _check_free_form(v, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"{path or 'body'}: nested deeper than {MAX_DEPTH}", field=path or "body")
        for i, v in enumerate(value):
            _check_free_form(v, f"{path}[{i}]", depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise InvalidInput(f"{path}: integer out of the 64-bit range", field=path, reason="maximum")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{path}: not a finite number", field=path, reason="type")


def to_record(value: Struct) -> dict:
    """The plain-dict form the shard keeps, logs and snapshots."""
    return msgspec.to_builtins(value)


# Every struct by the name api/openapi.yaml gives its schema (tests/test_model.py holds them equal).
SCHEMAS: dict[str, type[Struct]] = {cls.__name__: cls for cls in (
    QuietHours, Channel, Contact, Program, ServicePoint, Account, Entity, Payment, Event, NoteIn, Note, ProjectIn,
    Project, Supplemental, Classification, BillLine, Bill, CustomerContext, ContextIn, ContactUpsert,
    CustomerPatch, Reading, UsageReadings)}
