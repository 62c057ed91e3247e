"""Data files -> verified records, and the page source `reindex --from-export` reads.

A data file is read as one stream (gzip, line by line); its MD5 is computed from the bytes as
they pass. A file's final page (the one that marks it done) is handed out only after the whole
file was read and its MD5 and item count matched, so nothing half-read is ever reported done.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, cast

from ddb2es_cli.export.location import ByteLimiter, CountingReader, ExportError
from ddb2es_cli.export.manifest import DataFile, Export
from ddb2es_cli.source import Page, Reader, SegmentTask, scan_pages

Record = dict[str, Any]
Check = Callable[[Record], str | None]


def full_item_problem(record: Record) -> str | None:
    return None if isinstance(record.get("Item"), dict) else "has no Item"


def file_records(
    export: Export,
    data_file: DataFile,
    check: Check,
    limiter: ByteLimiter | None = None,
    skip: int = 0,
) -> Iterator[tuple[int, Record]]:
    """(line number, record) for every line after the first `skip`, then the checks of the file
    as a whole: the generator raises rather than end on a file that does not check out."""
    where = f"{export.url}: data file {data_file.key}"
    digest = hashlib.md5(usedforsecurity=False)
    raw = CountingReader(
        export.location.open_data(data_file.key), digest.update, limiter or ByteLimiter(None)
    )
    lines = 0
    try:
        stream = gzip.GzipFile(fileobj=cast(Any, raw), mode="rb")
        try:
            for line in stream:
                if not line.strip():
                    continue
                lines += 1
                if lines <= skip:
                    continue
                yield lines, _parse(line, check, where, lines)
        except (EOFError, OSError, zlib.error) as exc:
            reason = "is truncated" if isinstance(exc, EOFError) else f"is not valid gzip ({exc})"
            raise ExportError(f"{where} {reason} (after line {lines})") from None
        raw.drain()
    finally:
        raw.close()
    md5 = base64.b64encode(digest.digest()).decode("ascii")
    if md5 != data_file.md5:
        raise ExportError(
            f"{where}: MD5 {md5} does not match the manifest's {data_file.md5} "
            "(damaged or replaced; copy it again)"
        )
    if lines != data_file.item_count:
        raise ExportError(
            f"{where}: {lines} items, the manifest says {data_file.item_count} (copy it again)"
        )


def _parse(line: bytes, check: Check, where: str, number: int) -> Record:
    try:
        record = json.loads(line)
    except ValueError:
        raise ExportError(f"{where} line {number} is not JSON") from None
    problem = check(record) if isinstance(record, dict) else "is not a JSON object"
    if problem is not None:
        raise ExportError(f"{where} line {number} {problem}")
    out: Record = record
    return out


def file_pages(
    export: Export,
    data_file: DataFile,
    *,
    start_line: int,
    page_limit: int,
    limiter: ByteLimiter | None = None,
) -> Iterator[tuple[list[Record], int | None]]:
    """(items, lines done) per page; lines done is None on the last page, which comes only
    after the file checked out (one item of look-ahead tells a page from the last one)."""
    records = file_records(export, data_file, full_item_problem, limiter, skip=start_line)
    page: list[Record] = []
    last = start_line
    for number, record in records:
        if len(page) == page_limit:
            yield page, last
            page = []
        page.append(record["Item"])
        last = number
    yield page, None


def export_tasks(export: Export, table: str) -> list[SegmentTask]:
    """One task per data file, in manifest order (the reindex state keeps the same numbers)."""
    total = len(export.files)
    return [SegmentTask(table, f.number, total) for f in export.files]


def start_line(task: SegmentTask) -> int:
    """Lines of the task's file already acknowledged: `{"line": N}` as a work unit's position
    (runs of workers) or as the state file's key (one process); refuses a scan's key."""
    key: Any = task.position if task.position is not None else task.start_key
    if key is None or (isinstance(key, dict) and not key):
        return 0
    if isinstance(key, dict) and set(key) == {"line"} and isinstance(key["line"], int):
        return int(key["line"])
    raise ExportError(
        f"the saved state of {task.table} is not of an export run (segment {task.segment} "
        "holds a scan key): resume it without --from-export, or start over without --resume"
    )


def export_reader(
    export: Export, *, page_limit: int | None = None, limiter: ByteLimiter | None = None
) -> Reader:
    """A `source.Reader` of data files: task n reads file n from its acknowledged line on.

    Pages carry `started_ms` = the export's time (so the scan version rule applies), 0 RCU, and
    their position both as `last_key` (the one-process state file) and as `position` (a run's
    work unit); the last page of a file comes only after the file checked out."""
    limit = page_limit or 1000
    files = {f.number: f for f in export.files}

    def read(task: SegmentTask, stop: threading.Event) -> Iterator[Page]:
        if task.segment not in files:  # an export without data files: nothing to read
            yield _page(task, [], None, export.export_time_ms)
            return
        lines = start_line(task)
        data_file = files[task.segment]
        for items, done in file_pages(
            export, data_file, start_line=lines, page_limit=limit, limiter=limiter
        ):
            if stop.is_set():
                return
            yield _page(task, items, done, export.export_time_ms, data_file.item_count)

    return read


def _page(
    task: SegmentTask, items: list[Record], done: int | None, started_ms: int, lines: int = 0
) -> Page:
    key: Any = None if done is None else {"line": done}
    page = Page(task.table, task.segment, items, key, started_ms, 0.0, len(items))
    page.done = done is None
    page.position = {"line": lines if done is None else done}
    return page


def export_pages(
    export: Export,
    tasks: Sequence[SegmentTask],
    *,
    workers: int,
    page_limit: int | None = None,
    limiter: ByteLimiter | None = None,
    max_pages: int | None = None,
) -> Generator[Page, None, None]:
    """Every page of every task's data file, as they come: `source.scan_pages`'s threads,
    bounded pages and error handling, with the data-file reader in place of Scan."""
    reader = export_reader(export, page_limit=page_limit, limiter=limiter)
    return scan_pages(None, tasks, workers=workers, max_pages=max_pages, reader=reader)
