"""`reindex`: bulk(transform(scan())) for one or more tables, resumable, with bounded memory.

Pages from the parallel scan arrive on this thread; each item becomes a versioned bulk action;
a page's `LastEvaluatedKey` is checkpointed only once every document of the page (and of the
pages before it in its segment) was acknowledged, so `--resume` never skips an item.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import RunState
from ddb2es_cli.clients import run_stopped
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.failures import key_of_id
from ddb2es_cli.gc_tuning import collector_tuned_for_load
from ddb2es_cli.index_settings import RESTORE_RETRY_FOR
from ddb2es_cli.index_settings import restore_settings as restore_settings
from ddb2es_cli.ownership import create_owned_index, is_owned
from ddb2es_cli.reindex_plan import Progress as Progress
from ddb2es_cli.reindex_plan import ReindexOptions as ReindexOptions
from ddb2es_cli.reindex_plan import ReindexSummary as ReindexSummary
from ddb2es_cli.reindex_plan import TablePlan as TablePlan
from ddb2es_cli.reindex_plan import TableSummary as TableSummary
from ddb2es_cli.reindex_plan import _NoProgress
from ddb2es_cli.reindex_plan import plan_reindex as plan_reindex
from ddb2es_cli.reindex_plan import state_path_for as state_path_for
from ddb2es_cli.sink import (
    BULK_LOAD_SETTINGS,
    DEFAULT_GC_DELETES_MS,
    Action,
    BulkResult,
    BulkWriter,
    Failure,
    FailureLog,
    IndexStats,
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
    get_items_consistently,
    install_fast_decode,
    key_for_state,
    scan_pages,
)
from ddb2es_cli.transform import (
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
            shape = plan.shape
            hash_key, range_key = shape.hash_key, shape.range_key
            for item in page.items:
                try:
                    doc = self._document(item, shape)
                except TransformError as exc:
                    self._fail(page.table, item, shape, f"{exc.reason}: {exc.detail}")
                    continue
                ack.remaining += 1
                # The key, for a re-read if the write goes late (spelled out: once per item).
                key = (
                    {hash_key: item[hash_key]}
                    if range_key is None
                    else {hash_key: item[hash_key], range_key: item[range_key]}
                )
                yield index_action(doc, version), (ack, key)
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
        if doc.index not in self.known_indices:  # once per index; this runs once per item
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
        stats = self.indices.get(index) or self.indices.setdefault(index, IndexStats())
        if result.reread:
            stats.reread += 1
        table = result_tag.page.table if result_tag else "?"
        summary = self.summaries.get(table)
        if error is None:
            if result.gone:
                stats.gone += 1
                if summary:
                    summary.gone += 1
            else:
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
            self.failures.write(
                Failure(table, key_of_id(doc_id), index, doc_id, f"{status} {error}")
            )
        if result_tag is not None:
            result_tag.remaining -= 1
            if result_tag.remaining == 0:  # only then can its segment's checkpoint move
                self._settle(table, result_tag.page.segment)

    def _fail(self, table: str, item: dict[str, Any], shape: TableShape, reason: str) -> None:
        """An item that could not become a document: no index, no id to name."""
        summary = self.summaries[table]
        summary.failed += 1
        self.failures.write(Failure(table, _item_key(item, shape), None, None, reason))

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
        # A restart as the load ends is waited out; a cluster gone for good keeps them pending.
        budget = min(RESTORE_RETRY_FOR, self.options.bulk.retry_for or RESTORE_RETRY_FOR)
        self.restored.extend(restore_settings(self.es, state, budget))

    def finish(self) -> None:
        """Put index settings back and make the documents visible; runs after errors too."""
        self._restore(self.state)
        if self.options.refresh and self.known_indices:
            try:
                self.es.indices.refresh(index=",".join(sorted(self.known_indices)))
            except Exception as exc:
                log.warning("final refresh failed: %s", exc)
        self.failures.close()


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
            with collector_tuned_for_load():
                for result in writer.write(run.actions(pages)):
                    run.record(result.tag, result)
        finally:
            pages.close()  # stops the scan threads at once, also on Ctrl-C
        completed = True
    except Ddb2esError:
        raise
    except Exception as exc:
        raise run_stopped(exc, settings.search) from exc
    finally:
        for summary in run.summaries.values():
            summary.finished = time.monotonic()
        run.state.save()
        run.finish()
        if completed and run.state.pending_restore:
            # The state file is what the next run restores them from: keep it.
            log.warning(
                "settings of %s still have bulk-load values; the next reindex of these tables "
                "puts them back (kept %s)",
                ", ".join(sorted(run.state.pending_restore)),
                run.state.path,
            )
        elif completed:
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
