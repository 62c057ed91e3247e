"""`apply-export`: incremental exports applied like stream records, for tables without Streams.

Each line (`Keys`, `NewImage`, `OldImage`, `Metadata.WriteTimestampMicros`) becomes the stream
record it stands for and goes through the stream handler's own `apply_batch`: upserts, deletes
and TYPE changes are routed exactly as the handler routes them, versioned by the write's time
in microseconds. Exports must form a chain (each `exportFromTime` is the previous
`exportToTime`); the (file, line) reached is checkpointed, so a rerun continues.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, damaged, write_json_atomic
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.export.location import ByteLimiter, ExportError
from ddb2es_cli.export.manifest import NEW_AND_OLD_IMAGES, Export
from ddb2es_cli.export.reader import Record, file_records
from ddb2es_cli.sink import Failure, FailureLog
from ddb2es_cli.stream import StreamConfig, StreamResult, apply_batch

DEFAULT_BATCH = 500


class ChainGap(ConfigError):
    """Incremental exports that do not follow one another (exit 2)."""


@dataclass
class ApplySummary:
    exports: int = 0
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0
    failures: int = 0
    resumed: bool = False
    failure_examples: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "exports": self.exports,
            "records": self.records,
            "indexed": self.indexed,
            "deleted": self.deleted,
            "conflicts": self.conflicts,
            "skipped": self.skipped,
            "failures": self.failures,
            "resumed": self.resumed,
        }

    def add(self, result: StreamResult) -> None:
        self.records += result.records
        self.indexed += result.indexed
        self.deleted += result.deleted
        self.conflicts += result.conflicts
        self.skipped += result.skipped


def check_chain(exports: list[Export]) -> list[Export]:
    """The exports in time order; refuses a full export, an unusable view, or a gap."""
    for export in exports:
        if not export.incremental:
            raise ConfigError(
                f"{export.url} is a full export: load it with `ddb2es reindex TABLE "
                "--from-export URL`"
            )
        if export.output_view not in (None, NEW_AND_OLD_IMAGES):
            raise ConfigError(
                f"{export.url} has view {export.output_view}: deletes and TYPE changes need "
                f"old images; request {NEW_AND_OLD_IMAGES}"
            )
    ordered = sorted(exports, key=lambda e: (e.from_time_ms or 0, e.to_time_ms or 0))
    for before, after in pairwise(ordered):
        if after.from_time_ms != before.to_time_ms:
            raise ChainGap(
                f"incremental exports do not form a chain: {after.url} starts at "
                f"{_iso(after.from_time_ms)} but {before.url} ends at {_iso(before.to_time_ms)}"
            )
    return ordered


def _iso(ms: int | None) -> str:
    from datetime import UTC, datetime

    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def incremental_problem(record: Record) -> str | None:
    if not isinstance(record.get("Keys"), dict):
        return "has no Keys"
    micros = record.get("Metadata", {}).get("WriteTimestampMicros")
    value = micros.get("N") if isinstance(micros, dict) else micros
    if not (isinstance(value, str | int) and str(value).isdigit()):
        return "has no Metadata.WriteTimestampMicros"
    if "NewImage" not in record and "OldImage" not in record:
        return f"has neither NewImage nor OldImage (the export's view must be {NEW_AND_OLD_IMAGES})"
    return None


def stream_record(record: Record, table: str, sequence: str) -> dict[str, Any]:
    """The stream record a line stands for (the shape `stream.apply_batch` reads)."""
    micros = record["Metadata"]["WriteTimestampMicros"]
    micros = int(micros["N"] if isinstance(micros, dict) else micros)
    new, old = record.get("NewImage"), record.get("OldImage")
    event = "MODIFY" if new is not None and old is not None else "INSERT" if new else "REMOVE"
    data: dict[str, Any] = {
        "Keys": record["Keys"],
        "ApproximateCreationDateTime": Decimal(micros) / 1_000_000,
        "StreamViewType": NEW_AND_OLD_IMAGES,
        "SequenceNumber": sequence,
    }
    if new is not None:
        data["NewImage"] = new
    if old is not None:
        data["OldImage"] = old
    return {
        "eventName": event,
        "eventSourceARN": f"arn:aws:dynamodb:export:000000000000:table/{table}/stream/export",
        "dynamodb": data,
    }


def apply_state_path(table: str, urls: list[str], state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    text = "\n".join([table, *(u.rstrip("/") for u in urls)])
    return state_dir / f"apply-export-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"


class _Progress:
    """(file, lines done, done) per export url; saved atomically after every applied batch."""

    def __init__(self, path: Path, chain: list[str]) -> None:
        self.path, self.chain = path, chain
        self.files: dict[str, dict[str, dict[str, Any]]] = {}
        self.resumed = False
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise damaged(path, exc) from None
        if data.get("chain") == chain:
            self.files = data.get("exports", {})
            self.resumed = True

    def lines(self, url: str, number: int) -> tuple[int, bool]:
        entry = self.files.get(url, {}).get(str(number), {})
        return int(entry.get("line", 0)), bool(entry.get("done", False))

    def save(self, url: str, number: int, line: int, done: bool) -> None:
        self.files.setdefault(url, {})[str(number)] = {"line": line, "done": done}
        write_json_atomic(self.path, {"chain": self.chain, "exports": self.files})


def apply_exports(
    es: Any,
    settings: Settings,
    table: TableSettings,
    exports: list[Export],
    *,
    state_path: Path | None = None,
    failures_path: Path | None = None,
    batch_size: int = DEFAULT_BATCH,
    limiter: ByteLimiter | None = None,
) -> ApplySummary:
    """Apply a chain of incremental exports of `table`, in order, from where a previous run
    stopped. Permanent failures (a document the engine refused) are written to the failures
    file; anything a retry can fix stops the run with the checkpoint before it."""
    ordered = check_chain(exports)
    for export in ordered:
        if export.table is not None and export.table != table.name:
            raise ConfigError(f"{export.url} is an export of {export.table!r}, not {table.name!r}")
    urls = [e.url for e in ordered]
    path = state_path or apply_state_path(table.name, urls)
    progress = _Progress(path, urls)
    config = StreamConfig(
        table.type_attribute,
        table.default_type,
        table.index_prefix,
        deployment=settings.deployment_name,
    )
    summary = ApplySummary(exports=len(ordered), resumed=progress.resumed)
    failures = FailureLog(failures_path)
    try:
        for export in ordered:
            for data_file in export.files:
                start, done = progress.lines(export.url, data_file.number)
                if done:
                    continue
                batch: list[dict[str, Any]] = []
                last = start
                records = file_records(export, data_file, incremental_problem, limiter, skip=start)
                for number, record in records:
                    sequence = f"{data_file.name}:{number}"
                    batch.append(stream_record(record, table.name, sequence))
                    last = number
                    if len(batch) == batch_size:
                        _apply(es, batch, config, summary, failures)
                        progress.save(export.url, data_file.number, last, False)
                        batch = []
                # The file checked out (MD5, count): its last batch marks it done.
                _apply(es, batch, config, summary, failures)
                progress.save(export.url, data_file.number, last, True)
    finally:
        failures.close()
    summary.failures = failures.count
    summary.failure_examples = failures.examples
    path.unlink(missing_ok=True)
    return summary


def _apply(
    es: Any,
    batch: list[dict[str, Any]],
    config: StreamConfig,
    summary: ApplySummary,
    failures: FailureLog,
) -> None:
    if not batch:
        return
    result = apply_batch(es, batch, config)
    if result.refused or result.retryable:
        reason = result.refused or result.retryable[0].reason
        raise ExportError(
            f"apply-export stopped: {reason}; progress is saved: rerun the same command"
        )
    summary.add(result)
    for failure in result.failed:
        failures.write(
            Failure(failure.table or "?", failure.keys, failure.index, None, failure.reason)
        )
