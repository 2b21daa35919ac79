"""Whose context does a row belong to: the importer's one call into identity resolution.

Interface with ``grid.identity`` (issue 12)
-------------------------------------------
The importer hands over, per batch, one evidence record per row: a dict with any of the keys of
:data:`grid.imports.mapping.EVIDENCE` (``customer_id``, ``account_id``, ``service_point_id``, ``meter_id``,
``entity_id``, ``tax_id``, ``email``, ``phone``, ``name``, ``address``) plus ``source`` (the source's name),
and gets back one resolution per record, in order::

    {"outcome": "link" | "review" | "new" | "unresolved",
     "customer_id": str | None,        # link: the customer; new: the id to create (None: quarantine)
     "service_point_id": str | None,   # the service point a meter id or service point id named, if any
     "interval_minutes": int | None,   # that service point's interval length
     "evidence": dict}                 # why (the keys that matched, scores): kept in the import receipt

``link`` rows are applied to ``customer_id``; ``new`` rows create it when the row can (an upsert naming the
customer); ``review`` and ``unresolved`` rows go to the source's quarantine with that reason (``review``
rows are replayed once a reviewer decides).

:func:`resolve` uses ``grid.identity``'s resolver when that package provides ``aresolve_batch(grid, records)``
with this contract; until then it resolves by deterministic keys only (customer id, service point id, meter id,
account id), looked up on the shards' key indexes (``Grid.aimport_keys``).
"""
from __future__ import annotations

from typing import Any

KEY_ORDER = ("customer_id", "service_point_id", "meter_id", "account_id")


def _identity_resolver():
    try:
        from grid.identity import aresolve_batch  # type: ignore[attr-defined]
    except ImportError:
        return None
    return aresolve_batch


async def resolve(grid: Any, records: list[dict], creates: bool = False) -> list[dict]:
    """One resolution per evidence record (see the module docstring).

    ``creates``: the rows may create a customer they name (an upsert with a name), so an unknown
    ``customer_id`` is the outcome ``new`` rather than ``unresolved``. Without it (customer entry, a source
    with ``unmatched: quarantine`` such as a web form strangers fill in) a row nobody matches is ``unresolved``.
    """
    # a batch names few customers many times (a billing database's updates, a meter's readings): each distinct
    # evidence record is resolved once and its resolution given to every row that carries it (resolving per
    # row was 5.8 of 7.0 s of a 10k rows/s database feed's batch writing, bench/bench_imports_sources.py)
    keys = [tuple(sorted((k, repr(v)) for k, v in r.items())) for r in records]
    first: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if len(first) < len(records):
        unique = await _resolve_distinct(grid, [records[i] for i in first.values()], creates)
        slot = dict(zip(first, unique))
        return [dict(slot[key]) for key in keys]
    return await _resolve_distinct(grid, records, creates)


async def _resolve_distinct(grid: Any, records: list[dict], creates: bool) -> list[dict]:
    external = _identity_resolver()
    if external is not None:
        out = await external(grid, records)
        if not creates:  # the rows may not make a customer: nobody found is nobody found
            out = [dict(r, outcome="unresolved", customer_id=None) if r["outcome"] == "new" else r for r in out]
        return out
    wanted: dict[str, set[str]] = {k: set() for k in KEY_ORDER}
    for r in records:
        for k in KEY_ORDER:
            v = r.get(k)
            if v is not None:
                wanted[k].add(str(v))
    found = await grid.aimport_keys({k: sorted(v) for k, v in wanted.items() if v})
    return [deterministic(r, found, creates) for r in records]


def deterministic(record: dict, found: dict[str, dict[str, list]], creates: bool = False) -> dict:
    """Resolve one record by its keys against ``found`` (kind -> value -> [customer, service point, minutes]).

    Keys are tried strongest first; two keys naming different customers is a conflict sent to review.
    """
    hits: list[tuple[str, list]] = []
    for k in KEY_ORDER:
        v = record.get(k)
        if v is None:
            continue
        hit = found.get(k, {}).get(str(v))
        if hit is not None:
            hits.append((k, hit))
    owners = {h[0] for _, h in hits}
    sp = next((h[1] for _, h in hits if h[1] is not None), None)
    minutes = next((h[2] for _, h in hits if h[1] is not None), None)
    if len(owners) > 1:
        return {"outcome": "review", "customer_id": None, "service_point_id": sp, "interval_minutes": minutes,
                "evidence": {"keys": {k: h[0] for k, h in hits}, "conflict": True}}
    if owners:
        return {"outcome": "link", "customer_id": owners.pop(), "service_point_id": sp,
                "interval_minutes": minutes, "evidence": {"keys": [k for k, _ in hits]}}
    if creates and record.get("customer_id") is not None:
        return {"outcome": "new", "customer_id": str(record["customer_id"]), "service_point_id": None,
                "interval_minutes": None, "evidence": {"keys": ["customer_id"]}}
    return {"outcome": "unresolved", "customer_id": None, "service_point_id": None, "interval_minutes": None,
            "evidence": {"tried": [k for k in KEY_ORDER if record.get(k) is not None]}}
