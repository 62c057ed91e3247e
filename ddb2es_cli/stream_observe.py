"""What the deployed stream handler tells CloudWatch: metrics in Embedded Metric Format (EMF)
and one JSON log line per invocation and per permanent failure.

Both go through Powertools for AWS Lambda (Metrics, Logger): pure Python, about 1 MB in the zip,
synchronous (EMF is printed to stdout, no agent), and the same package gives the JSON logger, so
one well-kept dependency covers both. Imported by the Lambda handler only: the CLI never pays its
import time.

The one metric dimension is the table name (from the event source ARN): never a key or a value
of an item. Failure log lines carry table, key, index and reason, never the document; every line
goes through the same redaction as the CLI's logs (redaction.py).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any, cast

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from ddb2es_cli.redaction import redact
from ddb2es_cli.stream_records import RecordFailure, StreamResult, newest_creation, table_of

NAMESPACE = "ddb2es"
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"  # Powertools' own variable, honoured here too
LOG_LEVEL_ENVS = ("DDB2ES_LOG_LEVEL", "POWERTOOLS_LOG_LEVEL")
SERVICE = "ddb2es-stream"  # also the logger's name: not under "ddb2es", whose records it would eat
DIMENSION = "TableName"
UNKNOWN_TABLE = "unknown"  # a record without an event source ARN (a hand-made test event)

# name -> unit; every invocation sends all of them (zeros too, so alarms always have data),
# ReplicationLag only when the batch had records.
METRICS: dict[str, MetricUnit] = {
    "RecordsReceived": MetricUnit.Count,
    "DocumentsIndexed": MetricUnit.Count,
    "DocumentsDeleted": MetricUnit.Count,
    "VersionConflicts": MetricUnit.Count,
    "PermanentFailures": MetricUnit.Count,
    "RetryableFailures": MetricUnit.Count,
    "BulkLatency": MetricUnit.Milliseconds,
    "ReplicationLag": MetricUnit.Milliseconds,
}


@dataclass(frozen=True)
class BatchReport:
    """One invocation, as the metrics and the invocation log line tell it."""

    table: str | None
    stream: str | None
    first_sequence: str | None
    last_sequence: str | None
    received: int
    indexed: int
    deleted: int
    conflicts: int
    skipped: int
    permanent_failures: int
    retryable_failures: int
    bulk_ms: float
    lag_ms: float | None
    duration_ms: float

    @classmethod
    def of(
        cls,
        records: Sequence[Mapping[str, Any]],
        result: StreamResult,
        permanent: int,
        started: float,
        now: float | None = None,
    ) -> BatchReport:
        """`permanent`: failures passed over (not those retried because the destination failed);
        `started`: time.monotonic() when the invocation began; `now`: epoch seconds."""
        newest = newest_creation(records)
        now = time.time() if now is None else now
        sequences = [str(r.get("dynamodb", {}).get("SequenceNumber", "")) for r in records]
        return cls(
            table=table_of(records[0]) if records else None,
            stream=str(records[0].get("eventSourceARN") or "") or None if records else None,
            first_sequence=sequences[0] if sequences else None,
            last_sequence=sequences[-1] if sequences else None,
            received=len(records),
            indexed=result.indexed,
            deleted=result.deleted,
            conflicts=result.conflicts,
            skipped=result.skipped,
            permanent_failures=permanent,
            retryable_failures=result.retry_count,
            bulk_ms=round(result.bulk_seconds * 1000, 1),
            lag_ms=None if newest is None else round(max(0.0, now - newest) * 1000),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )

    def metric_values(self) -> dict[str, float]:
        values: dict[str, float] = {
            "RecordsReceived": self.received,
            "DocumentsIndexed": self.indexed,
            "DocumentsDeleted": self.deleted,
            "VersionConflicts": self.conflicts,
            "PermanentFailures": self.permanent_failures,
            "RetryableFailures": self.retryable_failures,
            "BulkLatency": self.bulk_ms,
        }
        if self.lag_ms is not None:
            values["ReplicationLag"] = self.lag_ms
        return values


def emit_metrics(report: BatchReport) -> None:
    """One EMF document on stdout (CloudWatch turns it into metrics; no API call, no agent)."""
    metrics = EphemeralMetrics(namespace=os.environ.get(NAMESPACE_ENV) or NAMESPACE)
    metrics.add_dimension(name=DIMENSION, value=report.table or UNKNOWN_TABLE)
    for name, value in report.metric_values().items():
        metrics.add_metric(name=name, unit=METRICS[name], value=value)
    metrics.flush_metrics()


class _RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, masked like every other line ddb2es writes."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _Stdout(io.TextIOBase):
    """sys.stdout as it is at each write (Lambda and test harnesses may replace it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


_logger: Logger | None = None


def logger() -> Logger:
    """The JSON logger, its level read from the environment at each invocation."""
    global _logger
    if _logger is None:
        stream = cast("IO[str]", _Stdout())
        _logger = Logger(service=SERVICE, stream=stream, logger_formatter=_RedactingFormatter())
    level = next((os.environ[n] for n in LOG_LEVEL_ENVS if os.environ.get(n)), "INFO")
    _logger.setLevel(level.strip().upper())
    return _logger


def log_batch(report: BatchReport, context: Any = None) -> None:
    """The invocation line: counts, lag, duration, table and the stream position."""
    fields: dict[str, Any] = {"kind": "batch", **asdict(report)}
    request = getattr(context, "aws_request_id", None)
    if request:
        fields["request_id"] = request
    # Records to retry make the line a warning: an operator filtering for WARNING sees them.
    write = logger().warning if report.retryable_failures else logger().info
    write("stream batch", extra=fields)


def log_failure(failure: RecordFailure) -> None:
    """One line per permanent failure: table, key, index, reason (never the document)."""
    logger().error(
        "stream record failed permanently",
        extra={"kind": "permanent_failure", **failure.as_dict()},
    )


def report_batch(
    records: Sequence[Mapping[str, Any]],
    result: StreamResult,
    passed_over: Sequence[RecordFailure],
    started: float,
    context: Any = None,
) -> BatchReport:
    """Everything an invocation tells: failure lines, the invocation line, the metrics."""
    report = BatchReport.of(records, result, len(passed_over), started)
    for failure in result.failed:
        log_failure(failure)
    log_batch(report, context)
    emit_metrics(report)
    return report
