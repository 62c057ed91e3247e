"""The DynamoDB Streams handler: the deployed Lambda function, also fed by `ddb2es stream`.

One bulk request per invocation (split only by size), the last operation per (index, id) of the
batch, every write versioned by the record's `ApproximateCreationDateTime` (docs/spec.md), so a
redelivered or reordered batch can never overwrite newer data, and a 409 means "already newer".

Failures are permanent (the engine or the transform refused the document: reported and passed
over) or retryable (429/502/503/504, lost connections, timeouts: reported as `batchItemFailures`
naming the first record whose effect was not applied, so only that tail is retried). Streams must
carry NEW_AND_OLD_IMAGES: the old image is the only safe way to route a delete.

Imports nothing the Lambda runtime does not need (no click, rich or tqdm).

This module is the Lambda entry point (environment, failure destination, `lambda_handler`); the
parts live in stream_records.py (records -> operations, results), stream_indices.py (index
creation, rebuild copies) and stream_apply.py (the bulk). Their public names are re-exported.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ddb2es_cli.config import SearchSettings
from ddb2es_cli.stream_apply import apply_batch as apply_batch
from ddb2es_cli.stream_apply import exception_text
from ddb2es_cli.stream_indices import KNOWN_INDEX_SECONDS as KNOWN_INDEX_SECONDS
from ddb2es_cli.stream_indices import MARKER_FORBIDDEN as MARKER_FORBIDDEN
from ddb2es_cli.stream_indices import REBUILD_CHECK_SECONDS as REBUILD_CHECK_SECONDS
from ddb2es_cli.stream_indices import rebuilding_indices as rebuilding_indices
from ddb2es_cli.stream_records import MAX_BULK_BYTES as MAX_BULK_BYTES
from ddb2es_cli.stream_records import NEW_AND_OLD_IMAGES as NEW_AND_OLD_IMAGES
from ddb2es_cli.stream_records import Operation as Operation
from ddb2es_cli.stream_records import RecordFailure as RecordFailure
from ddb2es_cli.stream_records import StreamConfig as StreamConfig
from ddb2es_cli.stream_records import StreamResult as StreamResult
from ddb2es_cli.stream_records import batch_item_failures as batch_item_failures
from ddb2es_cli.stream_records import newest_creation as newest_creation
from ddb2es_cli.stream_records import plan_batch as plan_batch
from ddb2es_cli.stream_records import table_of as table_of
from ddb2es_cli.stream_records import view_refusal as view_refusal

log = logging.getLogger("ddb2es.stream")


# What the deployed zip carries (scripts/lambda_zip.py); a test imports the handler from these
# files alone. boto3 comes with the Lambda runtime.
LAMBDA_MODULES = (
    "__init__.py",
    "errors.py",
    "checkpoint.py",
    "redaction.py",
    "config.py",
    "config_checks.py",  # config.py's value checks
    "config_auth.py",  # config.py's search credentials
    "collisions.py",  # re-exported by config.py
    "transform.py",
    "clients.py",
    "dynamodb_client.py",
    "transport_warnings.py",
    "ownership.py",
    "ownership_marks.py",  # ownership.py re-exports these three
    "ownership_generations.py",
    "ownership_control.py",
    "retry.py",
    "sink.py",
    "failures.py",
    "index_settings.py",
    "stream.py",
    "stream_records.py",  # records -> operations (stream.py re-exports)
    "stream_indices.py",  # index creation, rebuild copies
    "stream_apply.py",  # the bulk
    "stream_observe.py",
)
# opensearch-py 3 pulls in gRPC; the runtime's botocore wants python-dateutil < 3; Powertools
# writes the metrics (EMF) and the JSON log lines (stream_observe.py). The exact versions the zip
# carries are pinned in requirements-lambda.txt (scripts/lambda_zip.py).
LAMBDA_DEPENDENCIES = (
    "opensearch-py>=2.6,<3",
    "elasticsearch>=8.13,<10",
    "python-dateutil>=2.1,<3",
    "aws-lambda-powertools>=3,<4",
)


# --- the Lambda function -----------------------------------------------------------------------

FAILURE_DESTINATION_ENV = "DDB2ES_FAILURE_DESTINATION"


def config_from_env(env: Mapping[str, str]) -> tuple[SearchSettings, StreamConfig]:
    """Settings from the function's environment.

    The original function's `ELASTICSEARCH_ENDPOINT` (a host without scheme) still works; AWS
    SigV4 is the default for it, as managed domains want.
    """
    legacy_host = env.get("ELASTICSEARCH_ENDPOINT", "").strip()
    url = env.get("DDB2ES_ES_URL") or (f"https://{legacy_host}" if legacy_host else "")
    if not url:
        raise ValueError("set DDB2ES_ES_URL (or ELASTICSEARCH_ENDPOINT) for the stream handler")
    auth = env.get("DDB2ES_ES_AUTH") or (
        "api-key"
        if env.get("DDB2ES_ES_API_KEY")
        else "basic"
        if env.get("DDB2ES_ES_USERNAME")
        else "aws-sigv4"
    )
    search = SearchSettings(
        url=url,
        auth=auth,
        username=env.get("DDB2ES_ES_USERNAME"),
        password=env.get("DDB2ES_ES_PASSWORD"),
        api_key=env.get("DDB2ES_ES_API_KEY"),
        aws_service=env.get("DDB2ES_ES_AWS_SERVICE", "es"),
        verify_certs=_env_flag(env, "DDB2ES_ES_VERIFY_CERTS", True),
    )
    config = StreamConfig(
        type_attribute=env.get("DDB2ES_TYPE_ATTRIBUTE", "TYPE"),
        default_type=env.get("DDB2ES_DEFAULT_TYPE", "default"),
        index_prefix=env.get("DDB2ES_INDEX_PREFIX", ""),
        deployment=env.get("DDB2ES_DEPLOYMENT") or None,
    )
    return search, config


def send_failures(failures: Sequence[RecordFailure], destination: str, client: Any) -> None:
    """Permanent failures to an SQS queue (its URL) or to S3 (`s3://bucket/prefix`).

    One SQS message per failure (batches of 10), or one NDJSON object per batch in S3. Keys,
    index and reason only: document bodies never leave the handler.
    """
    lines = [json.dumps(f.as_dict(), default=str, ensure_ascii=False) for f in failures]
    if not lines:
        return
    if destination.startswith("s3://"):
        bucket, _, prefix = destination[len("s3://") :].partition("/")
        stamp = time.strftime("%Y/%m/%d/%H%M%S", time.gmtime())
        key = f"{prefix.rstrip('/') + '/' if prefix else ''}{stamp}-{uuid.uuid4().hex}.ndjson"
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=("\n".join(lines) + "\n").encode("utf-8"),
            ContentType="application/x-ndjson",
        )
        return
    for start in range(0, len(lines), 10):
        entries = [
            {"Id": str(n), "MessageBody": line} for n, line in enumerate(lines[start : start + 10])
        ]
        answer = client.send_message_batch(QueueUrl=destination, Entries=entries)
        if answer.get("Failed"):
            raise RuntimeError(f"SQS refused {len(answer['Failed'])} failure messages")


def destination_client(destination: str) -> Any:
    """The boto3 client a failure destination needs (SQS for a queue URL, S3 for s3://)."""
    import boto3

    if destination.startswith("s3://"):
        return boto3.client("s3")
    if destination.startswith("https://") or destination.startswith("http://"):
        return boto3.client("sqs")
    raise ValueError(
        f"{FAILURE_DESTINATION_ENV} must be an SQS queue URL or s3://bucket/prefix, "
        f"not {destination!r}"
    )


_CLIENT: Any = None  # kept across invocations of a warm function


def _env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "false", "0"):
        return value in ("true", "1")
    raise ValueError(f"{name} must be true, false, 1 or 0, not {value!r}")


