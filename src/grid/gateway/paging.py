"""Opaque page cursors: the last key of a page, base64url-encoded (strictly decoded, so junk is a 4xx)."""
from __future__ import annotations

import base64
import binascii

from grid.errors import InvalidInput


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor.encode() + b"=" * (-len(cursor) % 4), altchars=b"-_",
                                validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor is not one this server issued", field="cursor") from None


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
