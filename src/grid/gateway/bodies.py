"""Decoding a JSON request body into data every later stage can carry.

A body that parses is not yet safe: ``json.loads`` accepts ``NaN`` and ``Infinity`` (which then pass
``minimum``/``maximum`` checks and make every later JSON answer invalid), nests until it raises
``RecursionError``, keeps integers msgpack cannot write (beyond 64 bits) and strings with lone surrogates that
UTF-8 cannot encode. Each of those reached the WAL or Ray and failed there, some on every later read of the
customer (a poison record). :func:`decode_body` refuses them at the edge with a 422 naming the path.
"""
from __future__ import annotations

import json
import math
from typing import Any

from grid.errors import InvalidInput

INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1  # what msgpack (the WAL) and Arrow hold


def _no_constant(name: str):
    raise InvalidInput(f"{name} is not a JSON number", field="body", reason="json")


def _where(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def check_encodable(value: Any, max_depth: int) -> None:
    """Raise :class:`InvalidInput` naming the first part of ``value`` nested deeper than ``max_depth``, an
    integer outside int64, a non-finite float, or a string UTF-8 cannot encode. Iterative: any depth is safe."""
    stack: list[tuple[Any, tuple, int]] = [(value, (), 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth >= max_depth:
                raise InvalidInput(f"{_where(path)}: nested deeper than {max_depth} levels", field=_where(path),
                                   reason="depth")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, child in items:
                if isinstance(k, str):
                    _check_text(k, path + (k,))
                stack.append((child, path + (k,), depth + 1))
        elif isinstance(v, str):
            _check_text(v, path)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            if not INT_MIN <= v <= INT_MAX:
                raise InvalidInput(f"{_where(path)}: integer outside the 64-bit range", field=_where(path),
                                   reason="range")
        elif isinstance(v, float) and not math.isfinite(v):
            raise InvalidInput(f"{_where(path)}: not a finite number", field=_where(path), reason="json")


def _check_text(s: str, path: tuple) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{_where(path)}: text with an unpaired surrogate (\\ud800-\\udfff)",
                           field=_where(path), reason="encoding") from None


def decode_body(raw: bytes, max_depth: int) -> Any:
    """``raw`` JSON as Python data that the WAL and Ray can carry; 422 naming the path otherwise."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput(f"body: nested deeper than {max_depth} levels", field="body", reason="depth") from None
    except (ValueError, UnicodeDecodeError) as exc:
        # the decoder's message (line, column) is about the caller's own bytes: safe and useful to quote
        raise InvalidInput(f"malformed JSON: {exc}", field="body", reason="json") from None
    check_encodable(body, max_depth)
    return body
