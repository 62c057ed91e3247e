"""The one-time end of a scaled run: exactly one worker wins begin_finish, waits for the
others' last counts, restores index settings, refreshes, marks the run done, releases the lock.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.ownership import RunLock
from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.scale_unit import UnitRun
from ddb2es_cli.sink import apply_index_settings
from ddb2es_cli.state import RunRecord, StateBackend
from ddb2es_cli.state.records import LeaseWatch, poll_seconds

log = logging.getLogger("ddb2es.scale")


def finish_when_done(
    backend: StateBackend,
    es: Any,
    run: RunRecord,
    worker: UnitRun,
    lock: RunLock,
    options: ReindexOptions,
) -> bool:
    """Try to become the finisher until the run is done (a dead finisher's lease expires)."""
    poll = poll_seconds(backend.lease_seconds)
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
    worker: UnitRun,
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
