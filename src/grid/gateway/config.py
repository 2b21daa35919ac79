"""Gateway settings (CLI flags and environment)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grid.contacts.config import ContactsConfig


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    keys_file: str | None = None
    max_body_bytes: int = 1 << 20  # 1 MiB: a month of 15-minute readings for a few meters fits
    near_cache_ttl_s: float = 30.0  # upper bound on staleness if a shard's change log cannot be read
    invalidate_interval_s: float = 0.1  # how often shards' change logs are polled
    tariff_dir: str = str(Path(__file__).resolve().parents[3] / "rules" / "tariffs")
    classify_on_start: bool = False  # `contextgrid serve` turns it on: classify the base once serving
    green_factors_file: str | None = None  # emissions factors for green metrics (YAML/JSON)
    rules_dir: str = str(Path(__file__).resolve().parents[3] / "rules")
    near_cache_capacity: int = 100_000
    contacts: "ContactsConfig | None" = None  # message delivery (grid.contacts.config); None: nothing is sent
