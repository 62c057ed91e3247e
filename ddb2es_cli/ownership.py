"""What ddb2es owns on a shared cluster, and the names and records that go with it.

The one model every command and the stream handler use (docs/spec.md, "Ownership"):
- an index is ddb2es's only when its mapping `_meta` carries `managed_by: ddb2es` AND this
  deployment's name (`mark`). ddb2es writes that mark when it creates an index
  (`create_owned_index`) or when the operator adopts one (`adopt`); the template marks nothing;
- an alias is ours when every index behind it is ours; names starting with `.` never are;
- indices marked by older versions (`managed_by` without a deployment: the old template put that
  on every new index of the cluster) are `legacy`: not ours until adopted;
- every destructive action asks again (`require_owned`) at the moment it acts.

Also here: the generation suffix of blue/green loads, the `-rebuilding` marker alias, and the
control index (`CONTROL_INDEX`) that holds run locks and the record of the last swap per alias.
Imports nothing the Lambda runtime lacks: the stream handler uses this module too.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.retry import status_of

log = logging.getLogger("ddb2es.ownership")

MANAGED_BY = "ddb2es"
REBUILD_SUFFIX = "-rebuilding"  # alias X-rebuilding -> the generation of X being loaded
GENERATION_RE = re.compile(r"-(\d{8}t\d{9}z)\Z")  # -YYYYmmddtHHMMSSmmmz
GENERATION_LEN = len("-20260101t000000000z")
MAX_INDEX_BYTES = 255
MAX_TYPE_BYTES = MAX_INDEX_BYTES - GENERATION_LEN  # 235: room left for the generation suffix
# Run locks and swap records, shared by every machine that runs ddb2es against the cluster.
CONTROL_INDEX = "ddb2es-control"
DEFAULT_LEASE_SECONDS = 300.0

OWNED = "owned"
LEGACY = "legacy"  # managed_by without a deployment: the old template or an old ddb2es
OTHER_DEPLOYMENT = "other-deployment"
FOREIGN = "foreign"  # no mark at all
SYSTEM = "system"  # a `.` name
MISSING = "missing"


class NotOwned(Ddb2esError):
    """A destructive action met an index ddb2es cannot show this deployment owns."""


class LockHeld(Ddb2esError):
    """Another run of the same tables holds the lock."""


# --- the deployment and the mark -----------------------------------------------------------------


def deployment_name(configured: str | None, index_prefix: str) -> str:
    """The configured `deployment`, else the index prefix without its trailing separator, else
    `default`. Two configs with different prefixes are different deployments by default."""
    if configured:
        return configured
    derived = index_prefix.rstrip("-_.")
    return derived or "default"


def mark(deployment: str) -> dict[str, str]:
    """The mapping `_meta` that makes an index this deployment's."""
    return {"managed_by": MANAGED_BY, "deployment": deployment}


def is_system(name: str) -> bool:
    return name.startswith(".")


@dataclass(frozen=True)
class Ownership:
    """What `name` is now and whose it is. `status` is the worst of the indices behind it."""

    name: str
    kind: str  # index | alias | missing
    behind: tuple[str, ...]
    status: str
    detail: dict[str, str] = field(default_factory=dict)  # concrete index -> its status
    owners: dict[str, str] = field(default_factory=dict)  # concrete index -> its deployment

    @property
    def owned(self) -> bool:
        return self.status == OWNED

    def reason(self, deployment: str) -> str:
        """One line for an operator: why this is (not) ours."""
        what = f"{self.kind} {self.name}" + (
            f" (-> {','.join(self.behind)})" if self.kind == "alias" else ""
        )
        if self.status == OWNED:
            return f"{what} is owned by deployment {deployment}"
        if self.status == SYSTEM:
            return f"{what} is a system or hidden index: never touched"
        if self.status == LEGACY:
            return (
                f"{what} carries managed_by=ddb2es without a deployment (marked by the old "
                f"`*` template, which marked every new index of the cluster, or by an older "
                f"ddb2es): not treated as ours; pass --adopt {self.name} to take it over"
            )
        if self.status == OTHER_DEPLOYMENT:
            others = sorted({d for d in self.owners.values() if d and d != deployment})
            return (
                f"{what} belongs to another ddb2es deployment ({', '.join(others)}): never "
                "touched, not even with --adopt"
            )
        if self.status == MISSING:
            return f"{self.name} does not exist"
        return f"{what} is not managed by ddb2es; pass --adopt {self.name} to take it over"


