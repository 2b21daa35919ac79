"""Contact addresses checked the way a mail server and a phone network would see them.

``email-validator`` checks syntax and normalizes the domain (no DNS lookup: a write must not wait on the
network); ``phonenumbers`` (libphonenumber) parses, validates and normalizes to E.164 so providers, dedup and
reply matching all see one spelling of a number.
"""
from __future__ import annotations

import email_validator
import phonenumbers

from grid.errors import InvalidInput

DEFAULT_REGION = "US"  # numbers written without +country are read as national numbers of this region


def normalize_email(address: str, field: str) -> str:
    """The normalized address; ``InvalidInput`` naming ``field`` when it is not an email address."""
    try:
        return email_validator.validate_email(address, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise InvalidInput(f"{address!r} is not an email address: {exc}", field=field) from None


def normalize_phone(number: str, field: str, region: str = DEFAULT_REGION) -> str:
    """The number in E.164 (``+15551234567``); ``InvalidInput`` naming ``field`` when it is not one."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"{number!r} is not a phone number: {exc}", field=field) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(f"{number!r} is not a valid phone number", field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_channel(channel: dict, field: str) -> dict:
    """A copy of a contact channel with its address validated and normalized for its type."""
    out = dict(channel)
    address = out.get("address")
    if not isinstance(address, str) or not address.strip():
        raise InvalidInput("a channel needs an address", field=f"{field}.address")
    if out.get("type") == "email":
        out["address"] = normalize_email(address.strip(), f"{field}.address")
    elif out.get("type") in ("sms", "voice"):
        out["address"] = normalize_phone(address.strip(), f"{field}.address")
    else:
        raise InvalidInput("channel type must be email, sms or voice", field=f"{field}.type")
    return out
