"""One reindex run spread over many worker processes on one or many machines.

A run lives in a state backend (ddb2es_cli.state): its record, its work units, the settings to
restore, the workers. Any process can become a worker (`--join RUN_ID`); each worker's scan
threads claim units one at a time, so fast workers take more and skewed units leave no worker
idle. Pages are checkpointed per unit only once every document of them was acknowledged, and
only while the worker still owns the unit. The one-time steps happen once: index creation is
idempotent, the first worker to tune an index records the previous settings before changing
them, and the finisher (the one worker whose begin_finish wins once every unit is done) restores
them, refreshes, marks the run done and releases the cluster run lock.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import math
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ddb2es_cli.clients import run_stopped
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError, ExitStatus
from ddb2es_cli.ownership import RunLock
from ddb2es_cli.reindex import (
    Progress,
    ReindexOptions,
    ReindexSummary,
    TablePlan,
    TableSummary,
    _PageAck,
    _Run,
    plan_reindex,
)
from ddb2es_cli.segments import default_segments
from ddb2es_cli.sink import BulkWriter, apply_index_settings
from ddb2es_cli.source import (
    CapacityLimiter,
    Page,
    Reader,
    SegmentTask,
    TableInfo,
    install_fast_decode,
    scan_pages,
    segment_reader,
)
from ddb2es_cli.state import (
    DEFAULT_LEASE_SECONDS,
    RunRecord,
    StateBackend,
    UnitRecord,
    WorkerRecord,
    new_run_id,
    new_worker_id,
    open_state,
)
from ddb2es_cli.state.records import LeaseWatch

log = logging.getLogger("ddb2es.scale")

UNIT_BYTES = 256 * 1024 * 1024  # about one unit per 256 MB of table
MAX_UNITS = 1000
CHECKPOINT_EVERY = 1.0  # seconds between a unit's checkpoints (its last one is always written)
COUNTERS = ("scanned", "indexed", "conflicts", "failed", "gone", "rcu")


@dataclass(frozen=True)
class StateOptions:
    """Where a run's state lives and how long a silent worker keeps its units."""

    table: str | None = None  # None: the file backend under `state_dir`
    state_dir: Path | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def open(self, ddb: Any) -> StateBackend:
        return open_state(self.table, ddb, self.state_dir, self.lease_seconds)


def default_units(info: TableInfo) -> int:
    """Many more units than workers: 4 per core at least, about one per 256 MB, at most 1000."""
    by_size = math.ceil(info.size_bytes / UNIT_BYTES)
    return max(default_segments(), min(MAX_UNITS, by_size))


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "?"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def create_run(
    backend: StateBackend,
    ddb: Any,
    tables: list[TableSettings],
    options: ReindexOptions,
    units: int | None = None,
    command: str = "reindex",
    *,
    run_id: str | None = None,
    release_lock: bool = True,
) -> RunRecord:
    """Write the run record and its units; nothing is read from the tables yet.
    `release_lock=False`: the caller (reload) holds the run lock past the load."""
    plans = plan_reindex(ddb, tables)
    backend.check()
    run = RunRecord(
        run_id=run_id or new_run_id(),
        command=command,
        tables=[asdict(t) for t in tables],
        units={p.info.name: units or default_units(p.info) for p in plans},
        estimated_items={p.info.name: p.info.item_count for p in plans},
        options={
            "page_limit": options.page_limit,
            "bulk_load_settings": options.bulk_load_settings,
            "refresh": options.refresh,
            "index_suffix": options.index_suffix,
            "extra_load_settings": options.extra_load_settings,
            "from_export": options.from_export,
            "lease_seconds": backend.lease_seconds,
            "backend": backend.name,
            "release_lock": release_lock,
        },
        who=_who(),
        created=time.time(),
    )
    records = [
        UnitRecord(table, n, total) for table, total in run.units.items() for n in range(total)
    ]
    backend.create_run(run, records)
    return run


