"""API keys with roles, stored hashed.

Keys file (YAML)::

    keys:
      - id: ops                 # a name for logs; never the key itself
        role: operator          # operator | agent | customer
        sha256: 9f86d08...      # hex SHA-256 of the key
      - id: portal-C0000042
        role: customer
        customers: [C0000042]   # the only customers this key sees

Keys are 256-bit random tokens, so one SHA-256 is enough (no salt or slow hash needed: there is nothing to
brute-force); comparison is by dictionary lookup of the digest, so timing reveals nothing about the key.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grid.durable import durable_write
from grid.errors import Forbidden, InvalidInput, NotFound, Unauthorized

ROLES = ("operator", "agent", "customer")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "cg_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    customers: frozenset[str] = field(default_factory=frozenset)

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise Forbidden(f"role {self.role!r} may not do this (needs {' or '.join(roles)})", field="Authorization")

    def check_customer(self, customer_id: str) -> None:
        """A customer key sees only its own customers; anything else is 'not found', so ids do not leak."""
        if self.role == "customer" and customer_id not in self.customers:
            raise NotFound(f"no customer {customer_id!r}", field="id")


class KeyStore:
    """Hashed keys from a YAML file."""

    def __init__(self, entries: list[dict] | None = None):
        self._by_digest: dict[str, Principal] = {}
        for i, e in enumerate(entries or []):
            role = e.get("role")
            if role not in ROLES:
                raise InvalidInput(f"keys[{i}].role must be one of {ROLES}", field=f"keys[{i}].role")
            h = str(e.get("sha256", "")).lower()
            if len(h) != 64:
                raise InvalidInput(f"keys[{i}].sha256 must be a hex SHA-256", field=f"keys[{i}].sha256")
            self._by_digest[h] = Principal(str(e.get("id", f"key{i}")), role, frozenset(e.get("customers") or []))

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        """The entries of a keys file."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read keys file {path}: {exc}", field="keys") from exc
        return list(data.get("keys") or [])

    @classmethod
    def load(cls, path: str | Path) -> "KeyStore":
        return cls(cls.read(path))

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized("missing Authorization: Bearer <key>", field="Authorization")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("Authorization must be 'Bearer <key>'", field="Authorization")
        p = self._by_digest.get(digest(key.strip()))
        if p is None:
            raise Unauthorized("unknown API key", field="Authorization")
        return p


def write_keys_file(path: str | Path, keys: list[tuple[str, str, str, list[str]]]) -> None:
    """Write ``(id, key, role, customers)`` entries hashed (replacing the file); the plain keys are never stored."""
    entries = []
    for key_id, key, role, customers in keys:
        e = {"id": key_id, "role": role, "sha256": digest(key)}
        if customers:
            e["customers"] = list(customers)
        entries.append(e)
    durable_write(path, yaml.safe_dump({"keys": entries}, sort_keys=False).encode(), mode=0o600)


def add_key(path: str | Path, key_id: str, role: str, customers: list[str] | None = None) -> str:
    """Mint a key, append its hash to the keys file at ``path`` (kept, or created) and return the key."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {ROLES}", field="role")
    path = Path(path)
    data = KeyStore.read(path) if path.exists() else []
    key = new_key()
    entry = {"id": key_id, "role": role, "sha256": digest(key)}
    if customers:
        entry["customers"] = list(customers)
    durable_write(path, yaml.safe_dump({"keys": data + [entry]}, sort_keys=False).encode(), mode=0o600)
    return key
