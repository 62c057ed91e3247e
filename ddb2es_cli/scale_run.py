"""Creating a scaled run: its record, its work units and the options every worker must share.

Nothing is read from the tables here beyond their description; workers do the reading.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ddb2es_cli.config import TableSettings
from ddb2es_cli.reindex import ReindexOptions, plan_reindex
from ddb2es_cli.segments import default_segments
from ddb2es_cli.source import TableInfo
from ddb2es_cli.state import (
    DEFAULT_LEASE_SECONDS,
    RunRecord,
    StateBackend,
    UnitRecord,
    new_run_id,
    open_state,
)

UNIT_BYTES = 256 * 1024 * 1024  # about one unit per 256 MB of table
MAX_UNITS = 1000
CHECKPOINT_EVERY = 1.0  # seconds between a unit's checkpoints (its last one is always written)
COUNTERS = ("scanned", "indexed", "conflicts", "failed", "gone", "rcu")


@dataclass(frozen=True)
class StateOptions:
    """Where a run's state lives and how long a silent worker keeps its units."""

    table: str | None = None  # None: the file backend under `state_dir`
    state_dir: Path | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def open(self, ddb: Any) -> StateBackend:
        return open_state(self.table, ddb, self.state_dir, self.lease_seconds)


def default_units(info: TableInfo) -> int:
    """Many more units than workers: 4 per core at least, about one per 256 MB, at most 1000."""
    by_size = math.ceil(info.size_bytes / UNIT_BYTES)
    return max(default_segments(), min(MAX_UNITS, by_size))


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "?"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def create_run(
    backend: StateBackend,
    ddb: Any,
    tables: list[TableSettings],
    options: ReindexOptions,
    units: int | None = None,
    command: str = "reindex",
    *,
    run_id: str | None = None,
    release_lock: bool = True,
) -> RunRecord:
    """Write the run record and its units; nothing is read from the tables yet.
    `release_lock=False`: the caller (reload) holds the run lock past the load."""
    plans = plan_reindex(ddb, tables)
    backend.check()
    run = RunRecord(
        run_id=run_id or new_run_id(),
        command=command,
        tables=[asdict(t) for t in tables],
        units={p.info.name: units or default_units(p.info) for p in plans},
        estimated_items={p.info.name: p.info.item_count for p in plans},
        options={
            "page_limit": options.page_limit,
            "bulk_load_settings": options.bulk_load_settings,
            "refresh": options.refresh,
            "index_suffix": options.index_suffix,
            "extra_load_settings": options.extra_load_settings,
            "from_export": options.from_export,
            "lease_seconds": backend.lease_seconds,
            "backend": backend.name,
            "release_lock": release_lock,
        },
        who=_who(),
        created=time.time(),
    )
    records = [
        UnitRecord(table, n, total) for table, total in run.units.items() for n in range(total)
    ]
    backend.create_run(run, records)
    return run


def tables_of(run: RunRecord) -> list[TableSettings]:
    return [TableSettings(**t) for t in run.tables]


def options_of(run: RunRecord, mine: ReindexOptions) -> ReindexOptions:
    """The run's options where every worker must agree; this worker's own for the rest
    (bulk sizes, --max-rcu, failures file)."""
    given = run.options
    return replace(
        mine,
        page_limit=given.get("page_limit", mine.page_limit),
        bulk_load_settings=given.get("bulk_load_settings", mine.bulk_load_settings),
        refresh=bool(given.get("refresh", mine.refresh)),
        index_suffix=str(given.get("index_suffix", "")),
        extra_load_settings=dict(given.get("extra_load_settings", {})),
        from_export=given.get("from_export"),
        resume=False,
    )


def worker_failures_path(path: Path | None, worker_id: str) -> Path | None:
    """One failures file per worker: processes never interleave lines."""
    if path is None:
        return None
    return path.with_name(f"{path.stem}-{worker_id}{path.suffix}")
