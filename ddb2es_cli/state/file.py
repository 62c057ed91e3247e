"""The file backend: a run folder `.ddb2es/runs/<id>/`, one JSON file per unit, written
atomically; a unit belongs to whoever holds `fcntl.flock` on its lock file. The OS releases the
lock when its process dies, so a killed worker's unit is free at once, from its last checkpoint.
Works for any number of processes on ONE machine (flock does not span hosts reliably)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import private_dir, write_json_atomic
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.state.records import (
    DEFAULT_LEASE_SECONDS,
    OWNER_HISTORY,
    RunRecord,
    StateLost,
    UnitRecord,
    WorkerRecord,
)


def _unit_name(table: str, number: int) -> str:
    return f"{table}#{number:06d}"


class FileState:
    name = "file"

    def __init__(self, state_dir: Path, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.root = state_dir / "runs"
        self.lease_seconds = lease_seconds
        self._held: dict[tuple[str, str, int], int] = {}  # (run, table, n) -> locked fd
        self._finish: dict[str, int] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"state folder {self.root}"

    def check(self) -> None:
        private_dir(self.root.parent)
        private_dir(self.root)

    # -- paths --

    def _run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ConfigError(f"{run_id!r} is not a run id")
        return self.root / run_id

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise StateLost(f"state file {path} is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise StateLost(f"state file {path} is not a ddb2es state file")
        return data

    # -- runs --

    def create_run(self, run: RunRecord, units: list[UnitRecord]) -> None:
        self.check()
        folder = self._run_dir(run.run_id)
        folder.mkdir(mode=0o700)
        for sub in ("units", "workers", "restore"):
            (folder / sub).mkdir(mode=0o700)
        for unit in units:
            write_json_atomic(
                folder / "units" / f"{_unit_name(unit.table, unit.number)}.json", unit.as_dict()
            )
        write_json_atomic(folder / "run.json", run.as_dict())

    def load_run(self, run_id: str) -> RunRecord:
        path = self._run_dir(run_id) / "run.json"
        try:
            return RunRecord.from_dict(self._read(path))
        except FileNotFoundError:
            raise ConfigError(f"unknown run id {run_id}: no {path}") from None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        if not self.root.is_dir():
            return []
        runs = []
        for folder in sorted(self.root.iterdir(), reverse=True):
            if (folder / "run.json").is_file():
                runs.append(RunRecord.from_dict(self._read(folder / "run.json")))
            if len(runs) >= limit:
                break
        return runs

    def end_run(self, run_id: str, status: str, result: dict[str, Any]) -> None:
        run = self.load_run(run_id)
        run.status, run.result = status, result
        write_json_atomic(self._run_dir(run_id) / "run.json", run.as_dict())
        fd = self._finish.pop(run_id, None)
        if fd is not None:
            os.close(fd)

    # -- units --

    def _unit_path(self, run_id: str, table: str, number: int, ext: str = "json") -> Path:
        return self._run_dir(run_id) / "units" / f"{_unit_name(table, number)}.{ext}"

    def units(self, run_id: str) -> list[UnitRecord]:
        folder = self._run_dir(run_id) / "units"
        if not folder.is_dir():
            raise ConfigError(f"unknown run id {run_id}: no {folder}")
        return [UnitRecord.from_dict(self._read(p)) for p in sorted(folder.glob("*.json"))]

    def claimed(self, run_id: str, units: list[UnitRecord]) -> set[tuple[str, int]]:
        """Units whose lock some process holds now (a shared lock attempt fails)."""
        found = set()
        for unit in units:
            if unit.done:
                continue
            path = self._unit_path(run_id, unit.table, unit.number, "lock")
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                found.add(unit.ident)
            finally:
                os.close(fd)
        return found

    def claim(self, run_id: str, worker_id: str) -> UnitRecord | None:
        with self._lock:
            units = sorted(self.units(run_id), key=lambda u: (u.number, u.table))
            for unit in units:
                if unit.done or (run_id, unit.table, unit.number) in self._held:
                    continue
                taken = self._try_lock(run_id, unit)
                if taken is not None:
                    return self.take(run_id, worker_id, taken)
        return None

    def _try_lock(self, run_id: str, unit: UnitRecord) -> UnitRecord | None:
        path = self._unit_path(run_id, unit.table, unit.number, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        fresh = UnitRecord.from_dict(self._read(self._unit_path(run_id, unit.table, unit.number)))
        if fresh.done:
            os.close(fd)
            return None
        self._held[(run_id, unit.table, unit.number)] = fd
        return fresh

    def take(self, run_id: str, worker_id: str, unit: UnitRecord) -> UnitRecord:
        """Write the new owner (and a takeover when the last owner left the unit unfinished)."""
        if unit.owner and unit.owner != worker_id:
            unit.takeovers += 1
        unit.owner = worker_id
        unit.owners = ([*unit.owners, worker_id])[-OWNER_HISTORY:]
        unit.counter += 1
        write_json_atomic(self._unit_path(run_id, unit.table, unit.number), unit.as_dict())
        return unit

    def checkpoint(
        self,
        run_id: str,
        worker_id: str,
        unit: UnitRecord,
        position: Any,
        scanned: int,
        done: bool,
    ) -> bool:
        if (run_id, unit.table, unit.number) not in self._held:
            return False
        unit.position, unit.scanned, unit.done = position, scanned, done
        write_json_atomic(self._unit_path(run_id, unit.table, unit.number), unit.as_dict())
        if done:
            self.release_unit(run_id, worker_id, unit)
        return True

    def release_unit(self, run_id: str, worker_id: str, unit: UnitRecord) -> None:
        fd = self._held.pop((run_id, unit.table, unit.number), None)
        if fd is not None:
            os.close(fd)

    # -- workers --

    def heartbeat(
        self, run_id: str, worker: WorkerRecord, owned: list[UnitRecord]
    ) -> list[UnitRecord]:
        path = self._run_dir(run_id) / "workers" / f"{worker.worker_id}.json"
        write_json_atomic(path, worker.as_dict())
        return []  # a flock is held until the process lets go or dies: never lost

    def workers(self, run_id: str) -> list[WorkerRecord]:
        folder = self._run_dir(run_id) / "workers"
        if not folder.is_dir():
            return []
        return [WorkerRecord.from_dict(self._read(p)) for p in sorted(folder.glob("*.json"))]

    # -- settings to restore --

    def put_restore(self, run_id: str, index: str, values: dict[str, Any]) -> bool:
        """Create the record unless it exists (link() fails on an existing name: atomic)."""
        folder = self._run_dir(run_id) / "restore"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".restore.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"index": index, "values": values}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, folder / f"{index}.json")
            except FileExistsError:
                return False
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def restores(self, run_id: str) -> dict[str, dict[str, Any]]:
        folder = self._run_dir(run_id) / "restore"
        out = {}
        for path in sorted(folder.glob("*.json")):
            data = self._read(path)
            out[str(data["index"])] = dict(data["values"])
        return out

    def drop_restore(self, run_id: str, index: str) -> None:
        (self._run_dir(run_id) / "restore" / f"{index}.json").unlink(missing_ok=True)

    # -- finishing --

    def begin_finish(self, run_id: str, worker_id: str) -> bool:
        """Exactly one process holds the finish lock; a dead finisher's lock falls away."""
        fd = os.open(self._run_dir(run_id) / "finish.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if self.load_run(run_id).status != "running":
            os.close(fd)
            return False
        self._finish[run_id] = fd
        return True

    def renew_finish(self, run_id: str, worker_id: str) -> None:
        pass

    def close(self) -> None:
        for fd in [*self._held.values(), *self._finish.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held.clear()
        self._finish.clear()
