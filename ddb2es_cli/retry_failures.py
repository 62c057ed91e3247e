"""`reindex --retry-failures FILE`: another go at the documents a run could not write.

A failed document advanced its checkpoint (a resume must not loop on it), so nothing else would
ever write it again. This re-reads each key of the failures file with a consistent read and writes
the item with a fresh version; the file is rewritten with what still fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import open_private
from ddb2es_cli.config import Settings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.sink import BulkOptions, BulkWriter, Failure, failure_line, index_action
from ddb2es_cli.source import Key, describe_table, get_items_consistently
from ddb2es_cli.transform import TransformError, repair_version, to_document


@dataclass
class RetrySummary:
    path: str
    retried: int = 0
    written: int = 0
    conflicts: int = 0  # a newer write had landed meanwhile: nothing left to do
    gone: int = 0  # the item was deleted since: nothing to write
    still_failing: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "failures_path": self.path,
            "retried": self.retried,
            "written": self.written,
            "conflicts": self.conflicts,
            "gone": self.gone,
            "still_failing": len(self.still_failing),
        }


def read_failures(path: Path) -> list[Failure]:
    """The failures file's lines; a line that is no failure record is a clear error."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read failures file {path}: {exc.strerror}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_float=Decimal)
            out.append(
                Failure(
                    data["table"], data["key"], data.get("index"), data.get("id"), data["reason"]
                )
            )
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path} line {number} is not a ddb2es failure record (table, key, reason)"
            ) from None
    return out


def retry_failures(
    ddb: Any, es: Any, settings: Settings, path: Path, bulk: BulkOptions | None = None
) -> RetrySummary:
    failures = read_failures(path)
    summary = RetrySummary(str(path), retried=len(failures))
    by_table: dict[str, list[Failure]] = {}
    for failure in failures:
        by_table.setdefault(failure.table, []).append(failure)
    writer = BulkWriter(es, bulk or BulkOptions())
    for table, group in by_table.items():
        results = writer.write(_actions(ddb, settings, table, group, summary))
        for result in results:
            failed: Failure = result.tag
            if result.error is None:
                summary.written += 1
            elif result.status == 409:
                summary.conflicts += 1
            else:
                reason = f"{result.status} {result.error}"
                summary.still_failing.append(
                    Failure(failed.table, failed.key, result.index, result.id, reason)
                )
    _rewrite(path, summary.still_failing)
    return summary


def _actions(
    ddb: Any, settings: Settings, table: str, group: list[Failure], summary: RetrySummary
) -> Iterator[tuple[Any, Failure]]:
    try:
        info = describe_table(ddb, table)
    except Ddb2esError as exc:
        summary.still_failing += [_again(f, str(exc)) for f in group]
        return
    shape = settings.table(table).shape(info.hash_key, info.range_key)
    readable: list[tuple[Failure, Key]] = []
    for failure in group:
        key = info.request_key(failure.key)
        if key is None:
            summary.still_failing.append(_again(failure, "not a key of this table"))
        else:
            readable.append((failure, key))
    fresh = get_items_consistently(ddb, table, [key for _f, key in readable])
    for (failure, _key), (item, read_ms) in zip(readable, fresh, strict=True):
        if item is None:
            summary.gone += 1
            continue
        try:
            doc = to_document(item, shape)
        except TransformError as exc:
            summary.still_failing.append(_again(failure, f"{exc.reason}: {exc.detail}"))
            continue
        yield index_action(doc, repair_version(read_ms, settings.repair_margin)), failure


def _again(failure: Failure, reason: str) -> Failure:
    return Failure(failure.table, failure.key, failure.index, failure.id, reason)


def _rewrite(path: Path, failures: list[Failure]) -> None:
    """Temp file + rename: a kill -9 leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open_private(tmp, "w") as handle:
        for failure in failures:
            handle.write(failure_line(failure) + "\n")
    os.replace(tmp, path)
