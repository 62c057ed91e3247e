"""Search side of a rebuild: versioned bulk writes through the client's own helpers, per-index
stats, the failures file, and index settings for bulk loads.

Documents go to the helpers as pre-serialised JSON text (the serialisers pass strings through),
so the exact numbers of the transform reach the cluster untouched.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ddb2es_cli.clients import helpers_for
from ddb2es_cli.transform import Document

RETRYABLE_STATUS = frozenset({429, 503})
CONFLICT_STATUS = 409
Action = tuple[dict[str, Any], str | None]  # (metadata line, document JSON or None)


def index_action(doc: Document, version: int) -> Action:
    """A bulk `index` with an external version (SPEC section 1)."""
    meta = {"_index": doc.index, "_id": doc.id, "version": version, "version_type": "external_gte"}
    return {"index": meta}, doc.source


def delete_action(index: str, doc_id: str, version: int) -> Action:
    meta = {"_index": index, "_id": doc_id, "version": version, "version_type": "external_gte"}
    return {"delete": meta}, None


@dataclass
class IndexStats:
    indexed: int = 0
    conflicts: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Failure:
    table: str
    key: Any
    index: str | None
    id: str | None
    reason: str


class FailureLog:
    """NDJSON failures file, opened on the first failure only (no empty files on clean runs)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self.examples: list[Failure] = []
        self._handle: IO[str] | None = None

    def write(self, failure: Failure) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(failure)
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(asdict(failure), default=str, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class BulkResult:
    """One document's outcome; `tag` is whatever the caller sent along with the action."""

    tag: Any
    index: str
    id: str
    status: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None or self.status == CONFLICT_STATUS


@dataclass
class BulkOptions:
    chunk_size: int = 2000
    max_chunk_bytes: int = 10 * 1024 * 1024
    workers: int = 1
    max_retries: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0


@dataclass
class _Pending:
    action: Action
    tag: Any


@dataclass
class BulkWriter:
    """Sends (action, tag) pairs with the engine's bulk helpers and reports every outcome.

    429/503 answers (per item or for the whole request) are retried with exponential backoff and
    jitter; only the documents that failed are resent.
    """

    client: Any
    options: BulkOptions = field(default_factory=BulkOptions)
    sleep: Callable[[float], None] = time.sleep

    def write(self, actions: Iterable[tuple[Action, Any]]) -> Iterator[BulkResult]:
        retry: list[_Pending] = []
        source: Iterable[_Pending] = (_Pending(a, t) for a, t in actions)
        attempt = 0
        while True:
            yield from self._one_pass(source, retry)
            if not retry or attempt >= self.options.max_retries:
                break
            attempt += 1
            delay = min(self.options.max_backoff, self.options.initial_backoff * 2**attempt)
            self.sleep(random.uniform(delay / 2, delay))
            source, retry = retry, []
        for pending in retry:
            meta = next(iter(pending.action[0].values()))
            yield BulkResult(
                pending.tag,
                meta["_index"],
                meta["_id"],
                429,
                "retries exhausted: the cluster kept answering 429/503",
            )

    def _one_pass(self, source: Iterable[_Pending], retry: list[_Pending]) -> Iterator[BulkResult]:
        # Keyed by _id alone: through an alias, results name the concrete index.
        inflight: dict[str, list[_Pending]] = {}
        lock = threading.Lock()  # parallel_bulk pulls actions on its own threads

        def actions() -> Iterator[Action]:
            for pending in source:
                meta = next(iter(pending.action[0].values()))
                with lock:
                    inflight.setdefault(meta["_id"], []).append(pending)
                yield pending.action

        helpers = helpers_for(self.client)
        common: dict[str, Any] = {
            "chunk_size": self.options.chunk_size,
            "max_chunk_bytes": self.options.max_chunk_bytes,
            "raise_on_error": False,
            "expand_action_callback": _identity,
        }
        if self.options.workers > 1:
            results = helpers.parallel_bulk(
                self.client,
                actions(),
                thread_count=self.options.workers,
                queue_size=self.options.workers,
                **common,
            )
        else:
            results = helpers.streaming_bulk(
                self.client,
                actions(),
                max_retries=self.options.max_retries,
                initial_backoff=self.options.initial_backoff,
                max_backoff=self.options.max_backoff,
                yield_ok=True,
                **common,
            )
        for ok, info in results:
            op = next(iter(info.values()))
            index, doc_id = str(op.get("_index")), str(op.get("_id"))
            with lock:
                pending = _take(inflight, index, doc_id)
            status = int(op.get("status", 200 if ok else 500))
            if pending is not None and not ok and status in RETRYABLE_STATUS:
                retry.append(pending)
                continue
            error = None if ok else _error_text(op.get("error"), status)
            yield BulkResult(pending.tag if pending else None, index, doc_id, status, error)


def _take(inflight: dict[str, list[_Pending]], index: str, doc_id: str) -> _Pending | None:
    """The in-flight action this result answers: same id, same index when there is a choice."""
    waiting = inflight.get(doc_id)
    if not waiting:
        return None
    chosen = next(
        (i for i, p in enumerate(waiting) if next(iter(p.action[0].values()))["_index"] == index), 0
    )
    pending = waiting.pop(chosen)
    if not waiting:
        del inflight[doc_id]
    return pending


def _identity(action: Action) -> Action:
    return action


def _error_text(error: Any, status: int) -> str:
    if isinstance(error, dict):
        kind = error.get("type", "error")
        reason = error.get("reason", "")
        caused = error.get("caused_by", {})
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason} ({caused['reason']})"
        return f"{kind}: {reason}"[:500]
    return f"HTTP {status}: {error}"[:500]


# --- bulk-load settings ------------------------------------------------------------------------

BULK_LOAD_SETTINGS = {"refresh_interval": "-1", "number_of_replicas": 0}


def current_load_settings(
    client: Any, index: str, names: Iterable[str] = tuple(BULK_LOAD_SETTINGS)
) -> dict[str, Any]:
    """The values a bulk load changes, as they are now (None: not set, the engine default)."""
    wanted = list(names)
    found = client.indices.get_settings(index=index, name=",".join(f"index.{n}" for n in wanted))
    first: dict[str, Any] = next(iter(found.values()), {})
    settings = first.get("settings", {}).get("index", {})
    return {name: settings.get(name) for name in wanted}


def apply_index_settings(client: Any, index: str, values: dict[str, Any]) -> None:
    client.indices.put_settings(index=index, body={"index": values})
