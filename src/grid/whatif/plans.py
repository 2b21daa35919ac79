"""Rate plans a what-if can bill: catalogue ids and inline URDB tariffs, compiled once per shard process.

What-ifs run inside the shard actor (``Grid.ascenarios`` etc.), so the gateway sends a :class:`PlanCatalogue` *reference*
(a directory) rather than compiled tariffs: a compiled tariff unpickled on every request would be a new object
each time and miss the bill kernel's per-(tariff, period) plan cache, which is most of what keeps a 12-month,
10-plan what-if fast. Each process keeps one ``TariffCatalogue`` per directory (cached per file version), and
inline tariffs are compiled once per distinct content (keyed by a digest of their canonical JSON).
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from grid.errors import InvalidInput, NotFound, TariffError
from grid.tariffs import SHIPPED, TariffCatalogue, compile_checked
from kernels.tariffs import CompiledTariff

DEFAULT_TARIFF_DIR = SHIPPED  # read-only; the gateway passes its data dir's catalogue
INLINE_CACHE = 128  # distinct inline tariffs kept compiled per process

_catalogues: dict[str, TariffCatalogue] = {}
_inline: OrderedDict[str, CompiledTariff] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class PlanCatalogue:
    """A picklable handle on the tariff catalogue in ``directory``; resolves to this process's cache."""

    directory: str = str(DEFAULT_TARIFF_DIR)

    def _catalogue(self) -> TariffCatalogue:
        with _lock:
            cat = _catalogues.get(self.directory)
            if cat is None:
                cat = _catalogues[self.directory] = TariffCatalogue(self.directory)
        return cat

    def get(self, plan_id: str) -> CompiledTariff:
        """The compiled tariff ``plan_id``; NotFound if the catalogue has none."""
        return self._catalogue().get(plan_id)

    def ids(self) -> list[str]:
        return self._catalogue().ids()

    def get_json(self, plan_id: str) -> dict:
        """The stored URDB JSON of ``plan_id``."""
        return self._catalogue().get_json(plan_id)

    def name(self, plan_id: str) -> str:
        t = self.get(plan_id)
        return t.name or t.label or plan_id


@dataclass(frozen=True)
class Plan:
    """A candidate rate plan: its id (catalogue id or inline label), display name, compiled tariff, origin."""

    plan_id: str
    name: str
    tariff: CompiledTariff
    source: str  # "catalogue" | "inline"


def _inline_tariff(urdb: dict, field: str, timezone: str) -> CompiledTariff:
    # a tariff naming no zone is billed in the shard's (the grid's), so the zone is part of the key
    key = hashlib.sha256(json.dumps([urdb, timezone], sort_keys=True, default=str).encode()).hexdigest()
    with _lock:
        hit = _inline.get(key)
        if hit is not None:
            _inline.move_to_end(key)
            return hit
    try:
        compiled = compile_checked(urdb, f"inline-{key[:12]}", timezone)
    except TariffError as exc:
        raise TariffError(exc.detail, field=f"{field}.{exc.field}" if exc.field not in (None, "$") else field,
                          reason=exc.reason) from exc
    with _lock:
        _inline[key] = compiled
        while len(_inline) > INLINE_CACHE:
            _inline.popitem(last=False)
    return compiled


def resolve_plans(items: list, catalogue: PlanCatalogue, timezone: str) -> list[Plan]:
    """Candidate plans from a request's ``plans`` list: catalogue ids (strings) or inline URDB objects.

    Errors name the item: an unknown id is NotFound with ``field="plans[i]"``; an invalid inline tariff is a
    TariffError with ``field="plans[i].<urdb key>"``; a tariff scheduled in another time zone than the shard's
    usage is refused, because its periods would be looked up at the wrong hours.
    """
    if not isinstance(items, list) or not items:
        raise InvalidInput("plans must be a non-empty list of catalogue ids or URDB tariffs", field="plans")
    out: list[Plan] = []
    for i, item in enumerate(items):
        field = f"plans[{i}]"
        if isinstance(item, str):
            try:
                tariff = catalogue.get(item)
            except NotFound:
                raise NotFound(f"no rate plan {item!r} in the catalogue", field=field) from None
            except InvalidInput as exc:
                raise InvalidInput(exc.detail, field=field, reason="tariff_id") from exc
            plan = Plan(item, tariff.name or tariff.label or item, tariff, "catalogue")
        elif isinstance(item, dict):
            tariff = _inline_tariff(item, field, timezone)
            label = str(item.get("label") or item.get("name") or f"inline-{i + 1}")
            plan = Plan(label, str(item.get("name") or label), tariff, "inline")
        else:
            raise InvalidInput(f"{field} must be a catalogue id or a URDB tariff object", field=field)
        if plan.tariff.timezone != timezone:
            raise InvalidInput(f"{field} schedules in {plan.tariff.timezone}, but usage is kept in {timezone}",
                               field=f"{field}.contextgrid.timezone" if plan.source == "inline" else field)
        out.append(plan)
    return out


def current_plan(catalogue: PlanCatalogue, account: dict) -> Plan | None:
    """The account's own rate plan from the catalogue, or None when the catalogue does not have it."""
    pid = account.get("rate_plan_id")
    try:
        t = catalogue.get(pid)
    except (NotFound, InvalidInput):
        return None
    return Plan(pid, t.name or t.label or pid, t, "catalogue")
