"""The DynamoDB Streams handler: the deployed Lambda function, also fed by `ddb2es stream`.

One bulk request per invocation (split only by size), the last operation per (index, id) of the
batch, every write versioned by the record's `ApproximateCreationDateTime` (docs/spec.md), so a
redelivered or reordered batch can never overwrite newer data, and a 409 means "already newer".

Failures are permanent (the engine or the transform refused the document: reported and passed
over) or retryable (429/502/503/504, lost connections, timeouts: reported as `batchItemFailures`
naming the first record whose effect was not applied, so only that tail is retried). Streams must
carry NEW_AND_OLD_IMAGES: the old image is the only safe way to route a delete.

Imports nothing the Lambda runtime does not need (no click, rich or tqdm).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ddb2es_cli.config import SearchSettings
from ddb2es_cli.ownership import create_owned_index, deployment_name, marked_generations
from ddb2es_cli.retry import CONFLICT_STATUS, status_of
from ddb2es_cli.sink import BulkOptions, BulkWriter, delete_action, index_action
from ddb2es_cli.transform import (
    TableShape,
    TransformError,
    document_id,
    index_name,
    key_json,
    stream_version,
    to_document,
    type_of,
)

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
    "retry.py",
    "sink.py",
    "failures.py",
    "index_settings.py",
    "stream.py",
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

# Lambda's synchronous payload and managed domains' request caps are far above this; one request
# per invocation unless the batch is really large.
MAX_BULK_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class StreamConfig:
    """How records map to indices; the key attribute names come from each record's `Keys`."""

    type_attribute: str = "TYPE"
    default_type: str = "default"
    index_prefix: str = ""
    max_bulk_bytes: int = MAX_BULK_BYTES
    deployment: str | None = None  # None: derived from index_prefix (ownership.py)

    def shape(self, keys: Mapping[str, Any]) -> TableShape:
        names = sorted(keys)
        return TableShape(
            hash_key=names[0],
            range_key=names[1] if len(names) > 1 else None,
            type_attribute=self.type_attribute,
            default_type=self.default_type,
            index_prefix=self.index_prefix,
        )


NEW_AND_OLD_IMAGES = "NEW_AND_OLD_IMAGES"
FAILURE_DESTINATION_ENV = "DDB2ES_FAILURE_DESTINATION"


def view_refusal(view: str | None, table: str = "") -> str | None:
    """Why a stream of this view type cannot be followed, or None for NEW_AND_OLD_IMAGES.

    The old image names the index a delete or a TYPE change must remove the document from;
    without it the only way would be to search every index by id, and ids are unique per table
    only, so that would delete other tables' documents.
    """
    if view == NEW_AND_OLD_IMAGES:
        return None
    where = f"table {table!r}: " if table else ""
    return (
        f"{where}stream view type {view or 'unknown'} is not supported: ddb2es needs "
        f"{NEW_AND_OLD_IMAGES} (old images route deletes and TYPE changes); enable the stream "
        "with that view, then run `ddb2es reindex`"
    )


@dataclass(frozen=True)
class RecordFailure:
    """A record whose effect was not applied: key, index and reason, never the document."""

    position: int
    sequence: str
    event: str
    table: str | None
    keys: Any
    index: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "sequence": self.sequence,
            "event": self.event,
            "keys": self.keys,
            "index": self.index,
            "reason": self.reason,
        }


@dataclass
class StreamResult:
    """What one batch did.

    `failed` holds permanent failures (the engine or the transform refused the document): they
    are reported once and passed over. `retryable` holds records not applied for a reason a retry
    can fix; `first_failed` is the position of the first of them (or of the first refused record),
    from where the batch must be tried again.
    """

    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0  # REMOVE of an item that was never indexed (its TYPE was invalid)
    failed: list[RecordFailure] = field(default_factory=list)
    retryable: list[RecordFailure] = field(default_factory=list)
    first_failed: int | None = None
    refused: str | None = None  # the stream's view type cannot be followed
    refused_records: int = 0  # the refused record and every later one
    bulk_seconds: float = 0.0  # time spent in bulk requests (with their retries)

    def fail(
        self, position: int, record: Mapping[str, Any], reason: str, index: str | None = None
    ) -> None:
        """A permanent failure: reported, then passed over (never retried)."""
        self.failed.append(_failure(position, record, reason, index))

    def retry(
        self, position: int, record: Mapping[str, Any], reason: str, index: str | None = None
    ) -> None:
        """Not applied this time: the batch is retried from the first such record."""
        self.retryable.append(_failure(position, record, reason, index))
        self._first(position)

    def refuse(self, position: int, reason: str) -> None:
        self.refused = reason
        self._first(position)

    @property
    def retry_count(self) -> int:
        """Records not applied this time, for a reason a retry can fix (metrics, status lines)."""
        return len({f.position for f in self.retryable}) + self.refused_records

    def _first(self, position: int) -> None:
        if self.first_failed is None or position < self.first_failed:
            self.first_failed = position


