"""Gateway settings: the one ``grid.settings.Settings`` (kept under this name for existing callers)."""
from __future__ import annotations

from grid.settings import Settings as GatewayConfig

__all__ = ["GatewayConfig"]
