"""Search side of a rebuild: versioned bulk writes and per-index stats (the failures file is in
failures.py, the bulk-load settings in index_settings.py).

Documents are already JSON text (the transform's exact numbers), so the bulk body is built here
as NDJSON and sent with the client's own `bulk` call: the client keeps doing auth, TLS, retries
on other nodes and error mapping, while the helpers' per-action work (expanding, re-serialising
each line, matching answers) is skipped.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ddb2es_cli.clients import is_elasticsearch_client
from ddb2es_cli.failures import Failure as Failure
from ddb2es_cli.failures import FailureLog as FailureLog
from ddb2es_cli.failures import KeyJson as KeyJson
from ddb2es_cli.failures import exact_json as exact_json
from ddb2es_cli.failures import failure_line as failure_line
from ddb2es_cli.index_settings import BULK_LOAD_SETTINGS as BULK_LOAD_SETTINGS
from ddb2es_cli.index_settings import DEFAULT_GC_DELETES_MS as DEFAULT_GC_DELETES_MS
from ddb2es_cli.index_settings import apply_index_settings as apply_index_settings
from ddb2es_cli.index_settings import current_load_settings as current_load_settings
from ddb2es_cli.index_settings import gc_deletes_ms as gc_deletes_ms
from ddb2es_cli.index_settings import parse_time_ms as parse_time_ms
from ddb2es_cli.retry import CONFLICT_STATUS, RETRYABLE_STATUS, Backoff, is_retryable_error
from ddb2es_cli.transform import Document, quote_json
from ddb2es_cli.transform import quote_fast as _quote

Action = tuple[dict[str, Any], str | None]  # (metadata line, document JSON or None)

log = logging.getLogger("ddb2es.sink")


def index_action(doc: Document, version: int) -> Action:
    """A bulk `index` with an external version (docs/spec.md, "Versions")."""
    meta = {"_index": doc.index, "_id": doc.id, "version": version, "version_type": "external_gte"}
    return {"index": meta}, doc.source


def delete_action(index: str, doc_id: str, version: int) -> Action:
    meta = {"_index": index, "_id": doc_id, "version": version, "version_type": "external_gte"}
    return {"delete": meta}, None


def action_meta(action: Action) -> dict[str, Any]:
    meta: dict[str, Any] = next(iter(action[0].values()))
    return meta


_encode_meta = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_VERSIONED_KEYS = ("_index", "_id", "version", "version_type")
_VERSIONED_HEADS = {op: '{"' + op + '":{"_index":' for op in ("index", "delete")}


def meta_line(action: Action) -> str:
    """The action's bulk metadata line (its document, if any, is the next line as it is)."""
    ((op, meta),) = action[0].items()
    head = _VERSIONED_HEADS.get(op)
    if head and tuple(meta) == _VERSIONED_KEYS and meta["version_type"] == "external_gte":
        index, doc_id, version = meta["_index"], meta["_id"], meta["version"]
        if type(index) is str and type(doc_id) is str and type(version) is int:
            # What index_action and delete_action write, spelled without a generic encoder
            # (once per document: the C quoting function straight, no wrapper).
            return (
                f'{head}{_quote(index)},"_id":{_quote(doc_id)},"version":{version},'
                '"version_type":"external_gte"}}'
            )
    parts = []
    for name, value in meta.items():
        kind = type(value)
        if kind is str:
            parts.append(quote_json(name) + ":" + quote_json(value))
        elif kind is int:
            parts.append(quote_json(name) + ":" + str(value))
        else:  # not written by index_action/delete_action: the general encoder
            parts = []
            break
    head = (
        "{" + quote_json(op) + ":{" + ",".join(parts) + "}}"
        if parts or not meta
        else _encode_meta(action[0])
    )
    return head


@dataclass
class IndexStats:
    indexed: int = 0
    conflicts: int = 0
    failed: int = 0
    # Snapshot writes that waited too long and were re-read: written fresh, or dropped as deleted.
    reread: int = 0
    gone: int = 0


# What the writer reads of a bulk answer (`filter_path`); both engines filter answers this way.
BULK_ANSWER_FIELDS = "errors,items.*._index,items.*._id,items.*.status,items.*.error"

GONE_STATUS = 404  # BulkResult of a re-read snapshot write whose item no longer exists


@dataclass(slots=True)
class BulkResult:
    """One document's outcome; `tag` is whatever the caller sent along with the action.

    `status` is the engine's, except GONE_STATUS with no error: a late snapshot write was re-read
    and its item had been deleted meanwhile, so nothing was sent. A retryable status reaches the
    caller only when `BulkOptions.retry_for` ran out.
    """

    tag: Any
    index: str
    id: str
    status: int
    error: str | None = None
    reread: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None or self.status == CONFLICT_STATUS

    @property
    def gone(self) -> bool:
        return self.status == GONE_STATUS and self.error is None

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.status in RETRYABLE_STATUS


@dataclass
class BulkOptions:
    chunk_size: int = 2000
    max_chunk_bytes: int = 10 * 1024 * 1024
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    # How long one streak of retryable failures may last before giving up (None: never).
    retry_for: float | None = 600.0


