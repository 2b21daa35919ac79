"""Sources are data: one YAML file per source under ``<data-dir>/sources/``, checked against a JSON Schema
(``source.schema.json`` beside this module) and compiled once; :class:`SourceRegistry` reloads changed files
without a restart.

A source file::

    name: meter-export            # the source's id in /v1/imports/{source}
    kind: folder                  # folder | push | postgres | espi
    location: inbox/meters        # folder: relative to the data dir (or absolute); postgres: a DSN
    format: csv                   # auto (by extension) | csv | fixed | jsonl | parquet | spreadsheet
    pattern: "*.csv"
    options: {delimiter: auto, encoding: auto, header_row: 1, sheets: [...], columns: [...]}
    timezone: America/New_York    # local date-times without an offset are in this zone
    does: usage                   # upsert | usage | bill | payment | event | project
    unmatched: create             # a row no customer matches: create one (upsert, the default) or quarantine
    identity:                     # evidence of whose row this is (grid.imports.linking / grid.identity)
      meter_id: MeterNo
    fields:                       # context field -> column (shorthand) or a full rule (grid.imports.mapping)
      usage.start: {column: Read Time, format: "%m/%d/%Y %H:%M"}
      usage.import_wh: {column: kWh, unit: kWh}
      # contact.name: {template: "{First} {Last}"}   several columns joined (web forms)

A bad file raises :class:`grid.errors.InvalidInput` (422) whose ``field`` is ``<file>:<key path>``.
"""
from __future__ import annotations

import hashlib
import json
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from grid.errors import InvalidInput
from grid.imports.mapping import ACTIONS, EVIDENCE, RECORD_ID, FieldRule, Mapping, compile_field

SCHEMA_PATH = Path(__file__).with_name("source.schema.json")
_validator = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
# evidence a row of each action can be linked by without a resolver: (evidence name, fields that carry it)
IMPLIED_EVIDENCE = {
    "customer_id": ("customer.customer_id",),
    "service_point_id": ("usage.service_point_id", "service_point.service_point_id"),
    "meter_id": ("service_point.meter_id",),
    "account_id": ("account.account_id", "bill.account_id", "payment.account_id"),
    "entity_id": ("ownership.entity_id",),
    "tax_id": ("ownership.tax_id",),
    "email": ("contact.email",),
    "phone": ("contact.phone",),
    "name": ("customer.name",),
}


@dataclass
class Source:
    """A compiled source; ``digest`` changes whenever its file does."""

    name: str
    kind: str
    does: str
    mapping: Mapping
    file: str = ""
    digest: str = ""
    location: str | None = None
    format: str = "auto"
    pattern: str = "*"
    options: dict = field(default_factory=dict)
    timezone: str = "UTC"
    spec: dict = field(default_factory=dict)

    def folder(self, data_dir: Path) -> Path | None:
        if self.kind != "folder" or not self.location:
            return None
        p = Path(self.location)
        return p if p.is_absolute() else Path(data_dir) / p


def _where(file: str, path) -> str:
    keys = ".".join(str(p) for p in path)
    return f"{file}:{keys}" if keys else file


