"""DynamoDB side: key schemas, and the parallel-segment scan that feeds reindex.

Threads only make `Scan` calls; pages come out on the caller's thread through a bounded queue, so
transform, bulk and progress need no locks and memory stays flat whatever the table size.

Fast decode: botocore's response parser costs far more CPU per item than the JSON decode of the
same bytes. A `before-parse` hook decodes successful Scan responses with the C JSON decoder and
hands botocore an empty body; botocore keeps doing credentials, signing, endpoints, retries and
error parsing. Items then arrive in the stream-event shape (binary as base64 text), which the
transform treats exactly like the boto3 shape.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.fast_decode import pass_json_through
from ddb2es_cli.rate import RateLimiter
from ddb2es_cli.retry import Backoff
from ddb2es_cli.transform import canonical_number

Key = dict[str, dict[str, Any]]
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
_FAST_DECODE_KEYS = ("Items", "LastEvaluatedKey", "Count", "ScannedCount", "ConsumedCapacity")

# How long a Scan may stay throttled (after botocore's own retries) before the run stops.
THROTTLE_RETRY_FOR = 600.0


class TableNotFound(Ddb2esError):
    pass


@dataclass(frozen=True)
class TableInfo:
    name: str
    hash_key: str
    range_key: str | None
    item_count: int
    size_bytes: int
    stream_arn: str | None = None
    stream_view: str | None = None  # StreamViewType of the stream, when one is enabled
    stream_label: str | None = None  # when the stream was enabled (an ISO 8601 time)
    # S, N or B per key attribute: keys read back from document ids need them.
    key_types: dict[str, str] = field(default_factory=dict)

    def request_key(self, key: Any) -> Key | None:
        """A document-form key (`{"pk": "a", "sk": 5}`, numbers as int or Decimal) as DynamoDB
        wants it; None when it is not a key of this table."""
        names = {self.hash_key} | ({self.range_key} if self.range_key else set())
        if not isinstance(key, dict) or set(key) != names:
            return None
        out: Key = {}
        for name, value in key.items():
            kind = self.key_types.get(name, "S")
            if kind == "N" and isinstance(value, int | Decimal) and not isinstance(value, bool):
                out[name] = {"N": canonical_number(str(value))}
            elif kind == "S" and isinstance(value, str):
                out[name] = {"S": value}
            elif kind == "B" and isinstance(value, str):
                try:
                    out[name] = {"B": base64.b64decode(value, validate=True)}
                except ValueError:
                    return None
            else:
                return None
        return out


def describe_table(client: Any, name: str) -> TableInfo:
    try:
        table = client.describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise TableNotFound(f"table {name!r} does not exist") from None
        raise
    keys = {k["KeyType"]: k["AttributeName"] for k in table["KeySchema"]}
    return TableInfo(
        name=name,
        hash_key=keys["HASH"],
        range_key=keys.get("RANGE"),
        item_count=int(table.get("ItemCount", 0)),
        size_bytes=int(table.get("TableSizeBytes", 0)),
        stream_arn=table.get("LatestStreamArn"),
        stream_view=table.get("StreamSpecification", {}).get("StreamViewType"),
        stream_label=table.get("LatestStreamLabel"),
        key_types={a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]},
    )


# --- fast decode -------------------------------------------------------------------------------


def install_fast_decode(client: Any) -> None:
    """Decode successful Scan responses ourselves (see the module docstring)."""
    pass_json_through(client, "before-parse.dynamodb.Scan", _FAST_DECODE_KEYS)


def key_for_request(key: Mapping[str, Mapping[str, Any]]) -> Key:
    """A key from a fast-decoded page (binary as base64 text) as botocore wants it (bytes)."""
    out: Key = {}
    for name, value in key.items():
        if "B" in value and isinstance(value["B"], str):
            out[name] = {"B": base64.b64decode(value["B"])}
        else:
            out[name] = dict(value)
    return out


def key_for_state(key: Mapping[str, Mapping[str, Any]]) -> Key:
    """A key as JSON can store it (binary as base64 text), whichever shape it came in."""
    out: Key = {}
    for name, value in key.items():
        if "B" in value and not isinstance(value["B"], str):
            out[name] = {"B": base64.b64encode(bytes(value["B"])).decode("ascii")}
        else:
            out[name] = dict(value)
    return out


BATCH_GET_KEYS = 100  # DynamoDB's BatchGetItem limit


def get_items_consistently(
    client: Any, table: str, keys: Sequence[Mapping[str, Mapping[str, Any]]]
) -> list[tuple[dict[str, Any] | None, int]]:
    """(item or None if gone, read start in ms) for each key, in order, by consistent reads.

    A consistent read sees every write acknowledged before it started, so a write versioned from
    its start time ranks below any stream record of a later change (docs/spec.md).
    """
    out: list[tuple[dict[str, Any] | None, int]] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        wanted = [key_for_request(k) for k in keys[start : start + BATCH_GET_KEYS]]
        found: dict[str, dict[str, Any]] = {}
        read_ms = int(time.time() * 1000)
        pending = wanted
        # Unprocessed keys are throttling too: the same capped backoff as a throttled call.
        backoff = Backoff(initial=0.05, cap=5.0, give_up_after=THROTTLE_RETRY_FOR)
        while pending:
            request = {"RequestItems": {table: {"Keys": pending, "ConsistentRead": True}}}
            response = _with_throttle_retry(
                client.batch_get_item, request, threading.Event(), max_backoff=5.0
            )
            for item in response.get("Responses", {}).get(table, []):
                found[_key_text(item, wanted[0])] = item
            pending = response.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if pending:
                backoff.failed()
                if backoff.exhausted:
                    raise Ddb2esError(
                        f"DynamoDB left {len(pending)} keys of {table} unprocessed for "
                        f"{THROTTLE_RETRY_FOR:.0f} s (throttled): rerun with --resume"
                    )
                time.sleep(backoff.delay())
        out.extend((found.get(_key_text(k, k)), read_ms) for k in wanted)
    return out


def _key_text(item: Mapping[str, Any], key: Mapping[str, Any]) -> str:
    """The key attributes of `item` (named as in `key`) as a comparable text."""
    return json.dumps(key_for_state({n: item[n] for n in key}), sort_keys=True)


# --- rate limit ----------------------------------------------------------------------------------


CapacityLimiter = RateLimiter  # --max-rcu: capacity units per second


# --- parallel scan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentTask:
    table: str
    segment: int
    total_segments: int
    start_key: Key | None = None  # resume from here (JSON shape)
    # A work unit's whole opaque position (a reader other than Scan keeps its own there).
    position: dict[str, Any] | None = None


@dataclass
class Page:
    """One Scan response. `last_key` is None on a segment's final page."""

    table: str
    segment: int
    items: list[dict[str, Any]]
    last_key: Key | None
    started_ms: int
    consumed_rcu: float
    scanned: int = 0
    done: bool = field(default=False)
    claim: int = 0  # which claim of a work unit read it (a run drops pages of lost claims)
    # Where the unit resumes after this page, for readers other than Scan (e.g. {"line": N});
    # None: {"key": last_key}, and the unit is done when last_key is None.
    position: dict[str, Any] | None = None


