"""Typed application keys (aiohttp ``web.AppKey``) shared by the gateway's modules."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from grid.cluster import Grid
    from grid.gateway.auth import KeyStore
    from grid.gateway.config import GatewayConfig
    from grid.gateway.jobs import Jobs
    from grid.gateway.limits import Limiter
    from grid.rules import ActiveRules
    from grid.gateway.metrics import Metrics
    from grid.gateway.reads import Reads
    from grid.gateway.validation import Contract
    from grid.tariffs import TariffCatalogue

GRID: web.AppKey["Grid"] = web.AppKey("grid")
KEYS: web.AppKey["KeyStore"] = web.AppKey("keys")
CONTRACT: web.AppKey["Contract"] = web.AppKey("contract")
CONFIG: web.AppKey["GatewayConfig"] = web.AppKey("config")
READS: web.AppKey["Reads"] = web.AppKey("reads")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
JOBS: web.AppKey["Jobs"] = web.AppKey("jobs")
LIMITS: web.AppKey["Limiter"] = web.AppKey("limits")
RULES: web.AppKey["ActiveRules"] = web.AppKey("rules")
CLASSIFIED: web.AppKey[dict] = web.AppKey("classified")
TARIFFS: web.AppKey["TariffCatalogue"] = web.AppKey("tariffs")  # the grid's catalogue (grid.tariffs)

if TYPE_CHECKING:
    from grid.gateway.auth import Principal

PRINCIPAL: web.RequestKey["Principal"] = web.RequestKey("principal")
PARAMS: web.RequestKey[dict] = web.RequestKey("params")
BODY: web.RequestKey[object] = web.RequestKey("body")
FORMAT: web.RequestKey[str] = web.RequestKey("format")  # the negotiated response media type
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")  # quoted by problems, logged with errors