@dataclass(frozen=True)
class Refreshed:
    """A late snapshot write after a fresh consistent read: the new action, or None if the item
    is gone; `error` when the fresh item cannot become a document."""

    action: Action | None
    read_ms: int
    error: str | None = None


class Freshener(Protocol):
    """Keeps late snapshot writes from resurrecting deleted items (docs/spec.md, "Late writes")."""

    def read_ms(self, tag: Any) -> int | None:
        """When the data behind the write was read; None for writes that are not snapshots."""

    def max_age_ms(self, index: str) -> float:
        """How old a snapshot write to `index` may be when it is sent."""

    def refresh(self, stale: list[tuple[Action, Any]]) -> list[Refreshed]:
        """Re-read the items behind `stale` with consistent reads, in the same order."""


@dataclass(slots=True)
class _Pending:
    action: Action
    meta: dict[str, Any]  # action_meta(action), read once
    tag: Any
    read_ms: int | None = None
    reread: bool = False
    status: int = 503  # the last retryable answer, reported if retries run out

    def replace(self, action: Action, read_ms: int) -> None:
        self.action, self.meta, self.read_ms = action, action_meta(action), read_ms
        self.reread = True


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class BulkWriter:
    """Sends (action, tag) pairs through the engine's bulk helper, one chunk at a time, and
    reports every outcome, matched to its action by position (the bulk API answers in request
    order).

    Retryable answers (per document or for the whole request) are resent in a following chunk
    after a capped, jittered backoff, so nothing waits for the end of the run. Just before a chunk
    is sent, snapshot writes older than the freshener allows are re-read, so no snapshot write
    reaches the engine after a newer delete's tombstone expired.

    While a request is in flight (on a thread of its own), the next chunk is built: the transform
    and the scan go on instead of waiting for the cluster. At most one request is in flight, and
    during a streak of failures chunks are built only after the answer, as before.
    """

    client: Any
    options: BulkOptions = field(default_factory=BulkOptions)
    freshener: Freshener | None = None
    sleep: Callable[[float], None] = time.sleep
    clock_ms: Callable[[], int] = _now_ms

    def write(self, actions: Iterable[tuple[Action, Any]]) -> Iterator[BulkResult]:
        backoff = Backoff(
            self.options.initial_backoff, self.options.max_backoff, self.options.retry_for
        )
        retry: deque[_Pending] = deque()
        source = _Lookahead(iter(actions))
        ahead: list[_Pending] = []  # the next chunk, built while the last request was in flight
        while True:
            if backoff.failures:
                delay = backoff.delay()
                log.warning(
                    "the cluster is busy or unreachable: resending %d documents in %.1f s",
                    len(retry),
                    delay,
                )
                self.sleep(delay)
            chunk = ahead or self._chunk(retry, source)
            ahead = []
            if not chunk:
                return
            chunk, done = self._freshen(chunk)
            yield from done
            request = _Request(self._post, chunk) if chunk else None
            if request is not None and not backoff.failures:
                # If this raises (scan error, Ctrl-C), the request's answer is never read: its
                # documents count as unacknowledged, as for any interrupted request.
                ahead = self._chunk(retry, source)
            error = yield from self._answers(chunk, request, retry)
            if error is None and not retry:
                backoff.succeeded()
                continue
            backoff.failed()
            if backoff.exhausted:
                if error is not None:
                    raise error
                while retry:
                    pending = retry.popleft()
                    yield BulkResult(
                        pending.tag,
                        pending.meta["_index"],
                        pending.meta["_id"],
                        pending.status,
                        f"still retryable after {self.options.retry_for:.0f} s of retries",
                    )
                backoff.succeeded()

    def _chunk(self, retry: deque[_Pending], source: _Lookahead) -> list[_Pending]:
        """Retries first, then new actions, up to the chunk's size and byte caps."""
        chunk: list[_Pending] = []
        size = 0
        limit, max_bytes = self.options.chunk_size, self.options.max_chunk_bytes
        while retry and len(chunk) < limit:
            pending = retry.popleft()
            cost = _approx_bytes(pending.meta, pending.action[1])
            if chunk and size + cost > max_bytes:  # first of the next chunk
                retry.appendleft(pending)
                return chunk
            chunk.append(pending)
            size += cost
        if len(chunk) >= limit:
            return chunk
        # New actions: this loop runs once per document, so it is written out flat.
        read_ms = self.freshener.read_ms if self.freshener else None
        for action, tag in source:
            meta = next(iter(action[0].values()))  # action_meta, inline
            cost = _approx_bytes(meta, action[1])
            if chunk and size + cost > max_bytes:  # first of the next chunk
                source.push_back((action, tag))
                break
            chunk.append(_Pending(action, meta, tag, read_ms(tag) if read_ms else None))
            size += cost
            if len(chunk) >= limit:
                break
        return chunk

    def _freshen(self, chunk: list[_Pending]) -> tuple[list[_Pending], list[BulkResult]]:
        """Re-read what is too old to send; results for what needs no request any more."""
        freshener = self.freshener
        if freshener is None:
            return chunk, []
        now = self.clock_ms()
        oldest = min((p.read_ms for p in chunk if p.read_ms is not None), default=None)
        if oldest is None:
            return chunk, []
        # Most chunks are young for every index they write: one look per index, not per document.
        max_age = freshener.max_age_ms
        if now - oldest <= min(max_age(i) for i in {p.meta["_index"] for p in chunk}):
            return chunk, []
        stale = [
            n
            for n, p in enumerate(chunk)
            if p.read_ms is not None and now - p.read_ms > max_age(p.meta["_index"])
        ]
        if not stale:
            return chunk, []
        fresh = freshener.refresh([(chunk[n].action, chunk[n].tag) for n in stale])
        done: list[BulkResult] = []
        dropped: set[int] = set()
        for n, refreshed in zip(stale, fresh, strict=True):
            pending = chunk[n]
            if refreshed.action is None:
                dropped.add(n)
                status = GONE_STATUS if refreshed.error is None else 400
                meta = pending.meta
                done.append(
                    BulkResult(
                        pending.tag, meta["_index"], meta["_id"], status, refreshed.error, True
                    )
                )
            else:
                pending.replace(refreshed.action, refreshed.read_ms)
        log.info("re-read %d late snapshot writes (%d gone)", len(stale), len(dropped))
        return [p for n, p in enumerate(chunk) if n not in dropped], done

    def _post(self, chunk: list[_Pending]) -> Any:
        """One bulk request of the chunk's NDJSON lines (runs on the request's thread).

        The body goes as one text (elasticsearch-py would otherwise encode it line by line),
        and the engine is asked to answer only what `_answers` reads: a full answer is about
        230 bytes per document that the client library decodes, a filtered one about 70.
        """
        lines: list[str] = []
        append = lines.append
        for pending in chunk:
            append(meta_line(pending.action))
            if pending.action[1] is not None:
                append(pending.action[1])
        append("")
        body = "\n".join(lines)
        if is_elasticsearch_client(self.client):  # `body=` warns as deprecated in some 8.x
            return self.client.bulk(operations=body, filter_path=BULK_ANSWER_FIELDS)
        return self.client.bulk(body=body, filter_path=BULK_ANSWER_FIELDS)

    def _answers(
        self, chunk: list[_Pending], request: _Request | None, retry: deque[_Pending]
    ) -> Generator[BulkResult, None, Exception | None]:
        """The request's outcome per document; retryable documents go to `retry`. Returns a
        retryable request error (the whole chunk is in `retry` then); raises any other."""
        if request is None:
            return None
        try:
            response = request.result()
        except Exception as exc:
            if not is_retryable_error(exc):
                raise
            retry.extend(chunk)
            return exc
        body = getattr(response, "body", response)  # elasticsearch-py wraps the JSON
        items = body["items"]
        if len(items) != len(chunk):
            raise RuntimeError(f"bulk answered {len(items)} of {len(chunk)} documents")
        for pending, item in zip(chunk, items, strict=True):
            (op,) = item.values()  # the one operation of the answer
            status = op.get("status", 500)
            if type(status) is not int:
                status = int(status)
            doc_id = op.get("_id")
            if doc_id != pending.meta["_id"]:
                raise RuntimeError(f"bulk answer out of order: {doc_id!r}")
            if 200 <= status < 300:
                error = None
            elif status in RETRYABLE_STATUS:
                pending.status = status
                retry.append(pending)
                continue
            else:
                error = _error_text(op.get("error"), status)
            index = op.get("_index")
            yield BulkResult(
                pending.tag,
                index if type(index) is str else str(index),
                doc_id,
                status,
                error,
                pending.reread,
            )
        return None


