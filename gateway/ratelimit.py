"""A per-network token bucket for the writes anyone may make (`POST`/`DELETE /consent`).

Every visitor may record consent, so the consent API takes anonymous writes; each one
is a store row, a cookie signature and, with webhooks, an outgoing notice. One client
sending hundreds a second fills the store and drowns the receivers. `NetworkLimiter`
lets each network (IPv4 /24, IPv6 /48: one household or one host's range, the same
truncation the logs use) make `per_minute` writes a minute, in bursts of up to that
many, and answers False past it (the caller sends 429 with `Retry-After`).

Networks are tracked in a bounded TTL cache: memory stays fixed however many networks
write, and a network idle for a minute starts again with a full bucket. Pure apart
from the clock, which the caller passes in; not thread-safe (one event loop).
"""

from __future__ import annotations

import math
from typing import Final

from cachetools import TTLCache

from gateway.transform_headers import truncate_ip

__all__ = ["NetworkLimiter"]

#: networks tracked at once; past it the least recently used are forgotten (they restart full)
_MAX_NETWORKS: Final = 65_536
#: the key for a request whose address is unknown: such requests share one bucket
_UNKNOWN: Final = "-"


class NetworkLimiter:
    """`allow(ip, now)`: may this network make one more write now?"""

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0  # tokens per second
        # An idle network refills in 60 s: after that its entry carries no information.
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(_MAX_NETWORKS, ttl=60.0)

    def allow(self, ip: str | None, now: float) -> bool:
        """Take one token from `ip`'s network; False (nothing taken) when it has none."""
        key = (truncate_ip(ip) if ip else None) or _UNKNOWN
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + max(0.0, now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def retry_after(self, ip: str | None, now: float) -> int:
        """Whole seconds until `ip`'s network has a token again (at least 1)."""
        key = (truncate_ip(ip) if ip else None) or _UNKNOWN
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + max(0.0, now - last) * self._rate)
        return max(1, math.ceil((1.0 - tokens) / self._rate))