def index_meta(es: Any, index: str) -> dict[str, Any]:
    """The mapping `_meta` of one concrete index ({} when it has none)."""
    mapping = _body(es.indices.get_mapping(index=index))
    first: dict[str, Any] = mapping.get(index) or next(iter(mapping.values()), {})
    mappings = first.get("mappings", {}) or {}
    if "_meta" not in mappings and len(mappings) == 1:  # a 6.x mapping type
        mappings = next(iter(mappings.values())) or {}
    meta = mappings.get("_meta") or {}
    return meta if isinstance(meta, dict) else {}


def status_of_meta(meta: dict[str, Any], deployment: str) -> str:
    if meta.get("managed_by") != MANAGED_BY:
        return FOREIGN
    if meta.get("role") == "control":
        return FOREIGN  # the control index holds no documents of any table
    owner = meta.get("deployment")
    if not owner:
        return LEGACY
    return OWNED if owner == deployment else OTHER_DEPLOYMENT


def ownership(es: Any, name: str, deployment: str) -> Ownership:
    """Read now (never cached): what `name` is and whether this deployment owns it."""
    kind, behind = current(es, name)
    if is_system(name) or any(is_system(b) for b in behind):
        return Ownership(name, kind, tuple(behind), SYSTEM)
    if kind == "missing":
        return Ownership(name, kind, (), MISSING)
    metas = {b: index_meta(es, b) for b in behind}
    detail = {b: status_of_meta(m, deployment) for b, m in metas.items()}
    order = (SYSTEM, OTHER_DEPLOYMENT, FOREIGN, LEGACY, OWNED)
    worst = next(s for s in order if s in detail.values())
    owners = {b: str(metas[b].get("deployment", "")) for b in behind}
    return Ownership(name, kind, tuple(behind), worst, detail, owners)


def is_owned(es: Any, name: str, deployment: str) -> bool:
    return ownership(es, name, deployment).owned


def require_owned(es: Any, names: Iterable[str], deployment: str, action: str) -> None:
    """Raise NotOwned unless every existing name is this deployment's, checked right now."""
    refused = []
    for name in names:
        found = ownership(es, name, deployment)
        if found.status not in (OWNED, MISSING):
            refused.append(found.reason(deployment))
    if refused:
        raise NotOwned(f"{action} refused: " + "; ".join(refused))


def current(es: Any, name: str) -> tuple[str, list[str]]:
    """What `name` is now: missing, a concrete index, or an alias (and what it points to)."""
    if es.indices.exists_alias(name=name):
        return "alias", sorted(_body(es.indices.get_alias(name=name)))
    if es.indices.exists(index=name):
        return "index", [name]
    return "missing", []


def aliases_of(es: Any, index: str) -> list[str]:
    """The aliases that point at the concrete `index` now."""
    found = _body(es.indices.get_alias(index=index))
    return sorted(found.get(index, {}).get("aliases", {}))


def create_owned_index(es: Any, index: str, deployment: str) -> bool:
    """Create `index` with this deployment's mark; False when the name exists already."""
    if is_system(index):
        raise NotOwned(f"{index}: ddb2es never creates system or hidden indices")
    try:
        es.indices.create(index=index, body={"mappings": {"_meta": mark(deployment)}})
        return True
    except Exception as exc:  # created meanwhile (a stream writer), an alias of that name...
        text = str(exc)
        if "already_exists" in text or "resource_already" in text or "already exists" in text:
            return False
        raise


