"""One reindex run spread over many worker processes on one or many machines.

A run lives in a state backend (ddb2es_cli.state): its record, its work units, the settings to
restore, the workers. Any process can become a worker (`--join RUN_ID`); each worker's scan
threads claim units one at a time, so fast workers take more and skewed units leave no worker
idle. Pages are checkpointed per unit only once every document of them was acknowledged, and
only while the worker still owns the unit. The one-time steps happen once: index creation is
idempotent, the first worker to tune an index records the previous settings before changing
them, and the finisher (the one worker whose begin_finish wins once every unit is done) restores
them, refreshes, marks the run done and releases the cluster run lock.

This module starts N local worker processes (`--processes`) and spreads a reload's load; the
parts live in scale_run.py (creation), scale_unit.py and scale_worker.py (a worker),
scale_finish.py (the finisher) and scale_status.py. Their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import Ddb2esError, ExitStatus
from ddb2es_cli.reindex import Progress, ReindexOptions, ReindexSummary
from ddb2es_cli.scale_run import CHECKPOINT_EVERY as CHECKPOINT_EVERY
from ddb2es_cli.scale_run import COUNTERS as COUNTERS
from ddb2es_cli.scale_run import MAX_UNITS as MAX_UNITS
from ddb2es_cli.scale_run import UNIT_BYTES as UNIT_BYTES
from ddb2es_cli.scale_run import StateOptions as StateOptions
from ddb2es_cli.scale_run import create_run as create_run
from ddb2es_cli.scale_run import default_units as default_units
from ddb2es_cli.scale_run import options_of as options_of
from ddb2es_cli.scale_run import tables_of as tables_of
from ddb2es_cli.scale_run import worker_failures_path as worker_failures_path
from ddb2es_cli.scale_status import run_status as run_status
from ddb2es_cli.scale_status import run_summary as run_summary
from ddb2es_cli.scale_worker import RunNotRunning as RunNotRunning
from ddb2es_cli.scale_worker import WorkResult as WorkResult
from ddb2es_cli.scale_worker import work as work
from ddb2es_cli.state import RunRecord, StateBackend


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
    except RunNotRunning as exc:
        if exc.status != "done":
            _exit_with(exc)
        # Its siblings did every unit while this interpreter started: not an error.
    except Ddb2esError as exc:
        _exit_with(exc)
    except KeyboardInterrupt:
        sys.exit(int(ExitStatus.INTERRUPTED))


def _exit_with(exc: Ddb2esError) -> NoReturn:
    """One line on stderr and the error's exit status, as the CLI would say it."""
    print(f"Error: worker: {' '.join(str(exc).split())}", file=sys.stderr)
    sys.exit(int(exc.exit_status))


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
    units: int | None = None,
) -> Callable[..., ReindexSummary]:
    """A reload's load spread over `processes` workers of run `run_id` (more may --join);
    the plan, verification and swap stay with the reload, which keeps the run lock.
    `units`: a unit per data file of an export (default: by the table's size)."""

    def load(
        ddb: Any,
        es: Any,
        settings: Settings,
        tables: list[TableSettings],
        options: ReindexOptions,
        progress: Progress | None = None,
    ) -> ReindexSummary:
        run = create_run(
            backend,
            ddb,
            tables,
            options,
            units,
            command="reload",
            run_id=run_id,
            release_lock=False,
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
