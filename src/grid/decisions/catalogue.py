"""The action catalogue (``rules/actions.yaml``): what can be offered, to whom, how it is valued and ranked.

Each action carries three predicates in the vectorized predicate language (:mod:`grid.rules.predicates`), read
in the engagement-policy order of Pega's Customer Decision Hub:

* ``eligibility``: may this customer have it at all (kind, enrolment, account standing);
* ``applicability``: does it apply to the customer's situation now (recent events, bills);
* ``suitability``: is it in the customer's interest (a saving big enough, a risk high enough).

Then ``value`` (cents: a constant, a factor of a feature, or the rate-plan saving priced by the what-if kernel),
``lever`` (a business weight) and ``channels``. The file is checked against ``rules/schema/actions.schema.json``
and for meaning (columns exist, types fit, ids unique) before use; its version is the digest of its bytes.
The file's ``policy`` section holds the contact policy and the propensity prior.

Shards load the catalogue themselves from the file, by version (:func:`resolve`): the gateway sends only an
:class:`ActionsRef` (path + version), so no compiled predicates travel with each request.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from grid.decisions.events import EVENT_TYPES, WINDOWS
from grid.errors import RuleError
from grid.rules.columns import ANY, BOOL, INT, STRING, STRINGS, Column, KINDS, ATTR_PREFIX
from grid.rules.predicates import Predicate, compile_predicate
from grid.rules.ruleset import _parse_yaml, _schema_check, _validators

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"
DEFAULT_PATH = RULES_DIR / "actions.yaml"
SCHEMA_PATH = RULES_DIR / "schema" / "actions.schema.json"
OUTBOUND = ("email", "sms", "voice")
INBOUND = ("web", "agent")
CHANNELS = OUTBOUND + INBOUND
SAVING = "rate_plan_saving_cents"  # the one column priced lazily (only for rows an action still considers)


class _DecisionColumns(dict):
    """The decision columns, with free-form ``attr.<name>`` columns of type ``any`` (as account rules have)."""

    def get(self, name, default=None):
        col = super().get(name)
        if col is None and isinstance(name, str) and name.startswith(ATTR_PREFIX) and len(name) > len(ATTR_PREFIX):
            return Column(ANY, "free-form customer attribute")
        return col if col is not None else default


DECISION_COLUMNS = _DecisionColumns({
    "kind": Column(STRING, "customer kind", KINDS),
    "segment": Column(STRING, "customer segment"),
    "rate_plan_id": Column(STRING, "rate plan of the customer's first active account"),
    "programs": Column(STRINGS, "program codes any account is enrolled in"),
    "has_solar": Column(BOOL, "any service point has on-site generation"),
    "key_account": Column(BOOL, "classification.key_account (false before the first classification)"),
    "load_priority": Column(STRING, "classification.load_priority"),
    "n_accounts": Column(INT, "active accounts"),
    "spend_12m_cents": Column(INT, "sum of the last 12 legacy bills over every account, cents"),
    "last_bill_cents": Column(INT, "the newest legacy bill total, cents (summed over accounts)"),
    "bill_change_pct": Column(INT, "newest bill against the mean of the bills before it, percent (0 if none)"),
    "payment_methods": Column(STRINGS, "payment methods seen"),
    "channels": Column(STRINGS, "channel types the customer's contacts can be reached on"),
    "churn_risk_pct": Column(INT, "classification.churn_risk as a whole percent (0 before any scoring)"),
    SAVING: Column(INT, "annual saving of the cheapest candidate plan on the live load (what-if kernel), cents"),
    **{f"events.{t}.{w}d": Column(INT, f"{t} events in the last {w} days") for t in EVENT_TYPES for w in WINDOWS},
    **{f"events.{t}.total": Column(INT, f"{t} events ever counted") for t in EVENT_TYPES},
    **{f"events.{t}.days_since": Column(INT, f"days since the last {t} (missing if never)") for t in EVENT_TYPES},
})


@dataclass(frozen=True)
class Value:
    """How an action is valued, in cents: ``cents`` + ``factor`` x ``field`` (+ the what-if saving)."""

    cents: int = 0
    field: str | None = None
    factor: float = 0.0
    rate_plan_saving: bool = False


@dataclass(frozen=True)
class Action:
    id: str
    description: str
    kind: str  # "offer" (blocked during a complaint cool-off) or "service"
    eligibility: Predicate | None
    applicability: Predicate | None
    suitability: Predicate | None
    value: Value
    lever: float
    channels: tuple[str, ...]
    plans: tuple[str, ...]  # candidate plans priced for rate_plan_saving_cents

    @property
    def predicates(self) -> tuple[tuple[str, Predicate | None], ...]:
        return (("eligibility", self.eligibility), ("applicability", self.applicability),
                ("suitability", self.suitability))

    @property
    def needs_saving(self) -> bool:
        return self.value.rate_plan_saving or any(p is not None and SAVING in p.fields for _, p in self.predicates)


@dataclass(frozen=True)
class Policy:
    """Contact policy and learning prior."""

    max_offers_per_channel_per_week: int
    suppress_after_rejections: int
    suppression_days: int
    complaint_cooloff_days: int
    prior_accepted: float
    prior_rejected: float
    ignored_weight: float


@dataclass(frozen=True)
class Catalogue:
    version: str
    path: str
    actions: tuple[Action, ...]
    policy: Policy
    fields: frozenset[str]  # every column a predicate or value reads

    def index(self, action_id: str) -> int:
        for i, a in enumerate(self.actions):
            if a.id == action_id:
                return i
        raise KeyError(action_id)


def _compile(item: dict, key: str, file: str, i: int) -> Predicate | None:
    if key not in item:
        return None
    return compile_predicate(item[key], DECISION_COLUMNS, file=file, rule=item["id"], path=f"actions[{i}].{key}")


def _value(item: dict, file: str, i: int) -> Value:
    v = item.get("value", {})
    if "field" in v:
        col = DECISION_COLUMNS.get(v["field"])
        if col is None or col.type != INT:
            raise RuleError(f"{file}: rule {item['id']!r}: actions[{i}].value.field: {v['field']!r} is not an "
                            "integer column", field=f"actions[{i}].value.field", file=file, rule=item["id"])
    return Value(int(v.get("cents", 0)), v.get("field"), float(v.get("factor", 0.0)),
                 bool(v.get("rate_plan_saving", False)))


def parse(data: bytes, file: str = "actions.yaml", path: str = "") -> Catalogue:
    """Validate and compile the bytes of an actions file (RuleError names file, rule and field)."""
    doc = _parse_yaml(data, file)
    schema = json.loads(SCHEMA_PATH.read_text())
    predicate = json.loads((RULES_DIR / "schema" / "predicate.schema.json").read_text())
    validators = _validators({"actions": schema, "predicate": predicate})
    _schema_check(validators["actions"], doc, file)
    seen: dict[str, int] = {}
    actions = []
    fields: set[str] = set()
    for i, item in enumerate(doc["actions"]):
        if item["id"] in seen:
            raise RuleError(f"{file}: rule {item['id']!r}: actions[{i}].id: id is used twice",
                            field=f"actions[{i}].id", file=file, rule=item["id"])
        seen[item["id"]] = i
        preds = [_compile(item, k, file, i) for k in ("eligibility", "applicability", "suitability")]
        value = _value(item, file, i)
        a = Action(item["id"], item.get("description", ""), item.get("kind", "offer"), *preds, value,
                   float(item.get("lever", 1.0)), tuple(item["channels"]), tuple(item.get("plans", ())))
        if a.needs_saving and not a.plans:
            raise RuleError(f"{file}: rule {a.id!r}: actions[{i}].plans: pricing {SAVING} needs candidate plans",
                            field=f"actions[{i}].plans", file=file, rule=a.id)
        for p in preds:
            if p is not None:
                fields |= p.fields
        if value.field:
            fields.add(value.field)
        actions.append(a)
    p = doc["policy"]
    policy = Policy(int(p["max_offers_per_channel_per_week"]), int(p["suppress_after_rejections"]),
                    int(p["suppression_days"]), int(p["complaint_cooloff_days"]),
                    float(p["prior"]["accepted"]), float(p["prior"]["rejected"]), float(p.get("ignored_weight", 0.5)))
    version = hashlib.sha256(data).hexdigest()[:16]
    return Catalogue(version, path, tuple(actions), policy, frozenset(fields - {SAVING}))


def load(path: str | Path = DEFAULT_PATH) -> Catalogue:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleError(f"{path.name}: cannot read: {exc.strerror}", file=path.name) from exc
    return parse(data, path.name, str(path))


@dataclass(frozen=True)
class ActionsRef:
    """A picklable handle on one version of an actions file; shards resolve it to a compiled catalogue."""

    path: str
    version: str


_cache: dict[tuple[str, str], Catalogue] = {}
_lock = threading.Lock()


def resolve(ref: ActionsRef) -> Catalogue:
    """This process's compiled catalogue for ``ref`` (loaded once per version)."""
    key = (ref.path, ref.version)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    cat = load(ref.path)
    if cat.version != ref.version:
        raise RuleError(f"{Path(ref.path).name} changed on disk (version {cat.version}, expected {ref.version}); "
                        "reload the actions", file=Path(ref.path).name)
    with _lock:
        _cache[key] = cat
    return cat


class ActiveActions:
    """The catalogue in force; :meth:`reload` builds a new one aside and swaps it in (a bad file keeps the old)."""

    def __init__(self, path: str | Path = DEFAULT_PATH):
        self.path = str(Path(path).resolve())
        self.current = load(self.path)
        with _lock:
            _cache[(self.path, self.current.version)] = self.current

    def reload(self) -> Catalogue:
        new = load(self.path)
        with _lock:
            _cache[(self.path, new.version)] = new
        self.current = new
        return new

    @property
    def ref(self) -> ActionsRef:
        return ActionsRef(self.path, self.current.version)