class _Request(threading.Thread):
    """One call on a daemon thread (an interrupted run does not wait for its answer)."""

    def __init__(self, call: Callable[[list[_Pending]], Any], chunk: list[_Pending]) -> None:
        super().__init__(name="bulk-request", daemon=True)
        self._call, self._chunk = call, chunk
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._call(self._chunk)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


class _Lookahead:
    """The actions, with room to take one back (the one that did not fit into a chunk)."""

    def __init__(self, items: Iterator[tuple[Action, Any]]) -> None:
        self._items = items
        self._back: list[tuple[Action, Any]] = []

    def __iter__(self) -> Iterator[tuple[Action, Any]]:
        """For one `for` loop. A chain, not a generator: leaving the loop early closes nothing."""
        back, self._back = self._back, []
        return itertools.chain(back, self._items)

    def push_back(self, item: tuple[Action, Any]) -> None:
        self._back.append(item)


def _approx_bytes(meta: dict[str, Any], source: str | None) -> int:
    """The request bytes of one action, near enough for the chunk's byte cap."""
    return 120 + len(meta["_index"]) + len(meta["_id"]) + len(source or "")


def _error_text(error: Any, status: int) -> str:
    if isinstance(error, dict):
        kind = error.get("type", "error")
        reason = error.get("reason", "")
        caused = error.get("caused_by", {})
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason} ({caused['reason']})"
        return f"{kind}: {reason}"[:500]
    return f"HTTP {status}: {error}"[:500]
