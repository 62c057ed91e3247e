"""What a reindex run is given and gives back: its options, its plan (the tables as DynamoDB
describes them), its summary, and the progress protocol the CLI draws bars from."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR
from ddb2es_cli.config import DEFAULT_PAGE_LIMIT, TableSettings
from ddb2es_cli.failures import Failure
from ddb2es_cli.segments import default_load_segments
from ddb2es_cli.sink import BulkOptions, IndexStats
from ddb2es_cli.source import TableInfo, describe_table
from ddb2es_cli.transform import TableShape


@dataclass
class ReindexOptions:
    segments: int = field(default_factory=default_load_segments)
    bulk: BulkOptions = field(default_factory=BulkOptions)
    max_rcu: float | None = None
    bulk_load_settings: bool | None = None  # None: only for indices this run creates
    failures_path: Path | None = Path("ddb2es-failures.ndjson")
    state_path: Path | None = None  # default: .ddb2es/reindex-<tables>.json
    resume: bool = False
    page_limit: int | None = DEFAULT_PAGE_LIMIT  # None: DynamoDB's own 1 MB pages
    fast_decode: bool = True
    refresh: bool = True
    # Documents of index X go to X + suffix (blue/green loads into new generations).
    index_suffix: str = ""
    # More settings for the load, restored afterwards like the others (e.g. index.gc_deletes).
    extra_load_settings: dict[str, Any] = field(default_factory=dict)
    # A full S3 export to read instead of scanning (runs of workers; one process: pages_from).
    from_export: str | None = None
    max_read_mbps: float | None = None  # this worker's cap on export bytes read per second


@dataclass
class TableSummary:
    table: str
    estimated_items: int
    scanned: int = 0
    indexed: int = 0
    conflicts: int = 0
    failed: int = 0
    gone: int = 0  # late writes whose item was deleted meanwhile (re-read, not sent)
    rcu: float = 0.0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def as_dict(self) -> dict[str, Any]:
        rate = self.scanned / self.duration if self.duration > 0 else 0.0
        return {
            "table": self.table,
            "estimated_items": self.estimated_items,
            "scanned": self.scanned,
            "indexed": self.indexed,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "gone": self.gone,
            "rcu": round(self.rcu, 1),
            "duration_s": round(self.duration, 2),
            "items_per_s": round(rate, 1),
        }


@dataclass
class ReindexSummary:
    tables: dict[str, TableSummary]
    indices: dict[str, IndexStats]
    failures: int
    failures_path: str | None
    failure_examples: list[Failure]
    restored: list[str]
    resumed: bool
    created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [t.as_dict() for t in self.tables.values()],
            "indices": {name: vars(s) for name, s in sorted(self.indices.items())},
            "failures": self.failures,
            "failures_path": self.failures_path if self.failures else None,
            "restored_settings": self.restored,
            "created_indices": self.created,
            "resumed": self.resumed,
        }


@dataclass
class TablePlan:
    settings: TableSettings
    info: TableInfo
    shape: TableShape

    def as_dict(self, segments: int) -> dict[str, Any]:
        return {
            "table": self.info.name,
            "hash_key": self.info.hash_key,
            "range_key": self.info.range_key,
            "estimated_items": self.info.item_count,
            "segments": segments,
            "type_attribute": self.shape.type_attribute,
            "index_prefix": self.shape.index_prefix,
            "default_index": (self.shape.index_prefix + self.shape.default_type).lower(),
        }


def plan_reindex(ddb: Any, tables: list[TableSettings]) -> list[TablePlan]:
    """What a run would read; reads only table descriptions (the `--dry-run` output)."""
    plans = []
    for table in tables:
        info = describe_table(ddb, table.name)
        plans.append(TablePlan(table, info, table.shape(info.hash_key, info.range_key)))
    return plans


def state_path_for(tables: list[TableSettings], state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    names = ",".join(sorted(t.name for t in tables))
    digest = hashlib.sha256(names.encode()).hexdigest()[:12]
    return state_dir / f"reindex-{digest}.json"


class Progress(Protocol):
    """Where progress goes (the CLI draws bars); the core knows nothing of terminals.

    `done`: items a resumed run scanned before (the bar starts there, not at 0)."""

    def start(self, table: str, estimated_items: int, done: int = 0) -> None: ...

    def advance(self, table: str, items: int) -> None: ...


class _NoProgress:
    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        pass

    def advance(self, table: str, items: int) -> None:
        pass