def _failure(
    position: int, record: Mapping[str, Any], reason: str, index: str | None
) -> RecordFailure:
    keys = record.get("dynamodb", {}).get("Keys", {})
    return RecordFailure(
        position=position,
        sequence=_sequence(record),
        event=str(record.get("eventName", "")),
        table=table_of(record),
        keys=_safe_keys(keys),
        index=index,
        reason=reason,
    )


@dataclass
class _Op:
    position: int  # of the record that produced it
    action: tuple[dict[str, Any], str | None]
    rebuild_copy: bool = False


_LOGGED_ONCE: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    """Logged once per process (per cold start of the Lambda), not once per batch."""
    if what not in _LOGGED_ONCE:
        _LOGGED_ONCE.add(what)
        log.error(message)


def plan_batch(
    records: Sequence[Mapping[str, Any]], config: StreamConfig, result: StreamResult
) -> list[_Op]:
    """Records -> the last operation per (index, id), in record order.

    Planning stops at the first record the stream's view type cannot route: it and every later
    record are reported as not applied (`result.refused`).
    """
    last: dict[tuple[str, str], _Op] = {}
    for position, record in enumerate(records):
        refusal = _record_refusal(record)
        if refusal is not None:
            result.refuse(position, refusal)
            result.refused_records = len(records) - position
            break
        result.records += 1
        try:
            ops, failure = _operations(record, config)
        except TransformError as exc:  # no usable key, unknown event: nothing can be done
            result.fail(position, record, f"{exc.reason}: {exc.detail}")
            continue
        for index, doc_id, action in ops:
            last[(index, doc_id)] = _Op(position, action)
        if failure is not None:
            result.fail(position, record, f"{failure.reason}: {failure.detail}", failure.index)
        elif not ops:
            result.skipped += 1
    return sorted(last.values(), key=lambda op: op.position)


def _record_refusal(record: Mapping[str, Any]) -> str | None:
    """A record without the images NEW_AND_OLD_IMAGES guarantees cannot be applied safely."""
    data = record.get("dynamodb", {})
    view = data.get("StreamViewType")
    if view is not None and view != NEW_AND_OLD_IMAGES:
        return view_refusal(view, table_of(record) or "")
    event = record.get("eventName")
    missing = (event in ("INSERT", "MODIFY") and "NewImage" not in data) or (
        event in ("MODIFY", "REMOVE") and "OldImage" not in data
    )
    return view_refusal(view, table_of(record) or "") if missing else None


@dataclass(frozen=True)
class _IndexFailure:
    reason: str
    detail: str
    index: str | None


Operation = tuple[str, str, tuple[dict[str, Any], str | None]]


def _operations(
    record: Mapping[str, Any], config: StreamConfig
) -> tuple[list[Operation], _IndexFailure | None]:
    """The writes one record implies, and the permanent failure that goes with it, if any.

    An invalid TYPE affects only its own side: a MODIFY from an invalid TYPE indexes the new
    item (nothing was indexed before), a MODIFY to an invalid TYPE still deletes the old document
    (and fails), a REMOVE of an item whose TYPE was invalid has nothing to delete.
    """
    data = record["dynamodb"]
    keys = data["Keys"]
    shape = config.shape(keys)
    version = stream_version(_creation_seconds(data["ApproximateCreationDateTime"]))
    doc_id = document_id(key_json(keys, shape.key_names))
    event = record["eventName"]
    if event not in ("INSERT", "MODIFY", "REMOVE"):
        raise TransformError("unknown_event", f"eventName {event!r}")
    old = data.get("OldImage")
    new = data.get("NewImage")
    ops: list[Operation] = []
    failure: _IndexFailure | None = None
    new_index: str | None = None
    if new is not None:
        try:
            doc = to_document(new, shape)
        except TransformError as exc:
            failure = _IndexFailure(exc.reason, exc.detail, _raw_index(new, shape))
        else:
            new_index = doc.index
            ops.append((doc.index, doc.id, index_action(doc, version)))
    if old is not None:
        try:
            old_index = index_name(old, shape)
        except TransformError:
            old_index = None  # never indexed: nothing to delete
        if old_index is not None and old_index != new_index:
            ops.append((old_index, doc_id, delete_action(old_index, doc_id, version)))
    return ops, failure


