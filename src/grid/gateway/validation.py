"""Request validation against ``api/openapi.yaml``: the contract is the validator.

Each operation's parameters and request body schema (OpenAPI 3.1 = JSON Schema 2020-12) are compiled once at
start-up; a request that breaks them is rejected before any shard sees it, with the offending field named
(``contacts.upsert[0].channels[1].type``). Unknown query parameters are rejected too: a typo in a filter must
not silently return everything.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from grid.errors import InvalidInput
from grid.gateway.bodies import decode_body

OPENAPI_PATH = Path(os.environ.get("CONTEXTGRID_OPENAPI", Path(__file__).resolve().parents[3] / "api" / "openapi.yaml"))


def python_pattern(pattern: str) -> re.Pattern:
    """A JSON Schema (ECMA-262) ``pattern`` compiled with ECMA meaning in Python.

    ECMA's ``$`` (no multiline flag) matches only at the very end, Python's also before a trailing newline:
    ``^[a-z]+$`` let ``"x\\n"`` through, and a tariff id ``x\\n`` became a file name. Every unescaped ``$``
    outside a character class becomes ``\\Z``. Compiled once per pattern: patterns come from the contract,
    never from a caller, so the cache is bounded by the document.
    """
    hit = _PATTERNS.get(pattern)
    if hit is not None:
        return hit
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "$" and not in_class:
            c = r"\Z"
        out.append(c)
        i += 1
    _PATTERNS[pattern] = compiled = re.compile("".join(out))
    return compiled


_PATTERNS: dict[str, re.Pattern] = {}


def _ecma_pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not python_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# The contract's validator: Draft 2020-12 with ECMA ``pattern`` semantics (see python_pattern).
ContractValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def load_spec(path: Path = OPENAPI_PATH) -> dict:
    return yaml.safe_load(path.read_text())


def _deref(node: Any, root: dict, seen: tuple = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            if ref in seen:
                raise ValueError(f"recursive $ref {ref}")
            target = root
            for part in ref[2:].split("/"):
                target = target[part]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            merged = _deref(copy.deepcopy(target), root, seen + (ref,))
            merged.update(_deref(rest, root, seen))
            return merged
        return {k: _deref(v, root, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, root, seen) for v in node]
    return node


@dataclass
class Parameter:
    name: str
    location: str
    required: bool
    schema: dict
    validator: Any
    fast: Callable[[Any], str | None] | None = None


_SIMPLE = {"type", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "default", "description"}


def _fast_check(schema: dict) -> Callable[[Any], str | None] | None:
    """A plain-Python check for the simple schemas parameters use (jsonschema costs ~50 us a call on the
    hot read path); None when the schema needs the full validator."""
    if not set(schema) <= _SIMPLE or schema.get("type") not in ("string", "integer", "boolean"):
        return None
    enum = schema.get("enum")
    pattern = python_pattern(schema["pattern"]) if "pattern" in schema else None
    lo, hi = schema.get("minimum"), schema.get("maximum")
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")

    def check(v):
        if enum is not None and v not in enum:
            return f"{v!r} is not one of {enum}"
        if lo is not None and v < lo:
            return f"{v} is less than the minimum of {lo}"
        if hi is not None and v > hi:
            return f"{v} is greater than the maximum of {hi}"
        if isinstance(v, str):
            if min_len is not None and len(v) < min_len:
                return f"{v!r} is shorter than {min_len} characters"
            if max_len is not None and len(v) > max_len:
                return f"{v!r} is longer than {max_len} characters"
            if pattern is not None and not pattern.search(v):
                return f"{v!r} does not match {pattern.pattern!r}"
        return None

    return check


@dataclass
class Operation:
    operation_id: str
    method: str
    path: str
    parameters: list[Parameter] = field(default_factory=list)
    body: Draft202012Validator | None = None
    body_required: bool = False
    public: bool = False
    media_types: tuple[str, ...] = ("application/json",)  # what its 2xx answers may be, the default first
    negotiable: bool = False  # has ``?format=``: answers in any registered format (grid.gateway.formats)


def _field_of(err: ValidationError, prefix: str = "") -> str:
    path = prefix
    for p in err.absolute_path:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - allowed)
        if extra:
            return f"{path}.{extra[0]}" if path else extra[0]
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [r for r in err.validator_value if r not in err.instance]
        if missing:
            return f"{path}.{missing[0]}" if path else missing[0]
    return path or "body"


def _best(errors) -> ValidationError | None:
    errors = sorted(errors, key=lambda e: (-len(list(e.absolute_path)), str(e.message)))
    return errors[0] if errors else None


def raise_for(validator: Draft202012Validator, value: Any, prefix: str = "") -> None:
    err = _best(validator.iter_errors(value))
    if err is not None:
        where = _field_of(err, prefix)
        reason = err.message if len(err.message) < 300 else err.message[:300] + "..."
        if err.validator == "additionalProperties":
            reason = f"unknown field {where.rsplit('.', 1)[-1]!r}"
        raise InvalidInput(f"{where}: {reason}", field=where, reason=err.validator)


def _coerce(raw: str, schema: dict, name: str) -> Any:
    t = schema.get("type")
    if t == "integer":
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be an integer, got {raw!r}", field=name, reason="type") from None
    if t == "number":
        try:
            return float(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be a number, got {raw!r}", field=name, reason="type") from None
    if t == "boolean":
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise InvalidInput(f"{name} must be true or false, got {raw!r}", field=name, reason="type")
    return raw


class Contract:
    """All operations of the spec, looked up by (method, path template)."""

    def __init__(self, spec: dict | None = None, max_depth: int = 32):
        self.spec = spec or load_spec()
        self.max_depth = max_depth
        self.operations: dict[tuple[str, str], Operation] = {}
        self._methods: dict[str, list[str]] = {}
        checker = FormatChecker()
        global_security = self.spec.get("security", [])
        for path, item in self.spec.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method not in ("get", "put", "post", "patch", "delete"):
                    continue
                op = _deref(op, self.spec)
                params = []
                for p in _deref(shared, self.spec) + op.get("parameters", []):
                    schema = p.get("schema", {})
                    params.append(Parameter(p["name"], p["in"], bool(p.get("required")), schema,
                                            ContractValidator(schema, format_checker=checker),
                                            _fast_check(schema)))
                body, required = None, False
                rb = op.get("requestBody")
                if rb:
                    schema = rb.get("content", {}).get("application/json", {}).get("schema")
                    if schema:
                        body = ContractValidator(schema, format_checker=checker)
                    required = bool(rb.get("required"))
                security = op.get("security", global_security)
                media: dict[str, None] = {}
                for status, resp in op.get("responses", {}).items():
                    if str(status).startswith("2"):
                        media.update(dict.fromkeys(resp.get("content", {})))
                self.operations[(method.upper(), path)] = Operation(
                    op["operationId"], method.upper(), path, params, body, required, public=security == [],
                    media_types=tuple(media) or ("application/json",),
                    negotiable=any(p.name == "format" and p.location == "query" for p in params))
                self._methods.setdefault(path, []).append(method.upper())

    def operation(self, method: str, path_template: str) -> Operation | None:
        """The operation answering ``method`` on the path; HEAD is answered as GET (RFC 9110 section 9.3.2)."""
        method = method.upper()
        return self.operations.get(("GET" if method == "HEAD" else method, path_template))

    def methods(self, path_template: str) -> list[str]:
        """The methods the contract declares on a path (with HEAD beside GET); empty if not a contract path."""
        declared = self._methods.get(path_template, [])
        return declared + ["HEAD"] if "GET" in declared else list(declared)

    def check_parameters(self, op: Operation, query, headers, match_info) -> dict:
        """Validated, typed parameters by name."""
        out: dict[str, Any] = {}
        known_query = {p.name for p in op.parameters if p.location == "query"}
        for name in query:
            if name not in known_query:
                raise InvalidInput(f"unknown query parameter {name!r}", field=name, reason="unknown")
        for p in op.parameters:
            if p.location == "query":
                values = query.getall(p.name, [])
                if len(values) > 1:
                    raise InvalidInput(f"{p.name} given more than once", field=p.name)
                raw = values[0] if values else None
            elif p.location == "header":
                raw = headers.get(p.name)
            elif p.location == "path":
                raw = match_info.get(p.name)
            else:
                continue
            if raw is None:
                if p.required:
                    raise InvalidInput(f"{p.name} is required", field=p.name, reason="required")
                if "default" in p.schema:
                    out[p.name] = p.schema["default"]
                continue
            value = _coerce(raw, p.schema, p.name)
            if p.fast is not None:
                msg = p.fast(value)
                if msg is not None:
                    raise InvalidInput(f"{p.name}: {msg}", field=p.name, reason="schema")
            else:
                err = _best(p.validator.iter_errors(value))
                if err is not None:
                    raise InvalidInput(f"{p.name}: {err.message}", field=p.name, reason=err.validator)
            out[p.name] = value
        return out

    def check_body(self, op: Operation, raw: bytes, content_type: str) -> Any:
        if op.body is None:
            return None
        if not raw:
            if op.body_required:
                raise InvalidInput("a JSON body is required", field="body", reason="required")
            return None
        if content_type and content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            raise InvalidInput(f"body must be application/json, got {content_type[:100]}", field="Content-Type",
                               reason="media_type")
        body = decode_body(raw, self.max_depth)
        raise_for(op.body, body)
        return body