def tables_of(run: RunRecord) -> list[TableSettings]:
    return [TableSettings(**t) for t in run.tables]


def options_of(run: RunRecord, mine: ReindexOptions) -> ReindexOptions:
    """The run's options where every worker must agree; this worker's own for the rest
    (bulk sizes, --max-rcu, failures file)."""
    given = run.options
    return replace(
        mine,
        page_limit=given.get("page_limit", mine.page_limit),
        bulk_load_settings=given.get("bulk_load_settings", mine.bulk_load_settings),
        refresh=bool(given.get("refresh", mine.refresh)),
        index_suffix=str(given.get("index_suffix", "")),
        extra_load_settings=dict(given.get("extra_load_settings", {})),
        from_export=given.get("from_export"),
        resume=False,
    )


def worker_failures_path(path: Path | None, worker_id: str) -> Path | None:
    """One failures file per worker: processes never interleave lines."""
    if path is None:
        return None
    return path.with_name(f"{path.stem}-{worker_id}{path.suffix}")


# --- one worker --------------------------------------------------------------------------------


class _UnitRun(_Run):
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


@dataclass
class WorkResult:
    """What one worker did, and where the run stands."""

    run: RunRecord
    worker_id: str
    summary: ReindexSummary
    finished_run: bool  # this worker was the finisher
    run_summary: dict[str, Any] | None = None  # the run's totals once it is done


def work(
    ddb: Any,
    es: Any,
    settings: Settings,
    backend: StateBackend,
    run_id: str,
    options: ReindexOptions,
    progress: Progress | None = None,
    *,
    worker_id: str | None = None,
    threads: int | None = None,
    reader: Callable[[Any, ReindexOptions, CapacityLimiter], Reader] | None = None,
) -> WorkResult:
    """Be one worker of run `run_id` until every unit is done (then finish it if nobody did)."""
    run = backend.load_run(run_id)
    if run.status != "running":
        raise ConfigError(f"run {run_id} is {run.status}: nothing left to do")
    worker_id = worker_id or new_worker_id()
    tables = tables_of(run)
    options = options_of(run, options)
    options = replace(options, failures_path=worker_failures_path(options.failures_path, worker_id))
    plans = plan_reindex(ddb, tables)
    if options.fast_decode:
        install_fast_decode(ddb)
    lock = RunLock(
        es,
        settings.deployment_name,
        sorted(run.table_names),
        run.command,
        token=run_id,
    )
    lock.acquire()  # another run of these tables: LockHeld; a worker of this run: passes
    worker = _UnitRun(ddb, es, settings, plans, options, progress, backend, run, worker_id)
    if reader is None and options.from_export:
        from ddb2es_cli.export.rebuild import unit_reader

        reader = unit_reader(settings, options.from_export, [t.name for t in tables])
    # Exports are not re-read item by item when late: that would cost the capacity they save.
    writer = BulkWriter(es, options.bulk, freshener=None if options.from_export else worker)
    limiter = CapacityLimiter(options.max_rcu)
    make_reader = reader or (
        lambda client, opts, lim: segment_reader(client, page_limit=opts.page_limit, limiter=lim)
    )
    completed = False
    try:
        worker.start_heartbeat()
        poll = min(1.0, max(0.05, backend.lease_seconds / 4))
        reader_of_units = worker.reader(make_reader(ddb, options, limiter))
        # Rounds: each ends when no thread can claim a unit; then wait for other workers'
        # units to finish or for a dead worker's lease to expire.
        while True:
            pages = scan_pages(
                ddb,
                worker.next_task,
                workers=threads or min(default_segments(), sum(run.units.values())),
                limiter=limiter,
                page_limit=options.page_limit,
                reader=reader_of_units,
            )
            try:
                for result in writer.write(worker.actions(pages)):
                    worker.record(result.tag, result)
            finally:
                pages.close()
            worker.raise_error()
            if worker.all_done():
                break
            time.sleep(poll)
        completed = True
    except Ddb2esError:
        raise
    except Exception as exc:
        raise run_stopped(exc, settings.search) from exc
    finally:
        for summary in worker.summaries.values():
            summary.finished = time.monotonic()
        worker.finish()
        lock.stop()
        if not completed:
            worker.stop_heartbeat()
    try:
        finished = _finish_when_done(backend, es, run, worker, lock, options)
    finally:
        worker.stop_heartbeat()
    mine = ReindexSummary(
        worker.summaries,
        worker.indices,
        worker.failures.count,
        str(options.failures_path) if options.failures_path else None,
        worker.failures.examples,
        worker.restored,
        False,
        worker.created,
    )
    latest = backend.load_run(run_id)
    return WorkResult(latest, worker_id, mine, finished, run_status(backend, run_id))


