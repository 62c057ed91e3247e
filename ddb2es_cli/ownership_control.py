"""The control index `ddb2es-control`, shared by every machine running ddb2es against the
cluster: one run lock document per table (leased, renewed, taken over when expired or when its
process is gone) and the record of the last swap per alias (rollback's target).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.ownership_marks import MANAGED_BY, response_body
from ddb2es_cli.retry import status_of

log = logging.getLogger("ddb2es.ownership")


# Run locks and swap records, shared by every machine that runs ddb2es against the cluster.
CONTROL_INDEX = "ddb2es-control"
DEFAULT_LEASE_SECONDS = 300.0


class LockHeld(Ddb2esError):
    """Another run of the same tables holds the lock."""


def ensure_control_index(es: Any) -> None:
    try:
        es.indices.create(
            index=CONTROL_INDEX,
            body={
                "settings": {"index": {"number_of_shards": 1}},
                "mappings": {"_meta": {"managed_by": MANAGED_BY, "role": "control"}},
            },
        )
    except Exception as exc:
        if "already" not in str(exc):
            raise


def record_swap(
    es: Any, deployment: str, alias: str, replaced: list[str], new: str, at: datetime
) -> None:
    """What the swap of `alias` replaced, so rollback goes back to exactly that."""
    ensure_control_index(es)
    es.index(
        index=CONTROL_INDEX,
        id=f"swap:{deployment}:{alias}",
        body={
            "kind": "swap",
            "deployment": deployment,
            "alias": alias,
            "replaced": replaced,
            "new": new,
            "at": at.isoformat(),
        },
        refresh="true",
    )


def last_swap(es: Any, deployment: str, alias: str) -> dict[str, Any] | None:
    try:
        found = response_body(es.get(index=CONTROL_INDEX, id=f"swap:{deployment}:{alias}"))
    except Exception as exc:
        if status_of(exc) == 404:
            return None
        raise
    source = found.get("_source")
    return source if found.get("found", True) and isinstance(source, dict) else None


@dataclass
class RunLock:
    """One lock document per table in the control index, created with `op_type=create`, so
    exactly one run of a table holds it; renewed while the run lives, taken over when expired.

    A run spread over many workers passes its run id as `token`: every worker of that run
    passes the lock and renews it; only the run's finisher releases it (`stop` just stops
    renewing)."""

    es: Any
    deployment: str
    tables: list[str]
    command: str
    lease: float = DEFAULT_LEASE_SECONDS
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    owner: str = field(default_factory=lambda: _owner())
    held: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None

    def doc_id(self, table: str) -> str:
        return f"lock:{self.deployment}:{table}"

    def body(self) -> dict[str, Any]:
        now = time.time()
        return {
            "kind": "lock",
            "deployment": self.deployment,
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": self.command,
            "tables": self.tables,
            "token": self.token,
            "acquired": now,
            "expires": now + self.lease,
        }

    def acquire(self) -> None:
        ensure_control_index(self.es)
        try:
            for table in sorted(set(self.tables)):
                self._take(table)
                self.held.append(table)
        except BaseException:
            self.release()
            raise
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True)
        self._renewer.start()

    def _take(self, table: str) -> None:
        for _attempt in range(3):
            try:
                self.es.index(
                    index=CONTROL_INDEX, id=self.doc_id(table), body=self.body(), op_type="create"
                )
                return
            except Exception as exc:
                if status_of(exc) != 409:
                    raise
            found = response_body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
            holder = found.get("_source", {})
            if holder.get("token") == self.token:
                return  # another worker of the same run holds it: so do we
            if float(holder.get("expires", 0)) > time.time() and not _dead_here(holder):
                raise LockHeld(
                    f"table {table} is locked by {holder.get('owner')} "
                    f"({holder.get('command')}, since {_when(holder.get('acquired'))}, "
                    f"lease until {_when(holder.get('expires'))}); "
                    "wait for it, or pass --break-lock if that run is dead"
                )
            log.warning(
                "taking over the lock of %s from %s (expired, or its process is gone)",
                table,
                holder.get("owner"),
            )
            try:
                self.es.delete(
                    index=CONTROL_INDEX,
                    id=self.doc_id(table),
                    if_seq_no=found["_seq_no"],
                    if_primary_term=found["_primary_term"],
                )
            except Exception as exc:
                if status_of(exc) not in (404, 409):
                    raise
        raise LockHeld(f"table {table}: the lock changed hands three times; try again")

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
            except Exception as exc:  # the next attempt may work; the lease is long
                log.warning("could not renew the run lock: %s", exc)

    def renew(self) -> None:
        for table in self.held:
            found = response_body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
            if found.get("_source", {}).get("token") != self.token:
                log.error("the lock of %s was broken by another run", table)
                continue
            body = {**found["_source"], "expires": time.time() + self.lease}
            self.es.index(
                index=CONTROL_INDEX,
                id=self.doc_id(table),
                body=body,
                if_seq_no=found["_seq_no"],
                if_primary_term=found["_primary_term"],
            )

    def stop(self) -> None:
        """Stop renewing; the lock stays for the run's other workers (or expires)."""
        self._stop.set()

    def release(self) -> None:
        self._stop.set()
        for table in list(self.held):
            try:
                found = response_body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
                if found.get("_source", {}).get("token") == self.token:
                    self.es.delete(
                        index=CONTROL_INDEX,
                        id=self.doc_id(table),
                        if_seq_no=found["_seq_no"],
                        if_primary_term=found["_primary_term"],
                    )
            except Exception as exc:  # expires on its own
                log.warning("could not release the lock of %s: %s", table, exc)
            self.held.remove(table)


def lock_holders(es: Any, deployment: str, tables: Iterable[str]) -> dict[str, dict[str, Any]]:
    """table -> the lock document that holds it now (expired ones included)."""
    holders = {}
    for table in tables:
        try:
            found = response_body(es.get(index=CONTROL_INDEX, id=f"lock:{deployment}:{table}"))
        except Exception as exc:
            if status_of(exc) == 404:
                continue
            raise
        if found.get("found", True) and isinstance(found.get("_source"), dict):
            holders[table] = found["_source"]
    return holders


def break_lock(es: Any, deployment: str, tables: Iterable[str]) -> list[str]:
    """Remove the locks of `tables` (the operator confirmed that their holder is dead)."""
    broken = []
    for table, holder in lock_holders(es, deployment, tables).items():
        try:
            es.delete(index=CONTROL_INDEX, id=f"lock:{deployment}:{table}")
        except Exception as exc:
            if status_of(exc) != 404:
                raise
        log.warning("broke the lock of %s held by %s", table, holder.get("owner"))
        broken.append(table)
    return broken


@contextmanager
def run_lock(
    es: Any,
    deployment: str,
    tables: Iterable[str],
    command: str,
    *,
    lease: float = DEFAULT_LEASE_SECONDS,
    force: bool = False,
    token: str | None = None,
) -> Iterator[RunLock]:
    """Hold the run lock of `tables` for the block; `force` breaks a held lock first. `token`:
    a run id whose workers share the lock (default: this block alone)."""
    names = sorted(set(tables))
    if force:
        break_lock(es, deployment, names)
    lock = RunLock(es, deployment, names, command, lease, token=token or uuid.uuid4().hex)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


# --- helpers --------------------------------------------------------------------------------------


def _dead_here(holder: dict[str, Any]) -> bool:
    """The holder ran on this machine and its process is gone (killed): no need to wait out
    its lease. Holders on other machines are trusted until their lease expires."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False  # this process: another run in it holds the lock (tests, libraries)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _owner() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "?"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _when(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return "?"
