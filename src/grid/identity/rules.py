"""``rules/identity.yaml``: loaded, checked (JSON Schema, then meaning), versioned, reloadable.

:class:`IdentityRules` is immutable and small (it travels to wherever records are scored); its ``version`` is
the digest of the file, stamped on every resolution so an answer names the rules that gave it.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

from grid.errors import RuleError
from grid.identity.compare import LEVELS
from grid.rules.ruleset import _parse_yaml, _schema_check, _validators

__all__ = ["IdentityRules", "Comparator", "load_identity_rules", "ActiveIdentityRules", "RULES_FILE", "DEFAULT_RULES_DIR"]

RULES_FILE = "identity.yaml"
DEFAULT_RULES_DIR = Path(__file__).resolve().parents[3] / "rules"
SCHEMA_FILE = "schema/identity.schema.json"


@dataclass(frozen=True)
class Comparator:
    """One compared field: its levels best first, with m, u and the weight log2(m/u) of each."""

    field: str
    levels: tuple[str, ...]
    m: tuple[float, ...]
    u: tuple[float, ...]

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(math.log2(m / u) for m, u in zip(self.m, self.u))


@dataclass(frozen=True)
class IdentityRules:
    version: str
    region: str
    deterministic: tuple[str, ...]
    ignore_tax_ids: frozenset[str]
    blocking: tuple[str, ...]
    max_block: int
    prior: float
    link: float
    review: float
    comparators: tuple[Comparator, ...]
    source_priority: tuple[str, ...]
    default_priority: int

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def priority(self, source: str) -> int:
        try:
            return self.source_priority.index(source)
        except ValueError:
            return self.default_priority

    def with_parameters(self, m: dict[str, list[float]], u: dict[str, list[float]], prior: float) -> "IdentityRules":
        """The same rules with estimated m, u (per field, one per level) and prior (from :mod:`training`)."""
        comps = tuple(Comparator(c.field, c.levels, tuple(m[c.field]), tuple(u[c.field])) for c in self.comparators)
        doc = {"m": m, "u": u, "prior": prior, "base": self.version}
        version = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
        return IdentityRules(version, self.region, self.deterministic, self.ignore_tax_ids, self.blocking,
                             self.max_block, prior, self.link, self.review, comps, self.source_priority,
                             self.default_priority)

    def to_yaml_doc(self) -> dict:
        """The rules as a document of ``identity.yaml``'s shape (how training writes its estimates)."""
        return {
            "schema": "contextgrid/identity/1", "region": self.region, "deterministic": list(self.deterministic),
            "ignore_tax_ids": sorted(self.ignore_tax_ids),
            "blocking": {"keys": list(self.blocking), "max_block": self.max_block}, "prior": self.prior,
            "thresholds": {"link": self.link, "review": self.review},
            "comparisons": [{"field": c.field,
                             "levels": [{"level": lv, "m": _sig(m), "u": _sig(u)} for lv, m, u in
                                        zip(c.levels, c.m, c.u)]} for c in self.comparators],
            "sources": {"priority": list(self.source_priority), "default_priority": self.default_priority},
        }


def _sig(p: float) -> float:
    """Six significant digits: a veto's m of 1e-9 must not round to 0 (the schema wants m > 0)."""
    return float(f"{p:.6g}")


def _meaning(doc: dict, file: str) -> tuple[Comparator, ...]:
    out = []
    seen = set()
    for i, c in enumerate(doc["comparisons"]):
        field = c["field"]
        if field in seen:
            raise RuleError(f"{file}: comparisons[{i}].field: {field!r} is compared twice",
                            field=f"comparisons[{i}].field", file=file)
        seen.add(field)
        names = [lv["level"] for lv in c["levels"]]
        known = LEVELS[field]
        if sorted(names) != sorted(known):
            missing = sorted(set(known) - set(names))
            extra = sorted(set(names) - set(known))
            raise RuleError(f"{file}: comparisons[{i}].levels: {field} has the levels {list(known)}"
                            f"{'; missing ' + str(missing) if missing else ''}"
                            f"{'; unknown ' + str(extra) if extra else ''}",
                            field=f"comparisons[{i}].levels", file=file)
        by_name = {lv["level"]: lv for lv in c["levels"]}
        out.append(Comparator(field, tuple(known), tuple(float(by_name[n]["m"]) for n in known),
                              tuple(float(by_name[n]["u"]) for n in known)))
    if doc["thresholds"]["review"] > doc["thresholds"]["link"]:
        raise RuleError(f"{file}: thresholds.review: must not exceed thresholds.link", field="thresholds.review",
                        file=file)
    if doc["prior"] >= 1:
        raise RuleError(f"{file}: prior: must be below 1", field="prior", file=file)
    return tuple(out)


def load_identity_rules(directory: str | Path = "rules") -> IdentityRules:
    """Read and check ``identity.yaml`` of a rules directory; :class:`RuleError` names the file and field."""
    directory = Path(directory)
    path = directory / RULES_FILE
    try:
        data = path.read_bytes()
        schema = json.loads((directory / SCHEMA_FILE).read_text())
    except OSError as exc:
        raise RuleError(f"{RULES_FILE}: cannot read: {exc.strerror}", file=RULES_FILE) from exc
    doc = _parse_yaml(data, RULES_FILE)
    _schema_check(_validators({"identity": schema})["identity"], doc, RULES_FILE)
    comparators = _meaning(doc, RULES_FILE)
    sources = doc.get("sources") or {}
    return IdentityRules(
        version=hashlib.sha256(data).hexdigest()[:16], region=doc.get("region", "US"),
        deterministic=tuple(doc["deterministic"]), ignore_tax_ids=frozenset(doc.get("ignore_tax_ids", ())),
        blocking=tuple(doc["blocking"]["keys"]), max_block=int(doc["blocking"].get("max_block", 200)),
        prior=float(doc["prior"]), link=float(doc["thresholds"]["link"]),
        review=float(doc["thresholds"]["review"]), comparators=comparators,
        source_priority=tuple(sources.get("priority", ())), default_priority=int(sources.get("default_priority", 100)))


class ActiveIdentityRules:
    """The identity rules in force, reloadable without a restart; a failed reload changes nothing."""

    def __init__(self, directory: str | Path = "rules", rules: IdentityRules | None = None):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._current = rules if rules is not None else load_identity_rules(self.directory)

    @property
    def current(self) -> IdentityRules:
        return self._current

    def reload(self) -> IdentityRules:
        with self._lock:
            new = load_identity_rules(self.directory)  # raises before anything changes
            self._current = new
            return new