def adopt(es: Any, name: str, deployment: str) -> list[str]:
    """The operator takes `name` over: write the mark into every index it is or points to."""
    if is_system(name):
        raise NotOwned(f"{name}: system and hidden indices cannot be adopted")
    _kind, behind = current(es, name)
    adopted = []
    for index in behind:
        if is_system(index):
            raise NotOwned(f"{name} points at {index}: system indices cannot be adopted")
        current_meta = index_meta(es, index)
        if status_of_meta(current_meta, deployment) == OTHER_DEPLOYMENT:
            raise NotOwned(
                f"{index} belongs to deployment {current_meta.get('deployment')}: not adopted"
            )
        meta = {**current_meta, **mark(deployment)}
        es.indices.put_mapping(index=index, body={"_meta": meta})
        adopted.append(index)
    if adopted:
        log.info("adopted %s (%s) for deployment %s", name, ", ".join(adopted), deployment)
    return adopted


# --- generations and rebuild markers -------------------------------------------------------------


def generation_suffix(moment: datetime) -> str:
    """Sortable, lower-case, unique per millisecond: `-20261126t031500123z`."""
    return "-" + moment.strftime("%Y%m%dt%H%M%S") + f"{moment.microsecond // 1000:03d}z"


def generation_time(index: str) -> datetime | None:
    found = GENERATION_RE.search(index)
    if not found:
        return None
    stamp = found.group(1)
    moment = datetime.strptime(stamp[:15], "%Y%m%dt%H%M%S").replace(tzinfo=timezone.utc)
    return moment.replace(microsecond=int(stamp[15:18]) * 1000)


def base_of(index: str) -> str | None:
    """X for a generation X-<suffix>, None for any other name."""
    return index[:-GENERATION_LEN] if GENERATION_RE.search(index) else None


def generations(es: Any, base: str) -> list[str]:
    """The open generations of X, oldest first."""
    found = _body(es.indices.get(index=f"{base}-*", expand_wildcards="open"))
    return sorted(n for n in found if base_of(n) == base)


def check_generation_room(name: str) -> None:
    """A type must leave room for the generation suffix (index names are at most 255 bytes)."""
    if len(name.encode()) > MAX_TYPE_BYTES:
        raise ConfigError(
            f"index {name[:60]}... ({len(name.encode())} bytes): a blue/green generation needs "
            f"names of at most {MAX_TYPE_BYTES} bytes; shorten that TYPE or use --strategy delete"
        )


def rebuild_marker(base: str) -> str:
    return base + REBUILD_SUFFIX


def marked_generations(es: Any, prefix: str) -> dict[str, list[str]]:
    """X -> every index the marker X-rebuilding points at (normally one; more after a crash)."""
    try:
        found = _body(es.indices.get_alias(name=f"{prefix}*{REBUILD_SUFFIX}"))
    except Exception as exc:  # 404: no rebuild runs
        if status_of(exc) != 404:
            raise
        found = {}
    targets: dict[str, list[str]] = {}
    for index, info in found.items():
        for alias in info.get("aliases", {}):
            if alias.endswith(REBUILD_SUFFIX) and not is_system(index):
                targets.setdefault(alias[: -len(REBUILD_SUFFIX)], []).append(index)
    return {k: sorted(v) for k, v in targets.items()}


# --- the control index: swap records and run locks ------------------------------------------------


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
        found = _body(es.get(index=CONTROL_INDEX, id=f"swap:{deployment}:{alias}"))
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
            found = _body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
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
            found = _body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
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
                found = _body(self.es.get(index=CONTROL_INDEX, id=self.doc_id(table)))
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
            found = _body(es.get(index=CONTROL_INDEX, id=f"lock:{deployment}:{table}"))
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


def _body(response: Any) -> dict[str, Any]:
    """elasticsearch-py wraps bodies in ObjectApiResponse; opensearch-py returns the dict."""
    body = getattr(response, "body", response)
    return body if isinstance(body, dict) else {}
