"""``Settings``: every setting of a grid and its gateway in one object, built by the CLI (``contextgrid serve``)
and handed to both ``grid.cluster.Grid`` and ``grid.gateway.app.create_app``.

User data lives under ``data_dir``: the partition table, shard logs and snapshots, the tariff catalogue
(``<data_dir>/tariffs``, seeded from the shipped ``rules/tariffs`` on first start, see grid.tariffs) and the
keys file (``<data_dir>/keys.yaml``). Nothing the grid writes goes into the source tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grid.timegrid import DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from grid.contacts.config import ContactsConfig
    from grid.gateway.limits import LimitsConfig

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"  # shipped rule sets (read, reloaded; never written)


@dataclass
class Settings:
    # -- where data lives
    data_dir: str = "data/grid"
    tariff_dir: str | None = None  # default <data_dir>/tariffs (the grid's data dir when the gateway starts)
    keys_file: str | None = None  # `serve` defaults it to <data_dir>/keys.yaml
    rules_dir: str = str(RULES_DIR)
    green_factors_file: str | None = None  # emissions factors for green metrics (YAML/JSON)
    timezone: str = DEFAULT_TIMEZONE  # the utility's zone: schedules, and tariffs that name none
    # -- the grid (Ray, shards, durability)
    shards: int = 2
    address: str | None = None
    namespace: str = "contextgrid"
    call_timeout_s: float = 30.0
    request_timeout_s: float = 5.0  # one customer's call; past it the gateway answers 503 (never a hang)
    num_cpus: int | None = None
    move_wait_s: float = 10.0  # longest a request waits for its partition to finish moving before a 503
    fsync: str = "batch"  # WAL policy of every shard: always | batch | off
    move_batch: int = 8  # partitions moved per pause: bounds how long any one customer waits
    wal_segment_bytes: int = 64 << 20  # a shard's WAL starts a new segment past this size
    # -- the gateway
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1 << 20  # 1 MiB: a month of 15-minute readings for a few meters fits
    near_cache_ttl_s: float = 30.0  # upper bound on staleness if a shard's change log cannot be read
    invalidate_interval_s: float = 0.1  # how often shards' change logs are polled
    near_cache_capacity: int = 100_000
    classify_on_start: bool = False  # `contextgrid serve` turns it on: classify the base once serving
    limits: LimitsConfig | None = None  # per-key rates and concurrency (grid.gateway.limits); None = defaults
    contacts: ContactsConfig | None = None  # message delivery (grid.contacts.config); None sends nothing

    def tariffs_path(self, data_dir: str | Path | None = None) -> Path:
        """The tariff catalogue's directory (``data_dir`` overrides this object's, e.g. the grid's)."""
        return Path(self.tariff_dir) if self.tariff_dir else Path(data_dir or self.data_dir) / "tariffs"

    def keys_path(self) -> Path:
        return Path(self.keys_file) if self.keys_file else Path(self.data_dir) / "keys.yaml"