def _finish_when_done(
    backend: StateBackend,
    es: Any,
    run: RunRecord,
    worker: _UnitRun,
    lock: RunLock,
    options: ReindexOptions,
) -> bool:
    """Try to become the finisher until the run is done (a dead finisher's lease expires)."""
    poll = min(1.0, max(0.05, backend.lease_seconds / 4))
    while True:
        if backend.load_run(run.run_id).status != "running":
            return False
        if backend.begin_finish(run.run_id, worker.worker_id):
            worker.finishing = True
            _finish(backend, es, run, worker, lock, options)
            return True
        time.sleep(poll)


def _finish(
    backend: StateBackend,
    es: Any,
    run: RunRecord,
    worker: _UnitRun,
    lock: RunLock,
    options: ReindexOptions,
) -> None:
    """The one-time end of a run: restore settings, refresh, mark done, release the lock."""
    _wait_for_last_counts(backend, run, worker.worker_id)
    for index, values in backend.restores(run.run_id).items():
        try:
            if es.indices.exists(index=index):
                apply_index_settings(es, index, values)
                worker.restored.append(index)
        except Exception as exc:
            raise Ddb2esError(
                f"could not restore the settings of {index}: {exc}; the run stays open: "
                f"`ddb2es reindex --join {run.run_id}` finishes it"
            ) from exc
        backend.drop_restore(run.run_id, index)
    workers = backend.workers(run.run_id)
    indices = sorted({i for w in workers for i in w.indices} | set(worker.known_indices))
    if options.refresh and indices:
        try:
            es.indices.refresh(index=",".join(indices))
        except Exception as exc:
            log.warning("final refresh failed: %s", exc)
    result = {
        "finished_by": worker.worker_id,
        "restored_settings": sorted(worker.restored),
        "indices": indices,
        "duration_s": round(time.time() - run.created, 2),
    }
    backend.end_run(run.run_id, "done", result)
    if run.options.get("release_lock", True):
        lock.release()


def _wait_for_last_counts(backend: StateBackend, run: RunRecord, me: str) -> None:
    """Every other worker has published its final counts, or has stopped beating (dead)."""
    watch = LeaseWatch(backend.lease_seconds)
    while True:
        pending = [
            w
            for w in backend.workers(run.run_id)
            if not w.finished
            and w.worker_id != me
            and not watch.expired(w.worker_id, w.worker_id, w.beats)
        ]
        if not pending:
            return
        time.sleep(min(0.5, backend.lease_seconds / 4))


# --- status ------------------------------------------------------------------------------------