class InvalidEvent(ValueError):
    """The function was invoked with something that is not a DynamoDB Streams batch."""


_RECORD_FIELDS = ("eventName", "dynamodb")
_DATA_FIELDS = ("Keys", "SequenceNumber", "ApproximateCreationDateTime")


def stream_records(event: Any) -> list[Mapping[str, Any]]:
    """The records of a DynamoDB Streams event; anything else is one clear error naming what is
    missing (a test invocation with another payload, a Kinesis or SQS mapping by mistake)."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise InvalidEvent("not a DynamoDB Streams event: no Records list")
    for n, record in enumerate(records):
        source = record.get("eventSource") if isinstance(record, Mapping) else None
        if source not in (None, "aws:dynamodb"):
            raise InvalidEvent(f"record {n} comes from {source!r}, not from DynamoDB Streams")
        missing = [f for f in _RECORD_FIELDS if not isinstance(record, Mapping) or f not in record]
        data = record.get("dynamodb") if isinstance(record, Mapping) else None
        if isinstance(data, Mapping):
            missing += [f"dynamodb.{f}" for f in _DATA_FIELDS if f not in data]
        if missing:
            raise InvalidEvent(f"record {n} of the event lacks {', '.join(missing)}")
    return records


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Entry point of the deployed function (event source mapping with ReportBatchItemFailures).

    Permanent failures are logged and sent to the failure destination, then passed over; only
    records that a retry can apply (overload, lost connection, a refused view type) are reported
    in `batchItemFailures`. Every invocation prints its metrics (EMF) and one JSON log line
    (stream_observe.py).
    """
    global _CLIENT
    started = time.monotonic()
    from ddb2es_cli import stream_observe  # Powertools: the Lambda needs it, the CLI does not

    try:
        records = stream_records(event)
    except InvalidEvent as exc:
        log.error("ddb2es stream handler: %s", exc)
        raise
    search, config = config_from_env(os.environ)
    if _CLIENT is None:
        from ddb2es_cli.clients import make_search_client

        _CLIENT, _engine = make_search_client(search, os.environ.get("AWS_REGION"), timeout=30)
    result = apply_batch(_CLIENT, records, config)
    if result.refused is not None and result.first_failed is not None:
        log.error(
            "%s (%d records reported as failed)", result.refused, len(records) - result.first_failed
        )
    passed_over = list(result.failed)
    destination = os.environ.get(FAILURE_DESTINATION_ENV, "").strip()
    if result.failed and destination:
        try:
            send_failures(result.failed, destination, destination_client(destination))
        except Exception as exc:  # not recorded anywhere durable: let Lambda retry the batch
            log.error(
                "could not send %d permanent failures to %s (%s): the batch will be retried",
                len(result.failed),
                destination,
                exception_text(exc),
            )
            for failure in result.failed:
                result.retry(failure.position, records[failure.position], failure.reason)
            passed_over = []
    stream_observe.report_batch(records, result, passed_over, started, context)
    return batch_item_failures(records, result)
