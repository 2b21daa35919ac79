"""Per-key limits: a token bucket per API key (rate and burst by role) and a cap on the heavy computations one
key may have in flight, so no single key can take the gateway or a shard for itself.

Both are checked by the contract middleware right after authentication, before parameters are read: a key
over its rate gets 429 with ``Retry-After`` (the seconds until its bucket holds a token again); a key already
running ``heavy_per_key`` what-ifs, forecasts or rate checks gets 429 for the next one, with ``Retry-After: 1``.
State is per key id, so its size is bounded by the keys file, never by what callers send.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from grid.errors import TooManyRequests

# operationIds that price 12 months of usage or bill a caller-given series: CPU-heavy on a shard or here
HEAVY = frozenset({"post_scenarios", "get_forecast", "get_green", "get_current_bill", "post_calculate"})

# (tokens per second, burst); None = unlimited. Operators run the utility's own batch tools.
DEFAULT_RATES: dict[str, tuple[float, int] | None] = {"operator": None, "agent": (200.0, 1000), "customer": (50.0, 300)}


@dataclass(frozen=True)
class LimitsConfig:
    rates: dict[str, tuple[float, int] | None] = field(default_factory=lambda: dict(DEFAULT_RATES))
    heavy_per_key: int = 4  # heavy operations one key may have in flight at once
    bill_runs: int = 1  # bill runs at once, over all keys (409 beyond: a run reads every shard)
    jobs_keep_s: float = 3600.0  # how long a finished job (and its report) can still be read


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, burst: int, now: float):
        self.tokens, self.at = float(burst), now


class Limiter:
    """The buckets and in-flight counts of every key; one per gateway."""

    def __init__(self, config: LimitsConfig | None = None, clock=time.monotonic):
        self.config = config or LimitsConfig()
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._heavy: dict[str, int] = {}

    def admit(self, key_id: str, role: str) -> None:
        """Take one token from the key's bucket, or raise :class:`TooManyRequests` saying when to retry."""
        rate = self.config.rates.get(role)
        if rate is None:
            return
        per_s, burst = rate
        now = self._clock()
        b = self._buckets.get(key_id)
        if b is None:
            b = self._buckets[key_id] = _Bucket(burst, now)
        b.tokens = min(float(burst), b.tokens + (now - b.at) * per_s)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return
        wait = max(1, math.ceil((1.0 - b.tokens) / per_s))
        raise TooManyRequests(f"key {key_id!r} is over its rate of {per_s:g} requests/s; retry after {wait} s",
                              field="Authorization", retry_after=wait)

    @contextmanager
    def heavy(self, key_id: str):
        """Hold one of the key's heavy slots for the duration of the block."""
        n = self._heavy.get(key_id, 0)
        if n >= self.config.heavy_per_key:
            raise TooManyRequests(f"key {key_id!r} already has {n} computations running; retry after 1 s",
                                  field="Authorization", retry_after=1)
        self._heavy[key_id] = n + 1
        try:
            yield
        finally:
            left = self._heavy[key_id] - 1
            if left:
                self._heavy[key_id] = left
            else:
                del self._heavy[key_id]
