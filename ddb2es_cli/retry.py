"""What is worth retrying, and how long to wait: the one policy every write path shares.

docs/spec.md: 429, 502, 503, 504, timeouts and lost connections are retryable; they are retried
with capped exponential backoff and jitter and never reach a failures file. Everything else the
engine answers about a document is permanent.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
CONFLICT_STATUS = 409

_CONNECTION_ERRORS = frozenset(
    {"ConnectionError", "ConnectionTimeout", "TransportError", "SSLError", "TimeoutError"}
)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an elasticsearch-py or opensearch-py exception carries, if any."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    status = getattr(getattr(exc, "meta", None), "status", None)
    return status if isinstance(status, int) else None


def is_connection_error(exc: BaseException) -> bool:
    """No answer at all: refused, reset, timed out, TLS failure (both client libraries)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & _CONNECTION_ERRORS) and status_of(exc) is None


def is_retryable_error(exc: BaseException) -> bool:
    return status_of(exc) in RETRYABLE_STATUS or is_connection_error(exc)


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter over one streak of failures.

    `give_up_after` bounds the streak in seconds (None: until the caller is interrupted); a
    success ends the streak.
    """

    initial: float = 0.5
    cap: float = 30.0
    give_up_after: float | None = 600.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    _streak_started: float | None = field(default=None, repr=False)

    def succeeded(self) -> None:
        self.failures = 0
        self._streak_started = None

    def failed(self) -> None:
        if self._streak_started is None:
            self._streak_started = self.clock()
        self.failures += 1

    @property
    def exhausted(self) -> bool:
        if self.give_up_after is None or self._streak_started is None:
            return False
        return self.clock() - self._streak_started >= self.give_up_after

    def delay(self) -> float:
        """How long to wait before the next attempt of the current streak."""
        if not self.failures:
            return 0.0
        ceiling = min(self.cap, self.initial * 2 ** (self.failures - 1))
        return random.uniform(ceiling / 2, ceiling)
