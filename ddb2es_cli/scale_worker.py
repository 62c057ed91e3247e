"""`work`: be one worker of a run until every unit is done, in rounds (a round ends when no
thread can claim a unit), then try to become its finisher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ddb2es_cli.clients import run_stopped
from ddb2es_cli.config import Settings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.gc_tuning import collector_tuned_for_load
from ddb2es_cli.ownership import RunLock
from ddb2es_cli.reindex import Progress, ReindexOptions, ReindexSummary, plan_reindex
from ddb2es_cli.scale_finish import finish_when_done
from ddb2es_cli.scale_run import options_of, tables_of, worker_failures_path
from ddb2es_cli.scale_status import run_status
from ddb2es_cli.scale_unit import UnitRun
from ddb2es_cli.segments import default_load_segments
from ddb2es_cli.sink import BulkWriter
from ddb2es_cli.source import (
    CapacityLimiter,
    Reader,
    install_fast_decode,
    scan_pages,
    segment_reader,
)
from ddb2es_cli.state import RunRecord, StateBackend, new_worker_id
from ddb2es_cli.state.records import poll_seconds


class RunNotRunning(ConfigError):
    """The run is no longer running (done, say): a worker has nothing to do in it."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}: nothing left to do")
        self.status = status


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
        raise RunNotRunning(run_id, run.status)
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
    worker = UnitRun(ddb, es, settings, plans, options, progress, backend, run, worker_id)
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
        poll = poll_seconds(backend.lease_seconds)
        reader_of_units = worker.reader(make_reader(ddb, options, limiter))
        # Rounds: each ends when no thread can claim a unit; then wait for other workers'
        # units to finish or for a dead worker's lease to expire.
        while True:
            pages = scan_pages(
                ddb,
                worker.next_task,
                workers=threads or min(default_load_segments(), sum(run.units.values())),
                limiter=limiter,
                page_limit=options.page_limit,
                reader=reader_of_units,
            )
            try:
                with collector_tuned_for_load():  # issue 14: see gc_tuning
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
        finished = finish_when_done(backend, es, run, worker, lock, options)
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
