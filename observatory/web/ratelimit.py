"""Per-caller rate limits kept in memory: token buckets keyed by probe name or by a keyed hash of the address.

An address is never stored: the key is an HMAC with a random secret made at start-up, so the table cannot be
turned back into addresses, and it is forgotten on restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class KeyedLimiter:
    def __init__(self, *, rate: float, burst: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, cost: float = 1.0) -> tuple[bool, float]:
        """(allowed, seconds to wait before retrying)."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= cost
            if ok:
                tokens -= cost
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)  # forget the least recently seen caller
            return ok, 0.0 if ok else (cost - tokens) / self.rate


class AddressKeys:
    """Turns an address into a key that cannot be turned back: HMAC with a secret made at start-up."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)

    def __call__(self, address: str) -> str:
        return hmac.new(self._secret, address.encode(), hashlib.sha256).hexdigest()[:24]
