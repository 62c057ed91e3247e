"""The indices a batch writes to besides the ones it names: each is created first with this
deployment's mark, and writes are copied to a generation `reload --strategy blue-green` loads.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ddb2es_cli.ownership import create_owned_index, marked_generations
from ddb2es_cli.retry import status_of
from ddb2es_cli.stream_records import PlannedOp

log = logging.getLogger("ddb2es.stream")


_LOGGED_ONCE: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    """Logged once per process (per cold start of the Lambda), not once per batch."""
    if what not in _LOGGED_ONCE:
        _LOGGED_ONCE.add(what)
        log.error(message)


# While `reload --strategy blue-green` loads a new generation of index X, the alias
# X + REBUILD_SUFFIX points at it, and every write for X is applied to that generation too: the
# one consumer of the stream keeps both generations current, in stream order. The copies go to
# the generation's own name, never through the marker: reload removes the marker in the same
# atomic call that swaps X, and a versioned write to a name that no longer exists would create
# an index of that name. Looked up at most every REBUILD_CHECK_SECONDS; reload waits longer
# than that before it starts to scan.
REBUILD_CHECK_SECONDS = 5.0
# A role allowed only to write gets 403 on GET _alias: the sync goes on, loudly, without copies.
MARKER_FORBIDDEN = (
    "GET _alias answered 403: this role may not read aliases, so writes are NOT copied to a "
    "generation that `ddb2es reload --strategy blue-green` is loading (its swap would serve "
    "stale data); grant alias reads (see docs/deploy.md, permissions)"
)
_rebuilds: dict[tuple[int, str], tuple[float, dict[str, list[str]]]] = {}


def rebuilding_indices(es: Any, prefix: str) -> dict[str, list[str]]:
    """X -> every generation being loaded for it (where an alias X-rebuilding exists). More
    than one when a killed reload left its marker: each gets the copies, so whichever is
    swapped in later is complete."""
    key = (id(es), prefix)
    now = time.monotonic()
    cached = _rebuilds.get(key)
    if cached and now - cached[0] < REBUILD_CHECK_SECONDS:
        return cached[1]
    try:
        targets = marked_generations(es, prefix)
    except Exception as exc:
        if status_of(exc) != 403:
            raise
        _warn_once("marker-403", MARKER_FORBIDDEN)
        targets = {}
    _rebuilds[key] = (now, targets)
    return targets


def rebuild_copies(es: Any, ops: list[PlannedOp], prefix: str) -> list[PlannedOp]:
    targets = rebuilding_indices(es, prefix)
    if not targets:
        return []
    copies = []
    for op in ops:
        meta = next(iter(op.action[0].values()))
        kind = next(iter(op.action[0]))
        for generation in targets.get(meta["_index"], []):
            copy_meta = {**meta, "_index": generation}
            copies.append(
                PlannedOp(op.position, ({kind: copy_meta}, op.action[1]), rebuild_copy=True)
            )
    return copies


# Indices this process saw exist (or created), and when: one create call per index and minute,
# so an index deleted meanwhile (`reload --strategy delete`) is created again with the mark.
KNOWN_INDEX_SECONDS = 60.0
_known_indices: dict[tuple[int, str], float] = {}


def create_indices(es: Any, ops: list[PlannedOp], deployment: str) -> None:
    """Create each index a batch writes to, with this deployment's mark, before the bulk: an
    index the engine created on its own would carry no mark, and ddb2es would not own it."""
    for op in ops:
        kind, meta = next(iter(op.action[0].items()))
        key = (id(es), meta["_index"])
        seen = _known_indices.get(key)
        if kind == "delete" or (seen and time.monotonic() - seen < KNOWN_INDEX_SECONDS):
            continue
        try:
            if create_owned_index(es, meta["_index"], deployment):
                log.info("created index %s (deployment %s)", meta["_index"], deployment)
            _known_indices[key] = time.monotonic()
        except Exception as exc:  # e.g. a role allowed only to write: the bulk still runs
            _warn_once(f"create-{meta['_index']}", f"could not create {meta['_index']}: {exc}")
