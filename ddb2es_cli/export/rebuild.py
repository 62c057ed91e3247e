"""`reindex --from-export`: a full export as the page source of an ordinary reindex run."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.export.location import ByteLimiter, make_s3_client, open_location
from ddb2es_cli.export.manifest import Export, load_export
from ddb2es_cli.export.reader import export_reader
from ddb2es_cli.source import CapacityLimiter, Page, Reader, SegmentTask, scan_pages

if TYPE_CHECKING:
    from ddb2es_cli.config import Settings
    from ddb2es_cli.reindex import ReindexOptions


@dataclass
class ExportSource:
    """What `run_reindex` needs to read an export instead of scanning: its units (one per
    data file), a state file of its own and the pages factory."""

    export: Export
    segments: int
    state_path: Path
    pages_from: Callable[[list[SegmentTask]], Generator[Page, None, None]]
    reader: Reader  # what pages_from reads each task with (several exports share threads)


def export_source(
    url: str,
    table: str,
    s3_client: Callable[[], Any],
    *,
    workers: int,
    page_limit: int | None,
    max_read_mbps: float | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> ExportSource:
    """Reads and checks the manifests; refuses an incremental export or one of another table."""
    return source_of(
        full_export(url, table, s3_client),
        table,
        workers=workers,
        page_limit=page_limit,
        max_read_mbps=max_read_mbps,
        state_dir=state_dir,
    )


def source_of(
    export: Export,
    table: str,
    *,
    workers: int,
    page_limit: int | None,
    max_read_mbps: float | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> ExportSource:
    """The source of an export whose manifests are read (see `full_export`)."""
    limiter = ByteLimiter(max_read_mbps * 1_000_000 if max_read_mbps else None)
    reader = export_reader(export, page_limit=page_limit, limiter=limiter)

    def pages_from(tasks: list[SegmentTask]) -> Generator[Page, None, None]:
        return scan_pages(None, tasks, workers=workers, reader=reader)

    digest = hashlib.sha256(f"{table}\n{export.url.rstrip('/')}".encode()).hexdigest()[:12]
    return ExportSource(
        export,
        max(1, len(export.files)),
        state_dir / f"reindex-export-{digest}.json",
        pages_from,
        reader,
    )


def several_exports(
    sources: dict[str, ExportSource], workers: int
) -> Callable[[list[SegmentTask]], Generator[Page, None, None]]:
    """One page source over the exports of several tables (each task read by its table's
    export), so one run loads them all with the same threads."""

    def read(task: SegmentTask, stop: threading.Event) -> Iterator[Page]:
        return sources[task.table].reader(task, stop)

    def pages_from(tasks: list[SegmentTask]) -> Generator[Page, None, None]:
        return scan_pages(None, tasks, workers=workers, reader=read)

    return pages_from


def full_export(url: str, table: str, s3_client: Callable[[], Any]) -> Export:
    return check_full(load_export(open_location(url, s3_client)), table)


def check_full(export: Export, table: str) -> Export:
    """Refuses an incremental export, or one of another table than `table`."""
    if export.incremental:
        raise ConfigError(
            f"{export.url} is an incremental export: apply it with `ddb2es apply-export`"
        )
    if export.table is not None and export.table != table:
        raise ConfigError(f"{export.url} is an export of table {export.table!r}, not of {table!r}")
    return export


def unit_reader(
    settings: Settings, url: str, tables: list[str]
) -> Callable[[Any, ReindexOptions, CapacityLimiter], Reader]:
    """The reader of a run of workers over an export (`scale.work`'s `reader`): each worker
    opens the export itself, checks its manifests again and reads the files its units name."""
    if len(tables) != 1:
        raise ConfigError("--from-export takes exactly one TABLE (an export is of one table)")

    def s3_client() -> Any:
        return make_s3_client(
            settings.s3_endpoint, settings.dynamodb.region, settings.dynamodb.profile
        )

    def make(_client: Any, options: ReindexOptions, _limiter: CapacityLimiter) -> Reader:
        export = full_export(url, tables[0], s3_client)
        rate = options.max_read_mbps
        limiter = ByteLimiter(rate * 1_000_000 if rate else None)
        return export_reader(export, page_limit=options.page_limit, limiter=limiter)

    return make