@dataclass
class _Failure:
    error: BaseException


TaskSource = Callable[[threading.Event], "SegmentTask | None"]
# Reads one task's pages in order; runs on a scan thread. Scan is the default; an export
# reader producing Pages plugs in here.
Reader = Callable[["SegmentTask", threading.Event], Iterator[Page]]


def segment_reader(
    client: Any,
    *,
    page_limit: int | None = None,
    limiter: CapacityLimiter | None = None,
    projection: str | None = None,
    expression_names: Mapping[str, str] | None = None,
    max_backoff: float = 20.0,
) -> Reader:
    """The default Reader: Scan one segment from the task's start key, page by page."""
    limiter = limiter or CapacityLimiter(None)

    def scan_segment(task: SegmentTask, stop: threading.Event) -> Iterator[Page]:
        key = task.start_key
        while not stop.is_set():
            request: dict[str, Any] = {
                "TableName": task.table,
                "Segment": task.segment,
                "TotalSegments": task.total_segments,
                "ReturnConsumedCapacity": "TOTAL",
            }
            if page_limit:
                request["Limit"] = page_limit
            if projection:
                request["ProjectionExpression"] = projection
            if expression_names:
                request["ExpressionAttributeNames"] = dict(expression_names)
            if key:
                request["ExclusiveStartKey"] = key_for_request(key)
            limiter.wait()
            started_ms = int(time.time() * 1000)
            response = _with_throttle_retry(client.scan, request, stop, max_backoff)
            if response is None:
                return
            units = float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
            limiter.consume(units)
            last = response.get("LastEvaluatedKey")
            key = key_for_state(last) if last else None
            yield Page(
                task.table,
                task.segment,
                response.get("Items", []),
                key,
                started_ms,
                units,
                int(response.get("ScannedCount", 0)),
                done=key is None,
            )
            if key is None:
                return

    return scan_segment


