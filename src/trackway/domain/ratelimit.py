"""Token buckets: at most `rate` events a second per key, with bursts up to one second's worth."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}

    def take(self, key: object, n: int = 1) -> float:
        """Take n tokens for `key`: 0 when allowed, else the seconds to wait before retrying."""
        now = self.clock()
        tokens, stamp = self._buckets.get(key, (self.rate, now))
        tokens = min(self.rate, tokens + (now - stamp) * self.rate)
        if tokens >= n:
            self._buckets[key] = (tokens - n, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (min(n, self.rate) - tokens) / self.rate


def retry_after_seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
