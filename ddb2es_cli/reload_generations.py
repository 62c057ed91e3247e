"""The cluster steps of a reload, each asking again, when it acts, that the index is ours:
deleting, the rebuild markers, the atomic alias swap, abandoning and pruning generations.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ddb2es_cli.ownership import (
    OWNED,
    NotOwned,
    aliases_of,
    create_owned_index,
    current,
    generation_time,
    generations,
    last_swap,
    ownership,
    rebuild_marker,
    record_swap,
    require_owned,
)
from ddb2es_cli.reload_plan import ReloadPlan, ReloadRefused

log = logging.getLogger("ddb2es.reload")


def clean_stale(es: Any, deployment: str, names: list[str]) -> list[str]:
    """Before a new load: markers left by a killed or abandoned reload, and generations that
    were never swapped in (newer than what X serves, served by nobody). Owned ones only."""
    cleaned = []
    for name in names:
        kind, behind = current(es, name)
        served = [t for t in (generation_time(b) for b in behind) if t is not None]
        newest_served = max(served) if kind == "alias" and served else None
        for generation in generations(es, name):
            if ownership(es, generation, deployment).status != OWNED:
                continue
            aliases = aliases_of(es, generation)
            marker = rebuild_marker(name)
            if marker in aliases:
                es.indices.delete_alias(index=generation, name=marker)
                aliases.remove(marker)
                cleaned.append(f"{marker} -> {generation}")
            made = generation_time(generation)
            if not aliases and (newest_served is None or (made and made > newest_served)):
                delete_owned(es, generation, deployment)
                cleaned.append(generation)
    if cleaned:
        log.warning("cleaned what earlier reloads left: %s", ", ".join(cleaned))
    return cleaned


def delete_owned(es: Any, index: str, deployment: str) -> None:
    """Delete a concrete index after asking, right now, that it is ours and serves no alias."""
    require_owned(es, [index], deployment, f"deleting {index}")
    serving = aliases_of(es, index)
    if serving:
        raise NotOwned(f"not deleting {index}: aliases {', '.join(serving)} point at it")
    es.indices.delete(index=index)


def mark_rebuilds(es: Any, plan: ReloadPlan, deployment: str) -> None:
    """Create the new generations and point X-rebuilding at each (see stream.py)."""
    actions = []
    for index in plan.indices:
        if index.new_index is None:
            continue
        create_owned_index(es, index.new_index, deployment)
        require_owned(es, [index.new_index], deployment, f"loading {index.new_index}")
        actions.append({"add": {"index": index.new_index, "alias": rebuild_marker(index.name)}})
    if actions:
        es.indices.update_aliases(body={"actions": actions})


def abandon(es: Any, plan: ReloadPlan, deployment: str) -> list[str]:
    """Delete this run's generations that are not swapped in (markers go with them)."""
    deleted = []
    for index in plan.indices:
        new = index.new_index
        if new is None or not es.indices.exists(index=new):
            continue
        aliases = [a for a in aliases_of(es, new) if a != rebuild_marker(index.name)]
        if aliases:
            continue  # serving already: not abandoned
        try:
            delete_owned(es, new, deployment)
            deleted.append(new)
        except NotOwned as exc:
            log.error("%s", exc)
    if deleted:
        log.warning("abandoned generation %s: deleted %s", plan.generation, ", ".join(deleted))
    return deleted


def settle_appeared(es: Any, plan: ReloadPlan, appeared: dict[str, str], deployment: str) -> None:
    """Types unseen at planning time are never swapped: X may be another application's alias,
    or an index the stream handler created (which holds every item of X, all younger than the
    load). Their generation, if the scan made one, is deleted when it is ours."""
    for name in sorted(appeared):
        found = ownership(es, name, deployment)
        generation = name + plan.generation
        if es.indices.exists(index=generation):
            try:
                delete_owned(es, generation, deployment)
            except NotOwned as exc:
                log.error("%s", exc)
        if found.kind == "missing":
            note = "not indexed yet: no index or alias of that name exists; run reindex"
        elif found.owned:
            note = (
                f"served by {found.kind} {name} (the stream handler); the next reload migrates it"
            )
        else:
            note = f"left alone: {found.reason(deployment)}"
        appeared[name] = note
        log.warning("type %s appeared during the load: %s", name, note)


def swap_aliases(es: Any, plan: ReloadPlan, deployment: str) -> list[str]:
    """Every planned alias moves in one atomic `_aliases` call; concrete indices are replaced
    in it. Only planned names, each asked again now: still ours, still not a `.` name. Every
    planned generation is swapped (on --resume too: the load of all of them is complete)."""
    actions: list[dict[str, Any]] = []
    records: list[tuple[str, list[str], str]] = []
    for index in plan.indices:
        new = index.new_index
        if new is None:
            continue
        alias = index.name
        if not es.indices.exists(index=new):
            raise ReloadRefused(f"nothing was swapped: the generation {new} is gone")
        require_owned(es, [alias, new], deployment, f"swapping {alias}")
        kind, behind = current(es, alias)
        if kind == "alias":
            actions += [{"remove": {"index": old, "alias": alias}} for old in behind]
        elif kind == "index":
            actions.append({"remove_index": {"index": alias}})
        actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
        actions.append({"remove": {"index": new, "alias": rebuild_marker(alias)}})
        # A concrete index is deleted by remove_index: nothing to roll back to.
        records.append((alias, behind if kind == "alias" else [], new))
    if actions:
        es.indices.update_aliases(body={"actions": actions})
    at = datetime.now(timezone.utc)
    for alias, replaced, new in records:
        record_swap(es, deployment, alias, replaced, new, at)
    return [alias for alias, _replaced, _new in records]


def prune_generations(es: Any, plan: ReloadPlan, keep: int, deployment: str) -> list[str]:
    """Delete generations older than the newest `keep` previous ones. Never one an alias
    points at, never the one the last swap replaced (rollback's target), never one not ours."""
    keep = max(1, keep)
    deleted: list[str] = []
    for index in plan.indices:
        record = last_swap(es, deployment, index.name) or {}
        protected = set(record.get("replaced", [])) | {record.get("new", "")}
        current = index.new_index
        older = [g for g in generations(es, index.name) if current is None or g < current]
        for stale in older[: max(0, len(older) - keep)]:
            if stale in protected:
                continue
            try:
                delete_owned(es, stale, deployment)
                deleted.append(stale)
            except NotOwned as exc:
                log.warning("%s", exc)
    return deleted
