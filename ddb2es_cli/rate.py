"""One rate limit for everything ddb2es reads: read capacity (`--max-rcu`) and export bytes
(`--max-read-mbps`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket shared by threads that may go into debt: the cost of a read (its capacity
    units, its bytes) is known only after it returns, so each thread pays afterwards and the
    next read waits until the debt is paid off. `None`: no limit."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = per_second
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._available = per_second or 0.0
        self._stamp = clock()

    def wait(self) -> None:
        if not self.per_second:
            return
        while True:
            with self._lock:
                self._refill()
                if self._available > 0:
                    return
                # A little past the point where the debt is paid: float rounding could
                # otherwise leave it a hair below zero forever.
                delay = -self._available / self.per_second + 0.001
            self._sleep(min(delay, 1.0))

    def consume(self, amount: float) -> None:
        if not self.per_second:
            return
        with self._lock:
            self._refill()
            self._available -= amount

    def _refill(self) -> None:
        assert self.per_second
        now = self._clock()
        self._available = min(
            self.per_second, self._available + (now - self._stamp) * self.per_second
        )
        self._stamp = now
