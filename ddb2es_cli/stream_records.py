"""What a batch of stream records means: the last operation per (index, id), each versioned
by its record's creation time, and the per-batch result (permanent vs retryable failures).

Pure: nothing here talks to the cluster. Streams must carry NEW_AND_OLD_IMAGES: the old image
is the only safe way to route a delete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ddb2es_cli.sink import delete_action, index_action
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
class PlannedOp:
    position: int  # of the record that produced it
    action: tuple[dict[str, Any], str | None]
    rebuild_copy: bool = False


def plan_batch(
    records: Sequence[Mapping[str, Any]], config: StreamConfig, result: StreamResult
) -> list[PlannedOp]:
    """Records -> the last operation per (index, id), in record order.

    Planning stops at the first record the stream's view type cannot route: it and every later
    record are reported as not applied (`result.refused`).
    """
    last: dict[tuple[str, str], PlannedOp] = {}
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
            last[(index, doc_id)] = PlannedOp(position, action)
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
