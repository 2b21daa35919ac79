"""Which catalogue tariffs the generator assigns, by customer kind.

The catalogue (``rules/tariffs/``) is data another team edits, so the generator asks it which of its expected
ids exist and falls back within a kind rather than assuming them all: a residential solar customer goes on
``res-tou-nem`` when the catalogue has it, else on another residential plan.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from grid.errors import InvalidInput

# Plans of a kind, most wanted first; "wrong rate plan" errors swap a bill to another plan of the same kind.
FAMILIES: dict[str, tuple[str, ...]] = {
    "residential": ("res-tiered", "res-tou", "res-tou-nem"),
    "commercial": ("com-demand", "com-tou-demand"),
    "industrial": ("ind-tou-demand",),
    "public": ("public-flat",),
}


class RatePlans:
    """The catalogue ids available to the generator, and their URDB JSON (decimals kept exact)."""

    def __init__(self, tariff_dir: str | Path):
        self.dir = Path(tariff_dir)
        if not self.dir.is_dir():
            raise InvalidInput(f"tariff directory {self.dir} does not exist", field="tariff_dir")
        self.available = {p.stem for p in self.dir.glob("*.json")}
        for kind, ids in FAMILIES.items():
            if not any(i in self.available for i in ids):
                raise InvalidInput(f"tariff directory {self.dir} has none of the {kind} plans {list(ids)}",
                                   field="tariff_dir")
        self._json: dict[str, dict] = {}

    def resolve(self, wanted: str, kind: str) -> str:
        """``wanted`` if the catalogue has it, else the first available plan of ``kind``."""
        if wanted in self.available:
            return wanted
        return next(i for i in FAMILIES[kind] if i in self.available)

    def alternatives(self, plan_id: str, kind: str) -> list[str]:
        """Other available plans of the same kind (targets of a ``wrong_rate_plan`` error)."""
        return [i for i in FAMILIES[kind] if i in self.available and i != plan_id]

    def urdb(self, plan_id: str) -> dict:
        if plan_id not in self._json:
            text = (self.dir / f"{plan_id}.json").read_text()
            self._json[plan_id] = json.loads(text, parse_float=Decimal)
        return self._json[plan_id]

    def path(self, plan_id: str) -> Path:
        return self.dir / f"{plan_id}.json"


def kind_of_plan(plan_id: str) -> str:
    for kind, ids in FAMILIES.items():
        if plan_id in ids:
            return kind
    raise KeyError(plan_id)