def _raw_index(item: Mapping[str, Any], shape: TableShape) -> str | None:
    """The index name an item asks for, valid or not (for failure reports)."""
    return (shape.index_prefix + type_of(item, shape)).lower()


def apply_batch(
    es: Any, records: Sequence[Mapping[str, Any]], config: StreamConfig
) -> StreamResult:
    """Apply one batch of stream records with one bulk request (more only past the size cap).

    Never raises for the cluster's sake: a document the engine refused is a permanent failure,
    an overload answer or a client exception (lost connection, timeout) leaves the documents it
    concerns as retryable.
    """
    result = StreamResult()
    ops = plan_batch(records, config, result)
    _create_indices(es, ops, deployment_name(config.deployment, config.index_prefix))
    try:
        ops += _rebuild_copies(es, ops, config.index_prefix)
    except Exception as exc:  # the marker lookup failed: nothing was written yet
        reason = f"alias lookup failed: {_exception_text(exc)}"
        for op in ops:
            result.retry(op.position, records[op.position], reason)
        return result
    writer = BulkWriter(
        es,
        BulkOptions(
            chunk_size=max(1, len(ops)),
            max_chunk_bytes=config.max_bulk_bytes,
            initial_backoff=0.2,
            max_backoff=2.0,
            retry_for=5.0,  # then the record is reported and retried as a whole
        ),
    )
    answered: set[int] = set()
    started = time.monotonic()
    try:
        for outcome in writer.write((op.action, n) for n, op in enumerate(ops)):
            if not isinstance(outcome.tag, int):
                continue  # an answer we cannot match: its op counts as unanswered below
            answered.add(outcome.tag)
            _record_outcome(result, records, ops[outcome.tag], outcome)
    except Exception as exc:  # raised by the client: connection lost, timeout, request refused
        reason = f"bulk request failed: {_exception_text(exc)}"
    else:
        reason = "no answer from the cluster for this document"
    finally:
        result.bulk_seconds = time.monotonic() - started
    for n, op in enumerate(ops):
        if n not in answered:
            result.retry(op.position, records[op.position], reason, _op_index(op))
    return result


def _record_outcome(
    result: StreamResult, records: Sequence[Mapping[str, Any]], op: _Op, outcome: Any
) -> None:
    is_delete = "delete" in op.action[0]
    status = outcome.status
    if op.rebuild_copy and status == 404 and not is_delete:
        # The generation is gone (a failed reload cleaned up): nothing to keep current.
        return
    if status == CONFLICT_STATUS:
        result.conflicts += 1
    elif is_delete and status == 404:
        result.deleted += 1  # already gone: the external version still rules
    elif outcome.error is None:
        if is_delete:
            result.deleted += 1
        else:
            result.indexed += 1
    elif outcome.retryable:  # 429/502/503/504: the cluster was busy or away
        result.retry(op.position, records[op.position], f"{status} {outcome.error}", outcome.index)
    else:
        result.fail(op.position, records[op.position], f"{status} {outcome.error}", outcome.index)


def _op_index(op: _Op) -> str:
    return str(next(iter(op.action[0].values()))["_index"])


def _exception_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


# While `reload --strategy blue-green` loads a new generation of index X, the alias
# X + REBUILD_SUFFIX points at it, and every write for X is applied to that generation too: the
# one consumer of the stream keeps both generations current, in stream order. The copies go to
# the generation's own name, never through the marker: reload removes the marker in the same
# atomic call that swaps X, and a versioned write to a name that no longer exists would create
# an index of that name. Looked up at most every REBUILD_CHECK_SECONDS; reload waits longer
# than that before it starts to scan.
REBUILD_CHECK_SECONDS = 5.0
# A role allowed only to write gets 403 on GET _alias: the sync goes on, loudly, without copies.
MARKER_FORBIDDEN = (
    "GET _alias answered 403: this role may not read aliases, so writes are NOT copied to a "
    "generation that `ddb2es reload --strategy blue-green` is loading (its swap would serve "
    "stale data); grant alias reads (see docs/deploy.md, permissions)"
)
_rebuilds: dict[tuple[int, str], tuple[float, dict[str, list[str]]]] = {}