def run_status(backend: StateBackend, run_id: str) -> dict[str, Any]:
    """Units done/claimed/free, items, rate, ETA, live workers, failures, takeovers, result."""
    run = backend.load_run(run_id)
    units = backend.units(run_id)
    claimed = backend.claimed(run_id, units)
    workers = backend.workers(run_id)
    lease = float(run.options.get("lease_seconds", DEFAULT_LEASE_SECONDS))
    now = time.time()
    totals = {name: 0.0 for name in COUNTERS}
    per_table: dict[str, dict[str, Any]] = {}
    for table in run.table_names:
        mine = [u for u in units if u.table == table]
        counts = {name: 0.0 for name in COUNTERS}
        for w in workers:
            for name in COUNTERS:
                counts[name] += w.counts.get(table, {}).get(name, 0.0)
        for name in COUNTERS:
            totals[name] += counts[name]
        done = sum(1 for u in mine if u.done)
        busy = sum(1 for u in mine if u.ident in claimed)
        per_table[table] = {
            "table": table,
            "units": len(mine),
            "done": done,
            "claimed": busy,
            "free": len(mine) - done - busy,
            "scanned": sum(u.scanned for u in mine),
            "estimated_items": run.estimated_items.get(table, 0),
            **{name: int(counts[name]) for name in COUNTERS if name not in ("scanned", "rcu")},
            "rcu": round(counts["rcu"], 1),
        }
    scanned = sum(t["scanned"] for t in per_table.values())
    estimated = sum(run.estimated_items.values())
    elapsed = (run.result or {}).get("duration_s") or max(now - run.created, 1e-3)
    rate = scanned / elapsed if elapsed else 0.0
    eta = None
    if run.status == "running" and rate > 0:
        eta = round(max(estimated - scanned, 0) / rate, 1)
    takeovers = [
        {"table": u.table, "unit": u.number, "takeovers": u.takeovers, "owners": u.owners}
        for u in units
        if u.takeovers
    ]
    return {
        "run_id": run.run_id,
        "command": run.command,
        "status": run.status,
        "who": run.who,
        "created": run.created,
        "backend": backend.describe(),
        "tables": list(per_table.values()),
        "units": {
            "total": len(units),
            "done": sum(t["done"] for t in per_table.values()),
            "claimed": sum(t["claimed"] for t in per_table.values()),
            "free": sum(t["free"] for t in per_table.values()),
        },
        "items": scanned,
        "estimated_items": estimated,
        "items_per_s": round(rate, 1),
        "eta_s": eta,
        "indexed": int(totals["indexed"]),
        "conflicts": int(totals["conflicts"]),
        "failed": int(totals["failed"]),
        "gone": int(totals["gone"]),
        "takeovers": sum(t["takeovers"] for t in takeovers),
        "takeover_units": takeovers,
        "workers": [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "live": not w.finished and now - w.heartbeat < 3 * lease,
                "finished": w.finished,
                "indexed": int(sum(c.get("indexed", 0) for c in w.counts.values())),
                "failed": int(sum(c.get("failed", 0) for c in w.counts.values())),
                "failures_path": w.failures_path,
            }
            for w in workers
        ],
        "live_workers": sum(1 for w in workers if not w.finished and now - w.heartbeat < 3 * lease),
        "result": run.result,
    }


def run_summary(status: dict[str, Any]) -> ReindexSummary:
    """The run's totals in the shape of a single-process summary (the CLI table and --json)."""
    tables = {}
    for t in status["tables"]:
        summary = TableSummary(t["table"], t["estimated_items"])
        summary.scanned = t["scanned"]
        for name in ("indexed", "conflicts", "failed", "gone"):
            setattr(summary, name, t[name])
        summary.rcu = t["rcu"]
        duration = float((status.get("result") or {}).get("duration_s") or 0.0)
        summary.started = time.monotonic() - duration
        summary.finished = time.monotonic()
        tables[t["table"]] = summary
    result = status.get("result") or {}
    paths = [w["failures_path"] for w in status["workers"] if w["failed"]]
    return ReindexSummary(
        tables,
        {},
        status["failed"],
        ", ".join(p for p in paths if p) or None,
        [],
        list(result.get("restored_settings", [])),
        False,
        [],
    )


# --- N local worker processes ----------------------------------------------------------------