def compile_source(spec: dict, file: str = "<source>") -> Source:
    """Validate a parsed source file against the schema and compile its mapping."""
    if not isinstance(spec, dict):
        raise InvalidInput(f"{file}: a source must be a mapping", field=file)
    errors = sorted(_validator.iter_errors(spec), key=lambda e: (-len(e.absolute_path), e.message))
    if errors:
        e = errors[0]
        path = list(e.absolute_path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            path += extra[:1]
        elif e.validator == "required":
            missing = [r for r in e.validator_value if r not in e.instance]
            path += missing[:1]
        where = _where(file, path)
        raise InvalidInput(f"{where}: {e.message[:300]}", field=where, reason=e.validator)
    tz = spec.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        where = _where(file, ["timezone"])
        raise InvalidInput(f"{where}: unknown time zone {tz!r}", field=where) from None
    does = spec["does"]
    parts, needed = ACTIONS[does]
    fields: list[FieldRule] = []
    for target, fspec in spec["fields"].items():
        where = _where(file, ["fields", target])
        if target.split(".")[0] not in parts:
            raise InvalidInput(f"{where}: a {does!r} source cannot write {target.split('.')[0]} fields "
                               f"(it writes {', '.join(parts)})", field=where)
        fields.append(compile_field(target, fspec, where, tz, required=target in needed))
    targets = {f.target for f in fields}
    for need in needed:
        if need not in targets:
            where = _where(file, ["fields", need])
            raise InvalidInput(f"{where}: a {does!r} source needs this field", field=where, reason="required")
    evidence = []
    for name, fspec in (spec.get("identity") or {}).items():
        where = _where(file, ["identity", name])
        fspec = {"column": fspec} if isinstance(fspec, str) else dict(fspec)
        fspec.setdefault("type", "string")
        rule = compile_field(name, fspec, where, tz)
        evidence.append(rule)
    has_evidence = {e.target for e in evidence} | {n for n, fs in IMPLIED_EVIDENCE.items() if targets & set(fs)}
    if not has_evidence & (set(EVIDENCE) - {RECORD_ID}):
        where = _where(file, ["identity"])
        raise InvalidInput(f"{where}: no column tells whose row it is (give identity evidence)", field=where)
    if does == "usage" and not has_evidence & {"service_point_id", "meter_id"}:
        where = _where(file, ["identity"])
        raise InvalidInput(f"{where}: usage rows need a service point or meter id", field=where)
    if spec["kind"] == "folder" and not spec.get("location"):
        where = _where(file, ["location"])
        raise InvalidInput(f"{where}: a folder source needs a location", field=where, reason="required")
    raw = json.dumps(spec, sort_keys=True, default=str).encode()
    return Source(spec["name"], spec["kind"], does, Mapping(fields, evidence), file=file,
                  digest=hashlib.sha256(raw).hexdigest()[:12], location=spec.get("location"),
                  format=spec.get("format", "auto"), pattern=spec.get("pattern", "*"),
                  options=dict(spec.get("options") or {}), timezone=tz, spec=spec)


def load_source(path: Path) -> Source:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path.name}: not readable YAML: {exc}", field=path.name) from exc
    src = compile_source(spec, path.name)
    if src.name != path.stem:
        where = f"{path.name}:name"
        raise InvalidInput(f"{where}: name {src.name!r} must match the file name {path.stem!r}", field=where)
    return src


class SourceRegistry:
    """The sources of one data dir, reloaded from their files when they change."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.sources: dict[str, Source] = {}
        self.errors: dict[str, InvalidInput] = {}  # file name -> why it did not load (the old version stays)
        self._stamps: dict[str, tuple[int, int]] = {}

    def reload(self, strict: bool = False) -> list[str]:
        """Re-read changed, new and removed files; returns the names of the sources that changed.

        ``strict``: raise the first file's error (an admin's reload answers 422 naming file and key).
        """
        changed = []
        seen = set()
        files = sorted(self.directory.glob("*.y*ml")) if self.directory.is_dir() else []
        for path in files:
            seen.add(path.name)
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if self._stamps.get(path.name) == stamp and path.name not in self.errors:
                continue
            self._stamps[path.name] = stamp
            try:
                src = load_source(path)
            except InvalidInput as exc:
                self.errors[path.name] = exc
                continue
            self.errors.pop(path.name, None)
            old = self.sources.get(src.name)
            if old is None or old.digest != src.digest:
                changed.append(src.name)
            self.sources[src.name] = src
        for name in [n for n, s in self.sources.items() if s.file not in seen]:
            del self.sources[name]
            changed.append(name)
        for fname in [f for f in self.errors if f not in seen]:
            del self.errors[fname]
        if strict and self.errors:
            raise next(iter(self.errors.values()))
        return changed

    def get(self, name: str) -> Source:
        from grid.errors import NotFound

        self.reload()
        src = self.sources.get(name)
        if src is None:
            bad = self.errors.get(f"{name}.yaml") or self.errors.get(f"{name}.yml")
            if bad is not None:
                raise bad
            raise NotFound(f"no import source {name!r}", field="source")
        return src
