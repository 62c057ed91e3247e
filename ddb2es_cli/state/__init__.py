"""Where a run's shared state lives: run records, work units with leases and checkpoints,
settings to restore, worker heartbeats. Two backends behind one small protocol:

- `FileState` (`.ddb2es/runs/<id>/`): one machine, ownership by `fcntl.flock` (the OS drops a
  dead process's locks, which is the file backend's lease);
- `DynamoState` (a DynamoDB table, key `pk` + `sk`): any number of machines, ownership by
  conditional writes and lease counters, the way the Kinesis Client Library shares shards.

Work units are generic: `(table, number, total)` plus an opaque JSON `position` (for scans the
LastEvaluatedKey in state form), so readers other than Scan can plug in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddb2es_cli.state.records import (
    DEFAULT_LEASE_SECONDS,
    LeaseLost,
    RunRecord,
    StateBackend,
    StateLost,
    UnitRecord,
    WorkerRecord,
    new_run_id,
    new_worker_id,
)

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "LeaseLost",
    "RunRecord",
    "StateBackend",
    "StateLost",
    "UnitRecord",
    "WorkerRecord",
    "new_run_id",
    "new_worker_id",
    "open_state",
]


def open_state(
    table: str | None,
    ddb: Any = None,
    state_dir: Path | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> StateBackend:
    """The DynamoDB backend when a state table is named (checked: exists, right key schema),
    else the local file backend."""
    if table:
        from ddb2es_cli.state.dynamo import DynamoState

        backend = DynamoState(ddb, table, lease_seconds)
        backend.check()
        return backend
    from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR
    from ddb2es_cli.state.file import FileState

    return FileState(state_dir or DEFAULT_STATE_DIR, lease_seconds)
