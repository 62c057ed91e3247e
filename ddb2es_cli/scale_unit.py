"""One worker's share of a run as a reindex `_Run`: it claims units one at a time and
checkpoints a unit's pages only once acknowledged and only while it still owns the unit
(a lost lease drops the pending pages); a heartbeat thread keeps its leases.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from ddb2es_cli.config import Settings
from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.reindex import Progress, ReindexOptions, TablePlan, _PageAck, _Run
from ddb2es_cli.scale_run import CHECKPOINT_EVERY, COUNTERS
from ddb2es_cli.source import Page, Reader, SegmentTask
from ddb2es_cli.state import RunRecord, StateBackend, UnitRecord, WorkerRecord

log = logging.getLogger("ddb2es.scale")


class UnitRun(_Run):
    """A worker of a shared run: claims units, checkpoints them while it owns them."""

    def __init__(
        self,
        ddb: Any,
        es: Any,
        settings: Settings,
        plans: list[TablePlan],
        options: ReindexOptions,
        progress: Progress | None,
        backend: StateBackend,
        run: RunRecord,
        worker_id: str,
    ) -> None:
        self.backend, self.run, self.worker_id = backend, run, worker_id
        self.guard = threading.RLock()
        self.owned: dict[tuple[str, int], UnitRecord] = {}
        self.claims: dict[tuple[str, int], int] = {}
        self.lost: set[tuple[str, int]] = set()
        self.unsaved: dict[tuple[str, int], tuple[dict[str, Any], int]] = {}
        self.last_save: dict[tuple[str, int], float] = {}
        self.error: BaseException | None = None
        self.finishing = False
        self.worker = WorkerRecord(
            worker_id,
            failures_path=str(options.failures_path) if options.failures_path else None,
        )
        self._beat_stop = threading.Event()
        self._beater: threading.Thread | None = None
        super().__init__(ddb, es, settings, plans, options, progress)

    def _open(self, plans: list[TablePlan]) -> None:
        self.segment_scanned = {}
        for plan in plans:
            self.progress.start(plan.info.name, plan.info.item_count, 0)

    # -- claiming --

    def next_task(self, stop: threading.Event) -> SegmentTask | None:
        """The next unit this worker can claim now (None: none free, none expired).

        Never waits: a round of reading ends when no thread can claim anything, so the bulk
        writer flushes its last partial chunk and the units read in the round can finish."""
        self.raise_error()
        if stop.is_set():
            return None
        unit = self.backend.claim(self.run.run_id, self.worker_id)
        if unit is None:
            return None
        ident = unit.ident
        with self.guard:
            self.owned[ident] = unit
            self.lost.discard(ident)
            self.claims[ident] = self.claims.get(ident, 0) + 1
            self.segment_scanned[ident] = unit.scanned
            self.segment_queues[ident] = deque()
        if len(unit.owners) > 1 and unit.owners[-2] != self.worker_id:
            log.warning("took over unit %s #%d from %s", unit.table, unit.number, unit.owners[-2])
        position = unit.position or {}
        return SegmentTask(unit.table, unit.number, unit.total, position.get("key"), unit.position)

    def all_done(self) -> bool:
        return all(u.done for u in self.backend.units(self.run.run_id))

    def reader(self, inner: Reader) -> Reader:
        """`inner`'s pages of a unit, tagged with the claim; stops when the unit is lost."""

        def read(task: SegmentTask, stop: threading.Event) -> Iterator[Page]:
            ident = (task.table, task.segment)
            claim = self.claims.get(ident, 0)
            for page in inner(task, stop):
                if ident in self.lost or self.claims.get(ident) != claim:
                    return
                page.claim = claim
                yield page

        return read

    def _accept(self, page: Page) -> bool:
        self.raise_error()
        ident = (page.table, page.segment)
        return ident not in self.lost and self.claims.get(ident) == page.claim

    # -- checkpoints --

    def _checkpoint(self, last: _PageAck) -> None:
        page = last.page
        ident = (page.table, page.segment)
        if not self._accept(page):
            return
        if page.position is not None:  # a reader with its own positions (S3 exports)
            done, position = page.done, page.position
        else:
            done, position = page.last_key is None, {"key": page.last_key}
        if not done and time.monotonic() - self.last_save.get(ident, 0.0) < CHECKPOINT_EVERY:
            self.unsaved[ident] = (position, last.scanned)
            return
        self._save(ident, position, last.scanned, done)

    def _save(
        self, ident: tuple[str, int], position: dict[str, Any], scanned: int, done: bool
    ) -> None:
        unit = self.owned.get(ident)
        if unit is None:
            return
        self.unsaved.pop(ident, None)
        self.last_save[ident] = time.monotonic()
        if self.backend.checkpoint(self.run.run_id, self.worker_id, unit, position, scanned, done):
            if done:
                with self.guard:
                    self.owned.pop(ident, None)
            return
        self._lose(ident)

    def _lose(self, ident: tuple[str, int]) -> None:
        log.warning(
            "lost unit %s #%d to another worker (lease expired): dropping its pending pages",
            *ident,
        )
        with self.guard:
            self.lost.add(ident)
            self.owned.pop(ident, None)
            self.segment_queues.pop(ident, None)
            self.unsaved.pop(ident, None)

    # -- settings to restore: one record per index, first writer wins --

    def _remember_restore(self, index: str, previous: dict[str, Any]) -> bool:
        return self.backend.put_restore(self.run.run_id, index, previous)

    def _forget_restore(self, index: str) -> None:
        pass  # the record stays: the finisher puts back whatever it says

    # -- heartbeat --

    def counts(self) -> dict[str, dict[str, float]]:
        out = {}
        for table, summary in self.summaries.items():
            values = summary.as_dict()
            out[table] = {name: float(values[name]) for name in COUNTERS}
        return out

    def beat(self) -> None:
        with self.guard:
            owned = list(self.owned.values())
        self.worker.counts = self.counts()
        self.worker.indices = sorted(self.known_indices)
        self.worker.beats += 1
        self.worker.heartbeat = time.time()
        for unit in self.backend.heartbeat(self.run.run_id, self.worker, owned):
            self._lose(unit.ident)
        if self.finishing:
            self.backend.renew_finish(self.run.run_id, self.worker_id)

    def start_heartbeat(self) -> None:
        self.beat()
        self._beater = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self._beater.start()

    def _beat_loop(self) -> None:
        while not self._beat_stop.wait(self.backend.lease_seconds / 3):
            try:
                self.beat()
            except BaseException as exc:  # raised on the main thread at its next page
                self.error = exc
                return

    def stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._beater is not None:
            self._beater.join(timeout=10)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Save what is acknowledged, give back unfinished units, publish the final counts."""
        with contextlib.suppress(Ddb2esError):
            for ident, (position, scanned) in list(self.unsaved.items()):
                if ident not in self.lost:
                    self._save(ident, position, scanned, False)
            for unit in list(self.owned.values()):
                self.backend.release_unit(self.run.run_id, self.worker_id, unit)
        with self.guard:
            self.owned.clear()
        self.worker.finished = True
        if self.error is None:
            with contextlib.suppress(Ddb2esError):
                self.beat()
        self.failures.close()
