"""
Request rates: a token bucket per operation and account (and Region), as AWS meters its API.

Clean Rooms publishes a default of 5 requests per second per operation, account and Region. Each
bucket refills at ``Limits.request_rate`` tokens a second up to ``Limits.request_burst``; a call that
finds the bucket empty is answered ``ThrottlingException`` (HTTP 429) and takes no token. The bucket
runs on the emulator's clock (a monotonic clock plus the control endpoint's clock offset), so a test
can refill it by advancing the clock instead of sleeping. The control endpoint and the in-process
``call`` are never limited.

The limiter also counts every API call it sees and every call it throttled, per operation, for the
control endpoint's ``stats``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.limits import Limits


class RequestRateLimiter:
    """
    Admits or throttles each API call.

    :param limits: the limits in force (rate and burst are read at every call).
    :param clock: seconds, never going back (the emulator's monotonic clock).
    """

    def __init__(self, limits: Limits, clock: Callable[[], float]):
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        # (account, region, operation) -> [tokens, when they were counted]
        self._buckets: dict[tuple[str, str, str], list[float]] = {}
        self.requests: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()

    def admit(self, account: str, region: str, operation: str) -> bool:
        """Take a token for this call; ``False``: throttle it."""
        rate, burst = self.limits.request_rate, float(self.limits.request_burst)
        with self._lock:
            self.requests[operation] += 1
            if rate is None:
                return True
            now = self.clock()
            key = (account, region, operation)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [burst, now]
            tokens = min(burst, bucket[0] + max(0.0, now - bucket[1]) * rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return True
            bucket[0] = tokens
            self.throttled[operation] += 1
            return False

    def refill(self) -> None:
        """Every bucket full again (after the rate or burst changed)."""
        with self._lock:
            self._buckets.clear()

    def reset(self) -> None:
        """Full buckets and zero counts."""
        with self._lock:
            self._buckets.clear()
            self.requests.clear()
            self.throttled.clear()

    def counts(self) -> dict[str, dict[str, int] | int]:
        with self._lock:
            return {
                "requestsTotal": sum(self.requests.values()),
                "requestsByOperation": dict(self.requests),
                "throttledTotal": sum(self.throttled.values()),
                "throttledByOperation": dict(self.throttled),
            }
