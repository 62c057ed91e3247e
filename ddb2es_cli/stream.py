"""The DynamoDB Streams handler: the deployed Lambda function, also fed by `ddb2es stream`.

One bulk request per invocation (split only by size), the last operation per (index, id) of the
batch, every write versioned by the record's `ApproximateCreationDateTime` (SPEC section 1), so a
redelivered or reordered batch can never overwrite newer data, and a 409 means "already newer".
Failures are reported as `batchItemFailures` naming the first record whose effect was not
applied, so only that tail is retried.

Imports nothing the Lambda runtime does not need (no click, rich or tqdm).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ddb2es_cli.config import SearchSettings
from ddb2es_cli.ownership import create_owned_index, deployment_name, marked_generations
from ddb2es_cli.sink import BulkOptions, BulkWriter, delete_action, index_action
from ddb2es_cli.transform import (
    TableShape,
    TransformError,
    document_id,
    index_name,
    key_json,
    stream_version,
    to_document,
)

log = logging.getLogger("ddb2es.stream")

# What the deployed zip carries (scripts/lambda_zip.py); a test imports the handler from these
# files alone. boto3 comes with the Lambda runtime.
LAMBDA_MODULES = (
    "__init__.py",
    "errors.py",
    "config.py",
    "transform.py",
    "clients.py",
    "ownership.py",
    "sink.py",
    "source.py",
    "stream.py",
)
# opensearch-py 3 pulls in gRPC; the runtime's botocore wants python-dateutil < 3.
LAMBDA_DEPENDENCIES = (
    "opensearch-py>=2.6,<3",
    "elasticsearch>=8.13,<10",
    "python-dateutil>=2.1,<3",
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


@dataclass
class StreamResult:
    """What one batch did. `first_failed` is the position of the first record to retry."""

    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    first_failed: int | None = None

    def fail(self, position: int, record: Mapping[str, Any], reason: str) -> None:
        keys = record.get("dynamodb", {}).get("Keys", {})
        self.failed.append(
            {"sequence": _sequence(record), "keys": _safe_keys(keys), "reason": reason}
        )
        if self.first_failed is None or position < self.first_failed:
            self.first_failed = position


@dataclass
class _Op:
    position: int  # of the record that produced it
    action: tuple[dict[str, Any], str | None]
    rebuild_copy: bool = False


_LOGGED_ONCE: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    """A view-type limitation is logged once per process, not once per record."""
    if what not in _LOGGED_ONCE:
        _LOGGED_ONCE.add(what)
        log.warning(message)


def plan_batch(
    records: Sequence[Mapping[str, Any]],
    config: StreamConfig,
    result: StreamResult,
    fetch_item: Any = None,
    locate: Any = None,
) -> list[_Op]:
    """Records -> the last operation per (index, id), in record order.

    `fetch_item(record) -> item | None` reads the current item (KEYS_ONLY streams);
    `locate(doc_id, shape) -> [index, ...]` finds where a document lives when no OldImage says.
    """
    last: dict[tuple[str, str], _Op] = {}
    for position, record in enumerate(records):
        result.records += 1
        try:
            for index, doc_id, action in _operations(record, config, fetch_item, locate):
                last[(index, doc_id)] = _Op(position, action)
        except TransformError as exc:
            result.fail(position, record, f"{exc.reason}: {exc.detail}")
    return sorted(last.values(), key=lambda op: op.position)


def _operations(
    record: Mapping[str, Any], config: StreamConfig, fetch_item: Any, locate: Any
) -> list[tuple[str, str, tuple[dict[str, Any], str | None]]]:
    data = record["dynamodb"]
    keys = data["Keys"]
    shape = config.shape(keys)
    version = stream_version(_creation_seconds(data["ApproximateCreationDateTime"]))
    doc_id = document_id(key_json(keys, shape.key_names))
    event = record["eventName"]
    old = data.get("OldImage")
    new = data.get("NewImage")
    ops: list[tuple[str, str, tuple[dict[str, Any], str | None]]] = []
    if event in ("INSERT", "MODIFY"):
        if new is None:
            _warn_once(
                "no-new-image",
                "stream records carry no NewImage (KEYS_ONLY or "
                "OLD_IMAGE view): each item is read with GetItem instead",
            )
            new = fetch_item(record) if fetch_item else None
            if new is None:  # gone again by now: a later REMOVE record follows
                return ops
        doc = to_document(new, shape)
        ops.append((doc.index, doc.id, index_action(doc, version)))
        if old is not None:
            old_index = index_name(old, shape)
            if old_index != doc.index:  # the type changed: the old document must go
                ops.append((old_index, doc_id, delete_action(old_index, doc_id, version)))
        return ops
    if event == "REMOVE":
        if old is not None:
            indices = [index_name(old, shape)]
        else:
            _warn_once(
                "no-old-image",
                "REMOVE records carry no OldImage (KEYS_ONLY or "
                "NEW_IMAGE view): deletes look the document up in every index "
                "of the prefix",
            )
            indices = locate(doc_id, shape) if locate else []
        ops.extend((i, doc_id, delete_action(i, doc_id, version)) for i in indices)
        return ops
    raise TransformError("unknown_event", f"eventName {event!r}")


def apply_batch(
    es: Any,
    records: Sequence[Mapping[str, Any]],
    config: StreamConfig,
    fetch_item: Any = None,
) -> StreamResult:
    """Apply one batch of stream records with one bulk request (more only past the size cap)."""
    result = StreamResult()

    def locate(doc_id: str, shape: TableShape) -> list[str]:
        return locate_document(es, doc_id, shape.index_prefix)

    ops = plan_batch(records, config, result, fetch_item, locate)
    _create_indices(es, ops, deployment_name(config.deployment, config.index_prefix))
    ops += _rebuild_copies(es, ops, config.index_prefix)
    writer = BulkWriter(
        es,
        BulkOptions(
            chunk_size=max(1, len(ops)),
            max_chunk_bytes=config.max_bulk_bytes,
            max_retries=3,
            initial_backoff=0.2,
            max_backoff=2.0,
        ),
    )
    for outcome in writer.write((op.action, op) for op in ops):
        op = outcome.tag
        is_delete = "delete" in op.action[0]
        if op.rebuild_copy and outcome.status == 404 and not is_delete:
            # The generation is gone (a failed reload cleaned up): nothing to keep current.
            continue
        if outcome.status == 409:
            result.conflicts += 1
        elif is_delete and outcome.status == 404:
            result.deleted += 1  # already gone: the external version still rules
        elif outcome.error is None:
            if is_delete:
                result.deleted += 1
            else:
                result.indexed += 1
        else:
            result.fail(op.position, records[op.position], f"{outcome.status} {outcome.error}")
    for failure in result.failed:
        log.error(
            "record %s (keys %s) failed: %s",
            failure["sequence"],
            json.dumps(failure["keys"], default=str),
            failure["reason"],
        )
    return result


# While `reload --strategy blue-green` loads a new generation of index X, the alias
# X + REBUILD_SUFFIX points at it, and every write for X is applied to that generation too: the
# one consumer of the stream keeps both generations current, in stream order. The copies go to
# the generation's own name, never through the marker: reload removes the marker in the same
# atomic call that swaps X, and a versioned write to a name that no longer exists would create
# an index of that name. Looked up at most every REBUILD_CHECK_SECONDS; reload waits longer
# than that before it starts to scan.
REBUILD_CHECK_SECONDS = 5.0
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
    targets = marked_generations(es, prefix)
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


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "meta", None), "status", None)
    return status if isinstance(status, int) else None


def locate_document(es: Any, doc_id: str, prefix: str) -> list[str]:
    """The indices under the prefix that hold `doc_id` (deletes without an OldImage)."""
    pattern = f"{prefix}*,-.*" if prefix else "*,-.*"
    body = {"query": {"ids": {"values": [doc_id]}}, "_source": False, "size": 100}
    found = es.search(index=pattern, body=body, expand_wildcards="open")
    return sorted({hit["_index"] for hit in found["hits"]["hits"]})


def batch_item_failures(
    records: Sequence[Mapping[str, Any]], result: StreamResult
) -> dict[str, list[dict[str, str]]]:
    """The Lambda answer: retry from the first record whose effect was not applied."""
    if result.first_failed is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": _sequence(records[result.first_failed])}]}


def _creation_seconds(value: Any) -> float:
    """Lambda events give epoch seconds; boto3's streams client gives a datetime."""
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


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
        verify_certs=env.get("DDB2ES_ES_VERIFY_CERTS", "true").lower() != "false",
    )
    config = StreamConfig(
        type_attribute=env.get("DDB2ES_TYPE_ATTRIBUTE", "TYPE"),
        default_type=env.get("DDB2ES_DEFAULT_TYPE", "default"),
        index_prefix=env.get("DDB2ES_INDEX_PREFIX", ""),
        deployment=env.get("DDB2ES_DEPLOYMENT") or None,
    )
    return search, config


_CLIENT: Any = None  # kept across invocations of a warm function


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Entry point of the deployed function (event source mapping with ReportBatchItemFailures)."""
    global _CLIENT
    search, config = config_from_env(os.environ)
    if _CLIENT is None:
        from ddb2es_cli.clients import make_search_client

        _CLIENT, _engine = make_search_client(search, os.environ.get("AWS_REGION"), timeout=30)
    records = list(event.get("Records", []))
    result = apply_batch(_CLIENT, records, config, fetch_item=_lambda_fetch_item)
    log.info(
        "batch of %d records: %d indexed, %d deleted, %d conflicts, %d failed",
        result.records,
        result.indexed,
        result.deleted,
        result.conflicts,
        len(result.failed),
    )
    return batch_item_failures(records, result)


def _lambda_fetch_item(record: Mapping[str, Any]) -> Any:
    """GetItem for KEYS_ONLY streams; the table name is in the event source ARN."""
    import boto3

    from ddb2es_cli.source import key_for_request

    table = str(record["eventSourceARN"]).split(":table/")[1].split("/stream/")[0]
    key = key_for_request(record["dynamodb"]["Keys"])  # event binary is base64 text
    response = boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)
    return response.get("Item")
