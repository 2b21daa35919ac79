"""Loading the rule set: read every file, validate it (JSON Schema, then meaning), version it, swap atomically.

A rule set is the files of ``rules/``: ``portfolios.yaml`` (what links accounts into portfolios),
``key_accounts.yaml`` (account and portfolio qualification), ``load_priority.yaml`` (critical and priority
loads), ``cost_to_serve.yaml`` and the price curve it names. Each YAML file is checked against its JSON Schema
in ``rules/schema/`` and then for meaning (columns exist, values fit their columns, ids are unique) before
anything is used; the first problem raises :class:`~grid.errors.RuleError` naming the file, the rule and the
field. The version is a digest of every file's bytes, so two shards holding the same version hold the same rules.

:class:`ActiveRules` holds the rule set in force and reloads it without a restart: the new set is built
completely aside and swapped in with one assignment, so a bad file leaves the old rules in force.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from grid.errors import RuleError
from grid.rules.columns import ACCOUNT_COLUMNS, PORTFOLIO_COLUMNS, STRING, STRINGS, ANY, lookup
from grid.rules.costs import CostToServe, PriceCurve, parse_costs, parse_prices
from grid.rules.predicates import Predicate, compile_predicate

__all__ = ["RuleSet", "LinkRule", "Rule", "LevelRule", "LoadPriorityRules", "KeyAccountRules", "load_ruleset",
           "ActiveRules", "RULE_FILES"]

RULE_FILES = ("portfolios.yaml", "key_accounts.yaml", "load_priority.yaml", "cost_to_serve.yaml")
SCHEMA_DIR = "schema"


@dataclass(frozen=True)
class LinkRule:
    """Accounts (passing ``where``) that share a value of column ``key`` belong to one portfolio."""

    id: str
    description: str
    key: str
    where: Predicate | None
    ignore: frozenset[str]


@dataclass(frozen=True)
class Rule:
    """A named qualification: ``when`` holds for the row."""

    id: str
    description: str
    when: Predicate


@dataclass(frozen=True)
class LevelRule:
    """Sets the load priority to at least ``level`` where ``when`` holds."""

    id: str
    description: str
    level: str
    when: Predicate


@dataclass(frozen=True)
class KeyAccountRules:
    account_eligible: Predicate | None
    account_rules: tuple[Rule, ...]
    portfolio_rules: tuple[Rule, ...]


@dataclass(frozen=True)
class LoadPriorityRules:
    levels: tuple[str, ...]  # ascending: the last is the most critical
    default: str
    rules: tuple[LevelRule, ...]

    def rank(self, level: str) -> int:
        return self.levels.index(level)


@dataclass(frozen=True)
class RuleSet:
    """Every rule in force, validated, with the version (digest of the files) results are stamped with."""

    version: str
    directory: str
    files: dict[str, str]  # relative path -> sha256
    links: tuple[LinkRule, ...]
    key_accounts: KeyAccountRules
    load_priority: LoadPriorityRules
    costs: CostToServe
    prices: PriceCurve = field(repr=False)


# -- YAML ---------------------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys (PyYAML would silently keep the last one)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _parse_yaml(data: bytes, file: str):
    try:
        return yaml.load(data.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise RuleError(f"{file}: not UTF-8 text", file=file) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RuleError(f"{file}: invalid YAML{where}: {problem}", file=file) from exc


# -- schema -------------------------------------------------------------------------------------------------------
def _validators(schemas: dict[str, dict]) -> dict[str, Draft202012Validator]:
    resources = [(s["$id"], Resource.from_contents(s)) for s in schemas.values() if "$id" in s]
    registry = Registry().with_resources(resources)
    return {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _rule_at(doc, parts) -> str | None:
    """The id of the rule a path points into (``links[2]...`` -> that rule's id)."""
    parts = list(parts)
    if len(parts) >= 2 and isinstance(parts[1], int) and isinstance(doc, dict):
        items = doc.get(parts[0])
        if isinstance(items, list) and parts[1] < len(items) and isinstance(items[parts[1]], dict):
            rid = items[parts[1]].get("id")
            return rid if isinstance(rid, str) else f"{parts[0]}[{parts[1]}]"
    return None


def _schema_check(validator: Draft202012Validator, doc, file: str) -> None:
    error = best_match(validator.iter_errors(doc))
    if error is None:
        return
    parts = list(error.absolute_path)
    detail = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(str(k) for k in error.instance if k not in allowed)
        if extra:
            parts.append(extra[0])
            detail = f"unknown field {extra[0]!r}"
    field = _path(parts) or None
    rule = _rule_at(doc, parts)
    where = f" rule {rule!r}:" if rule else ""
    raise RuleError(f"{file}:{where} {field or '(top level)'}: {detail}", field=field, file=file, rule=rule)


# -- meaning ------------------------------------------------------------------------------------------------------
def _unique_ids(items: list[dict], section: str, file: str, seen: dict[str, str]) -> None:
    for i, item in enumerate(items):
        rid = item["id"]
        if rid in seen:
            raise RuleError(f"{file}: rule {rid!r}: {section}[{i}].id: id is used twice (also {seen[rid]})",
                            field=f"{section}[{i}].id", file=file, rule=rid)
        seen[rid] = f"{section}[{i}]"


def _links(doc: dict, file: str) -> tuple[LinkRule, ...]:
    _unique_ids(doc["links"], "links", file, {})
    out = []
    for i, item in enumerate(doc["links"]):
        column = lookup(item["key"], ACCOUNT_COLUMNS)
        if column is None:
            raise RuleError(f"{file}: rule {item['id']!r}: links[{i}].key: unknown column {item['key']!r}",
                            field=f"links[{i}].key", file=file, rule=item["id"])
        if column.type not in (STRING, STRINGS, ANY):
            raise RuleError(f"{file}: rule {item['id']!r}: links[{i}].key: type mismatch: {item['key']} is "
                            f"{column.type}; a link key must be a string or a list of strings",
                            field=f"links[{i}].key", file=file, rule=item["id"])
        where = None
        if "where" in item:
            where = compile_predicate(item["where"], ACCOUNT_COLUMNS, file=file, rule=item["id"],
                                      path=f"links[{i}].where")
        out.append(LinkRule(item["id"], item.get("description", ""), item["key"], where,
                            frozenset(item.get("ignore", ()))))
    return tuple(out)


def _rules(items: list[dict], section: str, catalogue, file: str) -> tuple[Rule, ...]:
    return tuple(Rule(item["id"], item.get("description", ""),
                      compile_predicate(item["when"], catalogue, file=file, rule=item["id"],
                                        path=f"{section}[{i}].when"))
                 for i, item in enumerate(items))


def _key_accounts(doc: dict, file: str) -> KeyAccountRules:
    seen: dict[str, str] = {}
    _unique_ids(doc["account_rules"], "account_rules", file, seen)
    _unique_ids(doc["portfolio_rules"], "portfolio_rules", file, seen)
    eligible = None
    if "account_eligible" in doc:
        eligible = compile_predicate(doc["account_eligible"], ACCOUNT_COLUMNS, file=file, rule="account_eligible",
                                     path="account_eligible")
    return KeyAccountRules(eligible, _rules(doc["account_rules"], "account_rules", ACCOUNT_COLUMNS, file),
                           _rules(doc["portfolio_rules"], "portfolio_rules", PORTFOLIO_COLUMNS, file))


def _load_priority(doc: dict, file: str) -> LoadPriorityRules:
    levels = tuple(doc["levels"])
    if len(set(levels)) != len(levels):
        raise RuleError(f"{file}: levels must be distinct, got {list(levels)}", field="levels", file=file)
    if doc["default"] not in levels:
        raise RuleError(f"{file}: default {doc['default']!r} is not one of the levels {list(levels)}",
                        field="default", file=file)
    _unique_ids(doc["rules"], "rules", file, {})
    rules = []
    for i, item in enumerate(doc["rules"]):
        if item["level"] not in levels:
            raise RuleError(f"{file}: rule {item['id']!r}: rules[{i}].level: {item['level']!r} is not one of the "
                            f"levels {list(levels)}", field=f"rules[{i}].level", file=file, rule=item["id"])
        rules.append(LevelRule(item["id"], item.get("description", ""), item["level"],
                               compile_predicate(item["when"], ACCOUNT_COLUMNS, file=file, rule=item["id"],
                                                 path=f"rules[{i}].when")))
    return LoadPriorityRules(levels, doc["default"], tuple(rules))


# -- loading ------------------------------------------------------------------------------------------------------
def _read(directory: Path, name: str) -> bytes:
    path = directory / name
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise RuleError(f"{name}: missing from {directory}", file=name) from exc
    except OSError as exc:
        raise RuleError(f"{name}: cannot be read ({exc.strerror})", file=name) from exc


def load_ruleset(directory: str | Path = "rules") -> RuleSet:
    """Read, validate and compile the rule set in ``directory``.

    Every file is read first and then parsed from those bytes, so the version digests exactly what was
    validated even if a file changes meanwhile.

    Raises
    ------
    RuleError
        For the first problem found: a missing or unreadable file, invalid YAML, a schema violation (unknown
        field, bad operator, wrong type), or a rule that names an unknown column or compares a column with a
        value of the wrong type. ``file``, ``rule`` and ``field`` say where.
    """
    directory = Path(directory)
    schema_dir = directory / SCHEMA_DIR
    raw: dict[str, bytes] = {}
    schema_names = sorted(p.name for p in schema_dir.glob("*.json")) if schema_dir.is_dir() else []
    if not schema_names:
        raise RuleError(f"no JSON Schemas in {schema_dir}", file=SCHEMA_DIR)
    for name in schema_names:
        raw[f"{SCHEMA_DIR}/{name}"] = _read(directory, f"{SCHEMA_DIR}/{name}")
    for name in RULE_FILES:
        raw[name] = _read(directory, name)
    schemas = {}
    for name in schema_names:
        try:
            schemas[name] = json.loads(raw[f"{SCHEMA_DIR}/{name}"])
        except ValueError as exc:
            raise RuleError(f"{SCHEMA_DIR}/{name}: invalid JSON ({exc})", file=f"{SCHEMA_DIR}/{name}") from exc
    validators = _validators(schemas)
    docs = {}
    for name in RULE_FILES:
        schema_name = name.replace(".yaml", ".schema.json")
        if schema_name not in validators:
            raise RuleError(f"{name}: no schema {SCHEMA_DIR}/{schema_name}", file=name)
        doc = _parse_yaml(raw[name], name)
        _schema_check(validators[schema_name], doc, name)
        docs[name] = doc
    links = _links(docs["portfolios.yaml"], "portfolios.yaml")
    key_accounts = _key_accounts(docs["key_accounts.yaml"], "key_accounts.yaml")
    load_priority = _load_priority(docs["load_priority.yaml"], "load_priority.yaml")
    costs = parse_costs(docs["cost_to_serve.yaml"], "cost_to_serve.yaml")
    price_file = costs.price_curve
    if Path(price_file).is_absolute() or ".." in Path(price_file).parts:
        raise RuleError(f"cost_to_serve.yaml: price_curve must be a path inside the rules directory, got "
                        f"{price_file!r}", field="price_curve", file="cost_to_serve.yaml")
    raw[price_file] = _read(directory, price_file)
    prices = parse_prices(raw[price_file], price_file, costs.timezone)
    files = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(raw.items())}
    digest = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in files.items()).encode()).hexdigest()
    return RuleSet(version=digest[:16], directory=str(directory), files=files, links=links,
                   key_accounts=key_accounts, load_priority=load_priority, costs=costs, prices=prices)


class ActiveRules:
    """The rule set in force, reloadable without a restart; a failed reload changes nothing."""

    def __init__(self, directory: str | Path = "rules", ruleset: RuleSet | None = None):
        self.directory = Path(directory)
        self._lock = threading.Lock()  # one reload at a time; readers never wait
        self._current = ruleset if ruleset is not None else load_ruleset(self.directory)

    @property
    def current(self) -> RuleSet:
        return self._current

    @property
    def version(self) -> str:
        return self._current.version

    def reload(self) -> RuleSet:
        """Load the directory again and put it in force; on RuleError the previous rule set stays."""
        with self._lock:
            new = load_ruleset(self.directory)  # raises before anything changes
            self._current = new
            return new