def _child(
    settings: Settings,
    state: StateOptions,
    run_id: str,
    options: ReindexOptions,
) -> None:
    """A worker process started by `--processes N` (spawned: a fresh interpreter)."""
    from ddb2es_cli.clients import make_dynamodb_client, make_search_client

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("opensearch", "elasticsearch", "elastic_transport", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        ddb = make_dynamodb_client(settings.dynamodb)
        es, _ = make_search_client(settings.search, settings.dynamodb.region)
        work(ddb, es, settings, state.open(ddb), run_id, options)
    except Ddb2esError as exc:
        print(f"Error: worker: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(int(exc.exit_status))
    except KeyboardInterrupt:
        sys.exit(int(ExitStatus.INTERRUPTED))


@dataclass
class Supervised:
    run_id: str
    status: dict[str, Any]
    exit_codes: list[int] = field(default_factory=list)


def supervise(
    ddb: Any,
    settings: Settings,
    backend: StateBackend,
    state: StateOptions,
    run: RunRecord,
    options: ReindexOptions,
    processes: int,
    progress: Progress | None = None,
) -> Supervised:
    """Start `processes` workers of `run` and draw one progress display until they end."""
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_child, args=(settings, state, run.run_id, options), name=f"ddb2es-worker-{n}"
        )
        for n in range(processes)
    ]
    for child in children:
        child.start()
    shown: dict[str, int] = {}
    if progress is not None:
        for table in run.table_names:
            progress.start(table, run.estimated_items.get(table, 0), 0)
            shown[table] = 0
    try:
        while any(c.is_alive() for c in children):
            for child in children:
                child.join(timeout=0.5 / len(children))
            if progress is not None:
                with contextlib.suppress(Ddb2esError):
                    for unit_table, scanned in _scanned(backend, run.run_id).items():
                        progress.advance(unit_table, scanned - shown.get(unit_table, 0))
                        shown[unit_table] = scanned
    except BaseException:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(timeout=30)
        raise
    codes = [int(c.exitcode or 0) for c in children]
    return Supervised(run.run_id, run_status(backend, run.run_id), codes)


def _scanned(backend: StateBackend, run_id: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for unit in backend.units(run_id):
        out[unit.table] = out.get(unit.table, 0) + unit.scanned
    return out


class RunNotFinished(Ddb2esError):
    """Worker processes of a run failed; the run stays open for `--join`."""


def check_finished(done: Supervised, processes: int) -> None:
    if done.status["status"] == "done":
        return
    failed = [c for c in done.exit_codes if c]
    error = RunNotFinished(
        f"{len(failed)} of {processes} worker processes failed (exit codes "
        f"{', '.join(map(str, failed)) or 'none'}); run {done.run_id} is kept: "
        f"`ddb2es reindex --join {done.run_id}` continues it"
    )
    error.exit_status = ExitStatus(max(failed)) if failed else ExitStatus.ERROR
    raise error


def scaled_loader(
    backend: StateBackend,
    state: StateOptions,
    processes: int,
    run_id: str,
    notify: Callable[[str], None] | None = None,
) -> Callable[..., ReindexSummary]:
    """A reload's load spread over `processes` workers of run `run_id` (more may --join);
    the plan, verification and swap stay with the reload, which keeps the run lock."""

    def load(
        ddb: Any,
        es: Any,
        settings: Settings,
        tables: list[TableSettings],
        options: ReindexOptions,
        progress: Progress | None = None,
    ) -> ReindexSummary:
        run = create_run(
            backend, ddb, tables, options, command="reload", run_id=run_id, release_lock=False
        )
        if notify is not None:
            notify(
                f"run {run_id} ({backend.describe()}): more workers may join with "
                f"`ddb2es reindex --join {run_id}`"
            )
        done = supervise(ddb, settings, backend, state, run, options, processes, progress)
        check_finished(done, processes)
        return run_summary(done.status)

    return load
