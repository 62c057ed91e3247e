"""`reindex`: bulk(transform(scan())) for one or more tables, resumable, with bounded memory.

Pages from the parallel scan arrive on this thread; each item becomes a versioned bulk action;
a page's `LastEvaluatedKey` is checkpointed only once every document of the page (and of the
pages before it in its segment) was acknowledged, so `--resume` never skips an item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, RunState
from ddb2es_cli.config import DEFAULT_PAGE_LIMIT, Settings, TableSettings
from ddb2es_cli.errors import ConfigError, ConnectionFailed, Ddb2esError
from ddb2es_cli.ownership import create_owned_index, is_owned
from ddb2es_cli.segments import default_segments
from ddb2es_cli.sink import (
    BULK_LOAD_SETTINGS,
    DEFAULT_GC_DELETES_MS,
    Action,
    BulkOptions,
    BulkResult,
    BulkWriter,
    Failure,
    FailureLog,
    IndexStats,
    KeyJson,
    Refreshed,
    apply_index_settings,
    current_load_settings,
    gc_deletes_ms,
    index_action,
)
from ddb2es_cli.source import (
    CapacityLimiter,
    Page,
    SegmentTask,
    TableInfo,
    describe_table,
    get_items_consistently,
    install_fast_decode,
    key_for_state,
    scan_pages,
)
from ddb2es_cli.transform import (
    SHA_ID_PREFIX,
    Document,
    TableShape,
    TransformError,
    key_json,
    repair_version,
    scan_version,
    to_document,
)

log = logging.getLogger("ddb2es.reindex")


@dataclass
class ReindexOptions:
    segments: int = field(default_factory=default_segments)
    bulk: BulkOptions = field(default_factory=BulkOptions)
    max_rcu: float | None = None
    bulk_load_settings: bool | None = None  # None: only for indices this run creates
    failures_path: Path | None = Path("ddb2es-failures.ndjson")
    state_path: Path | None = None  # default: .ddb2es/reindex-<tables>.json
    resume: bool = False
    page_limit: int | None = DEFAULT_PAGE_LIMIT  # None: DynamoDB's own 1 MB pages
    fast_decode: bool = True
    refresh: bool = True
    # Documents of index X go to X + suffix (blue/green loads into new generations).
    index_suffix: str = ""
    # More settings for the load, restored afterwards like the others (e.g. index.gc_deletes).
    extra_load_settings: dict[str, Any] = field(default_factory=dict)
    # A full S3 export to read instead of scanning (runs of workers; one process: pages_from).
    from_export: str | None = None
    max_read_mbps: float | None = None  # this worker's cap on export bytes read per second


@dataclass
class TableSummary:
    table: str
    estimated_items: int
    scanned: int = 0
    indexed: int = 0
    conflicts: int = 0
    failed: int = 0
    gone: int = 0  # late writes whose item was deleted meanwhile (re-read, not sent)
    rcu: float = 0.0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def as_dict(self) -> dict[str, Any]:
        rate = self.scanned / self.duration if self.duration > 0 else 0.0
        return {
            "table": self.table,
            "estimated_items": self.estimated_items,
            "scanned": self.scanned,
            "indexed": self.indexed,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "gone": self.gone,
            "rcu": round(self.rcu, 1),
            "duration_s": round(self.duration, 2),
            "items_per_s": round(rate, 1),
        }


@dataclass
class ReindexSummary:
    tables: dict[str, TableSummary]
    indices: dict[str, IndexStats]
    failures: int
    failures_path: str | None
    failure_examples: list[Failure]
    restored: list[str]
    resumed: bool
    created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [t.as_dict() for t in self.tables.values()],
            "indices": {name: vars(s) for name, s in sorted(self.indices.items())},
            "failures": self.failures,
            "failures_path": self.failures_path if self.failures else None,
            "restored_settings": self.restored,
            "created_indices": self.created,
            "resumed": self.resumed,
        }


# --- plan ----------------------------------------------------------------------------------------


@dataclass
class TablePlan:
    settings: TableSettings
    info: TableInfo
    shape: TableShape

    def as_dict(self, segments: int) -> dict[str, Any]:
        return {
            "table": self.info.name,
            "hash_key": self.info.hash_key,
            "range_key": self.info.range_key,
            "estimated_items": self.info.item_count,
            "segments": segments,
            "type_attribute": self.shape.type_attribute,
            "index_prefix": self.shape.index_prefix,
            "default_index": (self.shape.index_prefix + self.shape.default_type).lower(),
        }


def plan_reindex(ddb: Any, tables: list[TableSettings]) -> list[TablePlan]:
    """What a run would read; reads only table descriptions (the `--dry-run` output)."""
    plans = []
    for table in tables:
        info = describe_table(ddb, table.name)
        plans.append(TablePlan(table, info, table.shape(info.hash_key, info.range_key)))
    return plans


def state_path_for(tables: list[TableSettings], state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    names = ",".join(sorted(t.name for t in tables))
    digest = hashlib.sha256(names.encode()).hexdigest()[:12]
    return state_dir / f"reindex-{digest}.json"


# --- run -----------------------------------------------------------------------------------------


class Progress(Protocol):
    """Where progress goes (the CLI draws bars); the core knows nothing of terminals.

    `done`: items a resumed run scanned before (the bar starts there, not at 0)."""

    def start(self, table: str, estimated_items: int, done: int = 0) -> None: ...

    def advance(self, table: str, items: int) -> None: ...


class _NoProgress:
    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        pass

    def advance(self, table: str, items: int) -> None:
        pass


@dataclass
class _PageAck:
    """A page waiting for its documents to be acknowledged."""

    page: Page
    remaining: int = 0
    sealed: bool = False  # all of the page's actions were handed to the bulk helper
    scanned: int = 0  # items of the segment up to and including this page


# What travels with each action: its page, and the item's key for a re-read if it sends late.
_DocTag = tuple[_PageAck, dict[str, Any]]


class RetriesExhausted(Ddb2esError):
    """The cluster kept answering 429/5xx for longer than the retry budget."""


class _Run:
    """One reindex run's mutable state; everything happens on the caller's thread."""

    def __init__(
        self,
        ddb: Any,
        es: Any,
        settings: Settings,
        plans: list[TablePlan],
        options: ReindexOptions,
        progress: Progress | None,
    ) -> None:
        self.ddb, self.es, self.settings, self.options = ddb, es, settings, options
        self.plans = {p.info.name: p for p in plans}
        self.progress = progress or _NoProgress()
        self.summaries = {p.info.name: TableSummary(p.info.name, p.info.item_count) for p in plans}
        self.indices: dict[str, IndexStats] = {}
        self.failures = FailureLog(options.failures_path)
        self.segment_queues: dict[tuple[str, int], deque[_PageAck]] = {}
        self.known_indices: set[str] = set()
        self.gc_deletes: dict[str, int] = {}
        self.created: list[str] = []
        self.restored: list[str] = []
        self._open(plans)

    def _open(self, plans: list[TablePlan]) -> None:
        """The single-process run: one state file, `--resume` from its checkpoints."""
        path = self.options.state_path or state_path_for([p.settings for p in plans])
        self.state = self._open_state(path)
        # Items per segment up to its checkpoint: a resumed run counts on from there.
        self.segment_scanned = {
            (table, n): seg.scanned
            for table, segments in self.state.tables.items()
            for n, seg in segments.items()
        }
        for plan in plans:
            done = sum(seg.scanned for seg in self.state.tables[plan.info.name].values())
            self.progress.start(plan.info.name, plan.info.item_count, done)

    def _open_state(self, path: Path) -> RunState:
        previous = RunState.load(path)
        if previous and previous.pending_restore:
            log.warning(
                "a previous run died before restoring index settings; restoring %s",
                ", ".join(sorted(previous.pending_restore)),
            )
            self._restore(previous)
        if self.options.resume:
            if previous is None or not previous.unfinished():
                raise ConfigError(f"nothing to resume: no unfinished run in {path}")
            if set(previous.tables) != set(self.plans):
                raise ConfigError(
                    f"--resume: {path} is a run of other tables "
                    f"({', '.join(sorted(previous.tables))})"
                )
            return previous
        if previous and previous.unfinished():
            log.warning(
                "an interrupted run left %s; starting over (use --resume to continue)", path
            )
        state = RunState(path)
        for name in self.plans:
            state.start_table(name, self.options.segments)
        state.save()
        return state

    # -- tasks and actions --

    def tasks(self) -> list[SegmentTask]:
        tasks = []
        for table, segments in self.state.tables.items():
            total = self.state.total_segments[table]
            for segment, seg_state in sorted(segments.items()):
                if not seg_state.done:
                    tasks.append(SegmentTask(table, segment, total, seg_state.key))
        # Interleave tables so every table makes progress from the start.
        return sorted(tasks, key=lambda t: (t.segment, t.table))

    def actions(self, pages: Iterator[Page]) -> Iterator[tuple[Action, Any]]:
        overlap = self.settings.version_overlap_ms
        for page in pages:
            if not self._accept(page):
                continue
            plan = self.plans[page.table]
            summary = self.summaries[page.table]
            summary.scanned += len(page.items)
            summary.rcu += page.consumed_rcu
            where = (page.table, page.segment)
            self.segment_scanned[where] = self.segment_scanned.get(where, 0) + len(page.items)
            ack = _PageAck(page, scanned=self.segment_scanned[where])
            self.segment_queues.setdefault((page.table, page.segment), deque()).append(ack)
            version = scan_version(page.started_ms, overlap)
            key_names = plan.shape.key_names
            for item in page.items:
                try:
                    doc = self._document(item, plan.shape)
                except TransformError as exc:
                    self._fail(page.table, item, plan.shape, None, None, exc.reason, exc.detail)
                    continue
                ack.remaining += 1
                yield index_action(doc, version), (ack, {k: item[k] for k in key_names})
            ack.sealed = True
            self.progress.advance(page.table, len(page.items))
            page.items = []  # the page waits for its acknowledgements; its items need not
            self._settle(page.table, page.segment)

    def _accept(self, page: Page) -> bool:
        """Whether to index a page (a run's worker drops pages of units it lost)."""
        return True

    def _document(self, item: dict[str, Any], shape: TableShape) -> Document:
        doc = to_document(item, shape)
        if self.options.index_suffix:
            doc = replace(doc, index=doc.index + self.options.index_suffix)
        self._ensure_index(doc.index)
        return doc

    # -- late writes (the bulk writer's Freshener) --

    def read_ms(self, tag: _DocTag) -> int:
        return tag[0].page.started_ms

    def max_age_ms(self, index: str) -> float:
        """Half the tombstone life; the other half is the request's budget to reach the engine."""
        return self.gc_deletes.get(index, DEFAULT_GC_DELETES_MS) / 2

    def refresh(self, stale: list[tuple[Action, _DocTag]]) -> list[Refreshed]:
        """Consistent re-reads of late writes' items, written with repair versions."""
        out: list[Refreshed] = []
        for (_action, tag), (item, read_ms) in zip(stale, self._reread(stale), strict=True):
            if item is None:
                out.append(Refreshed(None, read_ms))
                continue
            try:
                doc = self._document(item, self.plans[tag[0].page.table].shape)
            except TransformError as exc:
                out.append(Refreshed(None, read_ms, f"{exc.reason}: {exc.detail}"))
                continue
            version = repair_version(read_ms, self.settings.repair_margin)
            out.append(Refreshed(index_action(doc, version), read_ms))
        return out

    def _reread(
        self, stale: list[tuple[Action, _DocTag]]
    ) -> list[tuple[dict[str, Any] | None, int]]:
        found: dict[int, tuple[dict[str, Any] | None, int]] = {}
        by_table: dict[str, list[int]] = {}
        for n, (_action, tag) in enumerate(stale):
            by_table.setdefault(tag[0].page.table, []).append(n)
        for table, positions in by_table.items():
            fresh = get_items_consistently(self.ddb, table, [stale[n][1][1] for n in positions])
            found.update(zip(positions, fresh, strict=True))
        return [found[n] for n in range(len(stale))]

    # -- results --

    def record(self, tag: _DocTag | None, result: BulkResult) -> None:
        if result.retryable:
            raise RetriesExhausted(
                f"the cluster answered {result.status} for {result.index}/{result.id} for "
                "longer than the retry budget; progress is saved: rerun with --resume"
            )
        index, doc_id, status, error = result.index, result.id, result.status, result.error
        result_tag = tag[0] if tag else None
        stats = self.indices.setdefault(index, IndexStats())
        stats.reread += result.reread
        table = result_tag.page.table if result_tag else "?"
        summary = self.summaries.get(table)
        if result.gone:
            stats.gone += 1
            if summary:
                summary.gone += 1
        elif error is None:
            stats.indexed += 1
            if summary:
                summary.indexed += 1
        elif status == 409:
            stats.conflicts += 1
            if summary:
                summary.conflicts += 1
        else:
            stats.failed += 1
            if summary:
                summary.failed += 1
            self.failures.write(Failure(table, _key_of(doc_id), index, doc_id, f"{status} {error}"))
        if result_tag is not None:
            result_tag.remaining -= 1
            self._settle(table, result_tag.page.segment)

    def _fail(
        self,
        table: str,
        item: dict[str, Any],
        shape: TableShape,
        index: str | None,
        doc_id: str | None,
        reason: str,
        detail: str,
    ) -> None:
        summary = self.summaries[table]
        summary.failed += 1
        self.failures.write(
            Failure(table, _item_key(item, shape), index, doc_id, f"{reason}: {detail}")
        )

    def _settle(self, table: str, segment: int) -> None:
        """Checkpoint the segment up to its last page whose documents are all acknowledged."""
        waiting = self.segment_queues.get((table, segment))
        last: _PageAck | None = None
        while waiting and waiting[0].sealed and waiting[0].remaining == 0:
            last = waiting.popleft()
        if last is not None:
            self._checkpoint(last)

    def _checkpoint(self, last: _PageAck) -> None:
        page = last.page
        self.state.checkpoint(page.table, page.segment, page.last_key, last.scanned)

    def _remember_restore(self, index: str, previous: dict[str, Any]) -> bool:
        """Record the settings to put back BEFORE changing them; False: someone else did."""
        self.state.pending_restore[index] = previous
        self.state.save()
        return True

    def _forget_restore(self, index: str) -> None:
        self.state.pending_restore.pop(index, None)

    # -- index settings --

    def _ensure_index(self, index: str) -> None:
        if index in self.known_indices:
            return
        self.known_indices.add(index)
        created = False
        if not self.es.indices.exists(index=index):
            try:
                created = create_owned_index(self.es, index, self.settings.deployment_name)
            except Exception as exc:  # rejected: the bulk answer will say why per document
                log.warning("could not create index %s: %s", index, exc)
        if created:
            self.created.append(index)
        tune = self.options.bulk_load_settings
        deployment = self.settings.deployment_name
        if tune is True and not created and not is_owned(self.es, index, deployment):
            log.warning("%s is not this deployment's index: bulk-load settings left alone", index)
            tune = False
        if tune is True or (tune is None and created):
            values = {**BULK_LOAD_SETTINGS, **self.options.extra_load_settings}
            try:
                previous = current_load_settings(self.es, index, values)
                if self._remember_restore(index, previous):
                    apply_index_settings(self.es, index, values)
            except Ddb2esError:
                raise
            except Exception as exc:
                log.warning("could not apply bulk-load settings to %s: %s", index, exc)
                self._forget_restore(index)
        self.gc_deletes[index] = gc_deletes_ms(self.es, index)

    def _restore(self, state: RunState) -> None:
        self.restored.extend(restore_settings(self.es, state))

    def finish(self) -> None:
        """Put index settings back and make the documents visible; runs after errors too."""
        self._restore(self.state)
        if self.options.refresh and self.known_indices:
            try:
                self.es.indices.refresh(index=",".join(sorted(self.known_indices)))
            except Exception as exc:
                log.warning("final refresh failed: %s", exc)
        self.failures.close()


def restore_settings(es: Any, state: RunState) -> list[str]:
    """Put back the index settings a bulk load changed; what fails stays pending for next time."""
    restored = []
    for index, values in list(state.pending_restore.items()):
        try:
            if es.indices.exists(index=index):
                apply_index_settings(es, index, values)
                restored.append(index)
            state.pending_restore.pop(index)
        except Exception as exc:
            log.error("could not restore settings of %s: %s (will retry next run)", index, exc)
    state.save()
    return restored


def _key_of(doc_id: str) -> Any:
    """The key in document form, as every failures-file line carries it."""
    if doc_id.startswith(SHA_ID_PREFIX):
        return doc_id  # the key is in the document's _ddb2es_key
    return KeyJson(doc_id)


def _item_key(item: dict[str, Any], shape: TableShape) -> Any:
    try:
        return json.loads(key_json(item, shape.key_names))
    except TransformError:
        return key_for_state({k: v for k, v in item.items() if k in shape.key_names})


# Pages from somewhere else than a Scan (an S3 export: ddb2es_cli/export/reader.py): given the
# unfinished tasks (segment n = unit n, `options.segments` units), yields their pages.
PagesFactory = Callable[[list[SegmentTask]], Generator[Page, None, None]]


def run_reindex(
    ddb: Any,
    es: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReindexOptions,
    progress: Progress | None = None,
    pages_from: PagesFactory | None = None,
) -> ReindexSummary:
    """Rebuild the documents of `tables` into the live indices (upsert; deletes nothing).

    With `pages_from` (a snapshot such as an export) late writes are not re-read: a consistent
    re-read costs the read capacity a snapshot source exists to save."""
    if options.segments < 1:
        raise ConfigError("--segments must be at least 1")
    plans = plan_reindex(ddb, tables)
    if options.fast_decode:
        install_fast_decode(ddb)
    run = _Run(ddb, es, settings, plans, options, progress)
    writer = BulkWriter(es, options.bulk, freshener=run if pages_from is None else None)
    limiter = CapacityLimiter(options.max_rcu)
    completed = False
    try:
        pages = (
            scan_pages(
                ddb,
                run.tasks(),
                workers=options.segments,
                limiter=limiter,
                page_limit=options.page_limit,
            )
            if pages_from is None
            else pages_from(run.tasks())
        )
        try:
            for result in writer.write(run.actions(pages)):
                run.record(result.tag, result)
        finally:
            pages.close()  # stops the scan threads at once, also on Ctrl-C
        completed = True
    except Ddb2esError:
        raise
    except Exception as exc:
        raise _as_run_error(exc, settings) from exc
    finally:
        for summary in run.summaries.values():
            summary.finished = time.monotonic()
        run.state.save()
        run.finish()
        if completed:
            run.state.remove()
    return ReindexSummary(
        run.summaries,
        run.indices,
        run.failures.count,
        str(options.failures_path) if options.failures_path else None,
        run.failures.examples,
        run.restored,
        options.resume,
        run.created,
    )


def _as_run_error(exc: Exception, settings: Settings) -> Ddb2esError:
    """Connection loss and auth errors stop the run with one clear line (state is saved)."""
    from ddb2es_cli.clients import call_search

    def reraise() -> None:
        raise exc

    try:
        call_search(settings.search, reraise)
    except Ddb2esError as known:
        return ConnectionFailed(f"{known}; progress is saved: rerun with --resume")
    except Exception:
        pass
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return Ddb2esError(
        f"reindex stopped: {type(exc).__name__}: {text}; progress is saved: rerun with --resume"
    )
