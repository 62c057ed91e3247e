"""The records a state backend keeps, the protocol both backends implement, and lease timing."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ddb2es_cli.errors import Ddb2esError

DEFAULT_LEASE_SECONDS = 30.0
OWNER_HISTORY = 10  # the last owners a unit remembers (status shows takeovers)


def poll_seconds(lease_seconds: float) -> float:
    """How often a waiting worker looks at the run again: often enough to see a lease expire
    soon after it does, never more than once a second."""
    return min(1.0, max(0.05, lease_seconds / 4))


class LeaseLost(Ddb2esError):
    """Another worker took a unit this worker held (its lease expired): drop the unit's pages."""


class StateLost(Ddb2esError):
    """The state backend stopped answering (table deleted, access revoked): exit 1, the
    failures files and every acknowledged checkpoint stay as they were."""


def new_run_id(moment: datetime | None = None) -> str:
    """Sortable by start time, unique: `r20261127t2058-1a2b3c`."""
    moment = moment or datetime.now(timezone.utc)
    return "r" + moment.strftime("%Y%m%dt%H%M%S") + "-" + secrets.token_hex(3)


def new_worker_id() -> str:
    host = socket.gethostname().split(".")[0][:24] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class RunRecord:
    run_id: str
    command: str
    tables: list[dict[str, Any]]  # TableSettings as dicts: joiners transform the same way
    units: dict[str, int]  # table -> total units
    estimated_items: dict[str, int]
    options: dict[str, Any]
    who: str
    created: float  # epoch seconds (display only; leases never compare wall clocks)
    status: str = "running"  # running | done | failed
    result: dict[str, Any] | None = None
    finisher: str | None = None
    finish_counter: int = 0

    @property
    def table_names(self) -> list[str]:
        return [str(t["name"]) for t in self.tables]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=str(data["run_id"]),
            command=str(data.get("command", "reindex")),
            tables=list(data["tables"]),
            units={str(k): int(v) for k, v in data["units"].items()},
            estimated_items={str(k): int(v) for k, v in data.get("estimated_items", {}).items()},
            options=dict(data.get("options", {})),
            who=str(data.get("who", "?")),
            created=float(data.get("created", 0)),
            status=str(data.get("status", "running")),
            result=data.get("result"),
            finisher=data.get("finisher"),
            finish_counter=int(data.get("finish_counter", 0)),
        )


@dataclass
class UnitRecord:
    table: str
    number: int
    total: int
    position: dict[str, Any] | None = None  # opaque to the backend: where the reader resumes
    scanned: int = 0
    done: bool = False
    owner: str | None = None
    counter: int = 0  # the owner bumps it on every heartbeat; takers watch it stand still
    takeovers: int = 0
    owners: list[str] = field(default_factory=list)

    @property
    def ident(self) -> tuple[str, int]:
        return (self.table, self.number)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitRecord:
        return cls(
            table=str(data["table"]),
            number=int(data["number"]),
            total=int(data["total"]),
            position=data.get("position"),
            scanned=int(data.get("scanned", 0)),
            done=bool(data.get("done", False)),
            owner=data.get("owner"),
            counter=int(data.get("counter", 0)),
            takeovers=int(data.get("takeovers", 0)),
            owners=list(data.get("owners", [])),
        )


@dataclass
class WorkerRecord:
    worker_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    heartbeat: float = field(default_factory=time.time)
    finished: bool = False
    beats: int = 0  # bumped on every heartbeat: a finisher waits for live workers' last counts
    counts: dict[str, dict[str, float]] = field(default_factory=dict)  # table -> counters
    indices: list[str] = field(default_factory=list)
    failures_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerRecord:
        return cls(
            worker_id=str(data["worker_id"]),
            host=str(data.get("host", "?")),
            pid=int(data.get("pid", 0)),
            started=float(data.get("started", 0)),
            heartbeat=float(data.get("heartbeat", 0)),
            finished=bool(data.get("finished", False)),
            beats=int(data.get("beats", 0)),
            counts={
                str(t): {str(k): float(v) for k, v in c.items()}
                for t, c in data.get("counts", {}).items()
            },
            indices=list(data.get("indices", [])),
            failures_path=data.get("failures_path"),
        )


class LeaseWatch:
    """A taker's view of other workers' leases (the Kinesis Client Library's rule).

    A lease is expired when its (owner, counter) stayed the same for `lease_seconds` of the
    taker's OWN monotonic clock: no two machines' clocks are ever compared, so clock skew cannot
    make a live owner look dead. The clock is injectable so the rule is tested without sleeping.
    """

    def __init__(self, lease_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._seen: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def expired(self, key: Any, owner: str | None, counter: int) -> bool:
        """Record what the taker sees now; True once it has not changed for the lease time."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or seen[0] != (owner, counter):
                self._seen[key] = ((owner, counter), now)
                return False
            return now - seen[1] >= self.lease_seconds

    def forget(self, key: Any) -> None:
        with self._lock:
            self._seen.pop(key, None)


class StateBackend(Protocol):
    """What reindex, status and the CLI need from a state backend. Every write is conditional;
    a lost condition is an answer (False / None), not an error."""

    name: str
    lease_seconds: float

    def describe(self) -> str: ...

    def check(self) -> None: ...

    def create_run(self, run: RunRecord, units: list[UnitRecord]) -> None: ...

    def load_run(self, run_id: str) -> RunRecord: ...

    def list_runs(self, limit: int = 20) -> list[RunRecord]: ...

    def units(self, run_id: str) -> list[UnitRecord]: ...

    def claimed(self, run_id: str, units: list[UnitRecord]) -> set[tuple[str, int]]: ...

    def claim(self, run_id: str, worker_id: str) -> UnitRecord | None: ...

    def checkpoint(
        self,
        run_id: str,
        worker_id: str,
        unit: UnitRecord,
        position: Any,
        scanned: int,
        done: bool,
    ) -> bool: ...

    def release_unit(self, run_id: str, worker_id: str, unit: UnitRecord) -> None: ...

    def heartbeat(
        self, run_id: str, worker: WorkerRecord, owned: list[UnitRecord]
    ) -> list[UnitRecord]: ...

    def workers(self, run_id: str) -> list[WorkerRecord]: ...

    def put_restore(self, run_id: str, index: str, values: dict[str, Any]) -> bool: ...

    def restores(self, run_id: str) -> dict[str, dict[str, Any]]: ...

    def drop_restore(self, run_id: str, index: str) -> None: ...

    def begin_finish(self, run_id: str, worker_id: str) -> bool: ...

    def renew_finish(self, run_id: str, worker_id: str) -> None: ...

    def end_run(self, run_id: str, status: str, result: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
