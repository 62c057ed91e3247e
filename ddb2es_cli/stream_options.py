"""What a `ddb2es stream` run is told (StreamOptions) and what it reports: the handler's
counters per table, the periodic status of a following run, the final summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An open shard counts as caught up after this many empty pages in a row (unless a record written
# after the run started was read first). Real DynamoDB Streams answer empty pages in the middle
# of a shard, so two are not enough.
CAUGHT_UP_EMPTY_PAGES = 10


@dataclass
class StreamOptions:
    # trim-horizon | latest | an ISO 8601 time; None: trim-horizon by default, which (unlike an
    # explicit trim-horizon) refuses to go on from a trimmed checkpoint.
    start: str | None = None
    until_caught_up: bool = False
    state_path: Path | None = None
    failures_path: Path | None = Path("ddb2es-stream-failures.ndjson")
    batch_size: int = 1000
    poll_interval: float = 1.0
    caught_up_empty_pages: int = CAUGHT_UP_EMPTY_PAGES
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    # Told every status_interval seconds how far the run is (StreamStatus); the CLI prints it.
    status: Callable[[StreamStatus], None] | None = None
    status_interval: float = 10.0


@dataclass
class TableStreamStats:
    """The deployed handler's counters (stream_observe.py), summed over the run.

    `failed`: permanent failures (PermanentFailures); `retried`: records not applied on a try
    and tried again (RetryableFailures); `lag_seconds`: now minus the newest
    ApproximateCreationDateTime of the last page applied (ReplicationLag), None before one.
    """

    table: str
    stream_arn: str
    shards: int = 0
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    failed: int = 0
    retried: int = 0
    lag_seconds: float | None = None


@dataclass(frozen=True)
class StreamStatus:
    """One status report of a following run: what was applied since the last one, and totals.

    `lag_seconds`: age of the newest record applied since the last report (None: idle).
    """

    applied: int
    records: int
    indexed: int
    deleted: int
    conflicts: int
    failed: int
    retried: int
    lag_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class StreamSummary:
    tables: dict[str, TableStreamStats]
    failures: int = 0
    failures_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [vars(t) for t in self.tables.values()],
            "failures": self.failures,
            "failures_path": self.failures_path if self.failures else None,
        }