def rebuilding_indices(es: Any, prefix: str) -> dict[str, list[str]]:
    """X -> every generation being loaded for it (where an alias X-rebuilding exists). More
    than one when a killed reload left its marker: each gets the copies, so whichever is
    swapped in later is complete."""
    key = (id(es), prefix)
    now = time.monotonic()
    cached = _rebuilds.get(key)
    if cached and now - cached[0] < REBUILD_CHECK_SECONDS:
        return cached[1]
    try:
        targets = marked_generations(es, prefix)
    except Exception as exc:
        if status_of(exc) != 403:
            raise
        _warn_once("marker-403", MARKER_FORBIDDEN)
        targets = {}
    _rebuilds[key] = (now, targets)
    return targets


def _rebuild_copies(es: Any, ops: list[_Op], prefix: str) -> list[_Op]:
    targets = rebuilding_indices(es, prefix)
    if not targets:
        return []
    copies = []
    for op in ops:
        meta = next(iter(op.action[0].values()))
        kind = next(iter(op.action[0]))
        for generation in targets.get(meta["_index"], []):
            copy_meta = {**meta, "_index": generation}
            copies.append(_Op(op.position, ({kind: copy_meta}, op.action[1]), rebuild_copy=True))
    return copies


# Indices this process saw exist (or created), and when: one create call per index and minute,
# so an index deleted meanwhile (`reload --strategy delete`) is created again with the mark.
KNOWN_INDEX_SECONDS = 60.0
_known_indices: dict[tuple[int, str], float] = {}


def _create_indices(es: Any, ops: list[_Op], deployment: str) -> None:
    """Create each index a batch writes to, with this deployment's mark, before the bulk: an
    index the engine created on its own would carry no mark, and ddb2es would not own it."""
    for op in ops:
        kind, meta = next(iter(op.action[0].items()))
        key = (id(es), meta["_index"])
        seen = _known_indices.get(key)
        if kind == "delete" or (seen and time.monotonic() - seen < KNOWN_INDEX_SECONDS):
            continue
        try:
            if create_owned_index(es, meta["_index"], deployment):
                log.info("created index %s (deployment %s)", meta["_index"], deployment)
            _known_indices[key] = time.monotonic()
        except Exception as exc:  # e.g. a role allowed only to write: the bulk still runs
            _warn_once(f"create-{meta['_index']}", f"could not create {meta['_index']}: {exc}")


def batch_item_failures(
    records: Sequence[Mapping[str, Any]], result: StreamResult
) -> dict[str, list[dict[str, str]]]:
    """The Lambda answer: retry from the first record whose effect was not applied."""
    if result.first_failed is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": _sequence(records[result.first_failed])}]}


def newest_creation(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Epoch seconds of the newest record's `ApproximateCreationDateTime` (None: no records):
    now minus this is the replication lag a batch shows."""
    times = [_creation_seconds(r["dynamodb"]["ApproximateCreationDateTime"]) for r in records]
    return max(times) if times else None


def _creation_seconds(value: Any) -> float:
    """Lambda events give epoch seconds; boto3's streams client gives a datetime."""
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def table_of(record: Mapping[str, Any]) -> str | None:
    """The table name in the record's event source ARN (`...:table/NAME/stream/...`)."""
    arn = str(record.get("eventSourceARN", ""))
    if ":table/" not in arn:
        return None
    return arn.split(":table/", 1)[1].split("/stream/", 1)[0]


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record.get("dynamodb", {}).get("SequenceNumber", ""))


def _safe_keys(keys: Mapping[str, Any]) -> Any:
    try:
        return json.loads(key_json(keys, keys.keys()))
    except TransformError:
        return {k: str(v) for k, v in keys.items()}


# --- the Lambda function -----------------------------------------------------------------------


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
                _exception_text(exc),
            )
            for failure in result.failed:
                result.retry(failure.position, records[failure.position], failure.reason)
            passed_over = []
    stream_observe.report_batch(records, result, passed_over, started, context)
    return batch_item_failures(records, result)