def scan_pages(
    client: Any,
    tasks: Sequence[SegmentTask] | TaskSource,
    *,
    workers: int,
    page_limit: int | None = None,
    limiter: CapacityLimiter | None = None,
    projection: str | None = None,
    expression_names: Mapping[str, str] | None = None,
    max_backoff: float = 20.0,
    max_pages: int | None = None,
    reader: Reader | None = None,
) -> Generator[Page, None, None]:
    """Every page of every task, as they come; `workers` threads share all tasks.

    `tasks` is a list, or a callable each thread asks for its next task (None: no more), so a
    run can hand out work units as threads become free. `reader` reads one task's pages (default:
    Scan of the task's segment from its start key).

    At most `max_pages` (default: `workers`) pages exist at once, read or being read: a thread
    takes a permit before it reads a page and the caller's side gives it back when it takes the
    page, so memory is bounded by pages, not by the table.

    Throttling errors that outlast botocore's own retries are retried here with exponential
    backoff and full jitter, resending only the failed page request. Any other error stops the
    scan and is raised on the caller's thread. Closing the iterator stops the threads.
    """
    out: queue.Queue[Page | _Failure | None] = queue.Queue()
    permits = threading.Semaphore(max_pages or workers)
    stop = threading.Event()
    limiter = limiter or CapacityLimiter(None)
    if callable(tasks):
        next_task: TaskSource = tasks
        threads_wanted = workers
    else:
        todo: queue.Queue[SegmentTask] = queue.Queue()
        for task in tasks:
            todo.put(task)
        threads_wanted = min(workers, len(tasks))

        def next_task(_stop: threading.Event) -> SegmentTask | None:
            try:
                return todo.get_nowait()
            except queue.Empty:
                return None

    def put(value: Page | _Failure | None) -> bool:
        if stop.is_set():
            return False
        out.put(value)
        return True

    def take_permit() -> bool:
        while not stop.is_set():
            if permits.acquire(timeout=0.2):
                return True
        return False

    read = reader or segment_reader(
        client,
        page_limit=page_limit,
        limiter=limiter,
        projection=projection,
        expression_names=expression_names,
        max_backoff=max_backoff,
    )

    def read_task(task: SegmentTask) -> None:
        pages = read(task, stop)
        try:
            while take_permit():
                page = next(pages, None)
                if page is None:
                    permits.release()
                    return
                if not put(page):
                    return
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def worker() -> None:
        try:
            while not stop.is_set():
                task = next_task(stop)
                if task is None:
                    return
                read_task(task)
        except BaseException as exc:  # handed to the caller's thread
            put(_Failure(exc))
        finally:
            put(None)

    threads = [
        threading.Thread(target=worker, name=f"scan-{i}", daemon=True)
        for i in range(max(1, threads_wanted))
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            value = out.get()
            if value is None:
                running -= 1
            elif isinstance(value, _Failure):
                raise value.error
            else:
                permits.release()
                yield value
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def _with_throttle_retry(
    call: Any,
    request: dict[str, Any],
    stop: threading.Event,
    max_backoff: float,
    give_up_after: float | None = THROTTLE_RETRY_FOR,
) -> Any:
    """Throttling that outlasted botocore's own retries, retried with capped jittered backoff
    (`retry.Backoff`) for at most `give_up_after` seconds in a row; then the error stops the run.
    None when the scan was stopped meanwhile."""
    backoff = Backoff(initial=0.05, cap=max_backoff, give_up_after=give_up_after)
    while not stop.is_set():
        try:
            return call(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in THROTTLING_CODES:
                raise
            backoff.failed()
            if backoff.exhausted:
                raise
            stop.wait(backoff.delay())
    return None
