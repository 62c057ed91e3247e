"""`reload`: rebuild every index of the tables, by deleting them (the weekend flow) or blue/green.

The plan is a value (what exists, what is ours, what will be deleted, created, swapped, and why
each index is in or out); `--dry-run` prints it and the real run executes the same plan.
Ownership (ownership.py): an index is ours when ddb2es created it for this deployment (mapping
`_meta`) or the operator adopted it (`--adopt`, which writes that mark). Nothing else, and no
system or hidden index, is ever deleted or swapped; every destructive step asks again when it acts.
One run of the same tables at a time: the run lock lives in the cluster's control index.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings, TableSettings, key_collisions
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.ownership import (
    MISSING,
    OTHER_DEPLOYMENT,
    OWNED,
    NotOwned,
    adopt,
    aliases_of,
    check_generation_room,
    create_owned_index,
    current,
    generation_suffix,
    generation_time,
    generations,
    last_swap,
    ownership,
    rebuild_marker,
    record_swap,
    require_owned,
    run_lock,
)
from ddb2es_cli.reindex import Progress, ReindexOptions, ReindexSummary, run_reindex, state_path_for
from ddb2es_cli.source import CapacityLimiter, SegmentTask, describe_table, scan_pages
from ddb2es_cli.stream import REBUILD_CHECK_SECONDS, view_refusal
from ddb2es_cli.template import apply_template, template_spec
from ddb2es_cli.transform import TransformError, index_name

log = logging.getLogger("ddb2es.reload")

STRATEGIES = ("delete", "blue-green")


class ReloadRefused(Ddb2esError):
    """The plan touches an index ddb2es cannot show it manages."""


class VerificationFailed(Ddb2esError):
    """A new generation does not hold what the tables hold: it is abandoned, nothing swapped."""


@dataclass
class ReloadOptions:
    strategy: str = "blue-green"
    keep: int = 1
    adopt: tuple[str, ...] = ()
    dry_run: bool = False
    # blue/green: replay the tables' streams from the rebuild start after the swap. Only for
    # setups where no stream consumer runs: a running one already writes both generations.
    replay: bool = False
    marker_wait: float = REBUILD_CHECK_SECONDS + 5
    # Told (one line) before the marker wait, so a run is not silent for seconds (the CLI prints).
    notify: Callable[[str], None] | None = None
    verify_tolerance: int = 0  # documents a generation may differ from a fresh count
    gc_deletes: str = "1h"
    break_lock: bool = False  # the operator confirmed that the lock's holder is dead
    reindex: ReindexOptions = field(default_factory=ReindexOptions)
    # The load itself (default: run_reindex in this process; scale.scaled_loader spreads it
    # over worker processes of a run whose id is `run_token`, which shares the run lock).
    loader: Callable[..., ReindexSummary] | None = None
    run_token: str | None = None


@dataclass
class IndexPlan:
    """One type index X of the tables: what is there now and what the reload does to it."""

    name: str
    items: int  # items of the tables that map to it (the type count)
    now: str  # missing | index | alias
    behind: list[str]  # the concrete indices X is or points to
    managed: bool
    action: str
    reason: str
    new_index: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class ReloadPlan:
    strategy: str
    tables: list[str]
    generation: str
    indices: list[IndexPlan]
    invalid_items: int
    template: dict[str, Any]
    blocked: list[IndexPlan] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    warnings: list[str] = field(default_factory=list)

    @property
    def downtime(self) -> bool:
        return self.strategy == "delete"

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "tables": self.tables,
            "generation": self.generation,
            "downtime": self.downtime,
            "template": self.template,
            "indices": [i.as_dict() for i in self.indices],
            "blocked": [i.name for i in self.blocked],
            "invalid_items": self.invalid_items,
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        out = [f"Template {self.template.get('name')}: {self.template.get('action')}"]
        if self.downtime:
            out.append(
                "Strategy delete: the indices below are empty until the reload refills "
                "them (downtime is expected)."
            )
        for index in self.indices:
            out.append(
                f"{index.action:>12}  {index.name} ({index.items} items; now "
                f"{index.now}{' ' + ','.join(index.behind) if index.behind else ''}): "
                f"{index.reason}"
            )
        if self.invalid_items:
            out.append(
                f"{self.invalid_items} items have a type that is no valid index name: "
                "they will be failures"
            )
        out.extend(f"Warning: {warning}" for warning in self.warnings)
        return out


@dataclass
class ReloadSummary:
    plan: ReloadPlan
    reindex: ReindexSummary | None
    verify: dict[str, dict[str, Any]]
    swapped: list[str]
    deleted: list[str]
    replayed: int
    duration_s: float
    # Types that first appeared while the load ran: not planned, so never swapped (what
    # happened to each is said here).
    appeared: dict[str, str] = field(default_factory=dict)
    cleaned: list[str] = field(default_factory=list)  # stale markers and abandoned generations

    @property
    def verified(self) -> bool:
        return all(v["ok"] for v in self.verify.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.as_dict(),
            "reindex": self.reindex.as_dict() if self.reindex else None,
            "verify": self.verify,
            "verified": self.verified,
            "swapped": self.swapped,
            "deleted": self.deleted,
            "appeared": self.appeared,
            "cleaned": self.cleaned,
            "replayed_records": self.replayed,
            "duration_s": round(self.duration_s, 2),
        }


# --- what the tables map to --------------------------------------------------------------------


def type_counts(
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    segments: int,
    max_rcu: float | None = None,
    page_limit: int | None = None,
) -> tuple[Counter[str], int, float]:
    """Items per index name for the tables, from a scan that reads only the type attribute.

    Throttled by `max_rcu` like the load itself: a production reload scans three times.
    Returns (counts, items with an invalid index name, read capacity consumed)."""
    limiter = CapacityLimiter(max_rcu)
    counts: Counter[str] = Counter()
    invalid = 0
    rcu = 0.0
    for table in tables:
        info = describe_table(ddb, table.name)
        shape = table.shape(info.hash_key, info.range_key)
        tasks = [SegmentTask(table.name, s, segments) for s in range(segments)]
        pages = scan_pages(
            ddb,
            tasks,
            workers=segments,
            page_limit=page_limit,
            limiter=limiter,
            projection="#t",
            expression_names={"#t": table.type_attribute},
        )
        for page in pages:
            rcu += page.consumed_rcu
            for item in page.items:
                try:
                    counts[index_name(item, shape)] += 1
                except TransformError:
                    invalid += 1
    return counts, invalid, rcu


# --- plan ----------------------------------------------------------------------------------------


def plan_reload(
    es: Any,
    engine: Engine,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    now: datetime | None = None,
) -> ReloadPlan:
    """Look only; change nothing (the template step is itself a dry run here)."""
    if options.strategy not in STRATEGIES:
        raise Ddb2esError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if options.keep < 1:
        raise ConfigError("--keep must be at least 1: rollback needs the previous generation")
    counts, invalid, _rcu = type_counts(
        ddb,
        settings,
        tables,
        options.reindex.segments,
        options.reindex.max_rcu,
        options.reindex.page_limit,
    )
    moment = now or datetime.now(timezone.utc)
    suffix = generation_suffix(moment)
    template = apply_template(es, engine, template_spec(settings), dry_run=True)
    deployment = settings.deployment_name
    plans: list[IndexPlan] = []
    for name in sorted(counts):
        found = ownership(es, name, deployment)
        plan = IndexPlan(
            name,
            counts[name],
            found.kind,
            list(found.behind),
            found.owned or found.kind == MISSING,
            "",
            "",
        )
        _decide(plan, options, suffix, found.reason(deployment), found.status)
        plans.append(plan)
    blocked = [p for p in plans if p.action == "blocked"]
    return ReloadPlan(
        options.strategy,
        [t.name for t in tables],
        suffix,
        plans,
        invalid,
        template.as_dict(),
        blocked,
        moment,
        _table_warnings(ddb, settings, tables, options),
    )


def _table_warnings(
    ddb: Any, settings: Settings, tables: list[TableSettings], options: ReloadOptions
) -> list[str]:
    """What the plan should say about the tables themselves: documents two tables can overwrite
    in a shared index, and streams the handler refuses (their changes would miss the load)."""
    infos = {t.name: describe_table(ddb, t.name) for t in settings.tables or tables}
    infos.update({t.name: describe_table(ddb, t.name) for t in tables if t.name not in infos})
    keys = [
        (settings.table(name), [i.hash_key] + ([i.range_key] if i.range_key else []))
        for name, i in infos.items()
    ]
    running = {t.name for t in tables}
    warnings = [c.describe() for c in key_collisions(keys) if {c.first, c.second} & running]
    for table in tables:
        view = infos[table.name].stream_view
        refusal = view_refusal(view, table.name) if view else None
        if refusal and (options.replay or options.strategy == "blue-green"):
            if options.replay:
                raise ConfigError(f"--replay: {refusal}")
            warnings.append(f"{refusal}: changes made during the load reach no new generation")
    return warnings


def _decide(
    plan: IndexPlan, options: ReloadOptions, suffix: str, why_not: str, status: str = ""
) -> None:
    ours = plan.managed or plan.name in options.adopt
    if status == OTHER_DEPLOYMENT:
        # Never taken by --adopt: to move an index between deployments, run the other one's
        # config (its `deployment` name) or remove its mark by hand.
        plan.action, plan.reason = "blocked", why_not
        return
    if plan.name.startswith(".") or any(b.startswith(".") for b in plan.behind):
        plan.action, plan.reason = "blocked", "system or hidden index: never touched"
        return
    if options.strategy == "blue-green":
        try:
            check_generation_room(plan.name)
        except ConfigError as exc:
            plan.action, plan.reason = "blocked", str(exc)
            return
    if plan.now != "missing" and not ours:
        plan.action, plan.reason = "blocked", why_not
        return
    adopted = "" if plan.managed else " (adopted: the run marks it as this deployment's)"
    if options.strategy == "delete":
        if plan.now == "missing":
            plan.action, plan.reason = "create", "does not exist yet"
        else:
            plan.action = "delete"
            plan.reason = f"managed{adopted}: deleted, then reloaded from the tables"
        return
    plan.new_index = plan.name + suffix
    if plan.now == "alias":
        plan.action = "swap"
        plan.reason = f"alias moves to {plan.new_index} in one atomic call{adopted}"
    elif plan.now == "index":
        plan.action = "migrate"
        plan.reason = (
            f"concrete index{adopted} is replaced by alias -> {plan.new_index} in one "
            "atomic call (remove_index)"
        )
    else:
        plan.action = "create"
        plan.reason = f"new alias -> {plan.new_index}"


# --- run -----------------------------------------------------------------------------------------


def run_reload(
    es: Any,
    engine: Engine,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    progress: Progress | None = None,
    plan: ReloadPlan | None = None,
) -> ReloadSummary:
    """Execute the plan (made here when not given) under the run lock of the tables. The
    caller asked for confirmation."""
    with run_lock(
        es,
        settings.deployment_name,
        [t.name for t in tables],
        f"reload --strategy {options.strategy}",
        force=options.break_lock,
        token=options.run_token,
    ):
        return _run_locked(es, engine, ddb, streams, settings, tables, options, progress, plan)


def _run_locked(
    es: Any,
    engine: Engine,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    progress: Progress | None,
    plan: ReloadPlan | None,
) -> ReloadSummary:
    started = time.monotonic()
    if options.reindex.resume:  # the generation the interrupted run was loading
        plan = plan_reload(
            es, engine, ddb, settings, tables, options, _saved_start(tables, options)
        )
        # Only what that run planned: a type that appeared since is reported, never swapped.
        planned = _saved_indices(tables)
        if planned is not None:
            plan.indices = [i for i in plan.indices if i.name in planned]
            plan.blocked = [i for i in plan.blocked if i.name in planned]
    else:
        plan = plan or plan_reload(es, engine, ddb, settings, tables, options)
    if plan.blocked:
        raise ReloadRefused(
            "reload refused: " + "; ".join(f"{p.name}: {p.reason}" for p in plan.blocked)
        )
    deployment = settings.deployment_name
    for index in plan.indices:
        if not index.managed and index.name in options.adopt:
            adopt(es, index.name, deployment)
            index.managed = True
    cleaned: list[str] = []
    if not options.reindex.resume:
        cleaned = clean_stale(es, deployment, [i.name for i in plan.indices])
        _save_start(tables, options, plan.started, [i.name for i in plan.indices])
    apply_template(es, engine, template_spec(settings))
    if options.strategy == "delete":
        result = _delete_flow(es, ddb, settings, tables, options, plan, progress, started)
    else:
        result = _blue_green_flow(
            es, ddb, streams, settings, tables, options, plan, progress, started
        )
    result.cleaned = cleaned
    _reload_state_path(tables).unlink(missing_ok=True)
    return result


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
                _delete_owned(es, generation, deployment)
                cleaned.append(generation)
    if cleaned:
        log.warning("cleaned what earlier reloads left: %s", ", ".join(cleaned))
    return cleaned


def _delete_owned(es: Any, index: str, deployment: str) -> None:
    """Delete a concrete index after asking, right now, that it is ours and serves no alias."""
    require_owned(es, [index], deployment, f"deleting {index}")
    serving = aliases_of(es, index)
    if serving:
        raise NotOwned(f"not deleting {index}: aliases {', '.join(serving)} point at it")
    es.indices.delete(index=index)


def _delete_flow(
    es: Any,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    plan: ReloadPlan,
    progress: Progress | None,
    started: float,
) -> ReloadSummary:
    deleted: list[str] = []
    deployment = settings.deployment_name
    if not options.reindex.resume:
        for index in plan.indices:
            if index.action != "delete":
                continue
            # Asked again now: the plan may be minutes old.
            require_owned(es, [index.name], deployment, f"deleting {index.name}")
            _kind, behind = current(es, index.name)
            es.indices.delete(index=",".join(behind))
            deleted.extend(behind)
            # At once, so a stream write meanwhile cannot create it without the mark.
            create_owned_index(es, index.name, deployment)
            log.info("deleted %s", index.name)
    reindex_options = replace(options.reindex, bulk_load_settings=None)
    load = options.loader or run_reindex
    summary = load(ddb, es, settings, tables, reindex_options, progress)
    counts, _invalid, _rcu = type_counts(
        ddb,
        settings,
        tables,
        options.reindex.segments,
        options.reindex.max_rcu,
        options.reindex.page_limit,
    )
    verify = _verify(es, dict(counts), options.verify_tolerance)
    return ReloadSummary(plan, summary, verify, [], deleted, 0, time.monotonic() - started)


def _verify(
    es: Any, expected: dict[str, int], tolerance: int = 0, suffix: str = ""
) -> dict[str, dict[str, Any]]:
    """Documents per index (X + suffix) against a fresh count of the table, after a refresh.

    While the tables take writes the two sides move independently, so a busy table needs a
    tolerance; the drift command is the exact check afterwards."""
    result: dict[str, dict[str, Any]] = {}
    for name, want in sorted(expected.items()):
        index = name + suffix
        if not es.indices.exists(index=index):
            found = 0
        else:
            es.indices.refresh(index=index)
            found = int(es.count(index=index)["count"])
        ok = abs(found - want) <= tolerance
        result[index] = {"expected": want, "found": found, "ok": ok}
    return result


def _blue_green_flow(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    plan: ReloadPlan,
    progress: Progress | None,
    started: float,
) -> ReloadSummary:
    deployment = settings.deployment_name
    reindex_options = replace(
        options.reindex,
        index_suffix=plan.generation,
        bulk_load_settings=True,
        extra_load_settings={"gc_deletes": options.gc_deletes},
        state_path=options.reindex.state_path
        or state_path_for(tables).with_name(f"reload{plan.generation}.json"),
    )
    _mark_rebuilds(es, plan, deployment)
    # The stream handler looks for rebuild markers every REBUILD_CHECK_SECONDS: once it has seen
    # them, every change is written to both generations, so the scan may start.
    if options.notify and options.marker_wait > 0:
        options.notify(
            f"waiting {options.marker_wait:.0f} s for the stream handler to see the rebuild "
            "marker (then every change goes to both generations)"
        )
    time.sleep(options.marker_wait)
    # An interruption (Ctrl-C, a lost connection) keeps the generations AND their markers: the
    # stream handler keeps them current until `--resume` swaps them or a new reload abandons
    # them. What is known to be wrong (verification, a refused swap) is abandoned at once.
    load = options.loader or run_reindex
    summary = load(ddb, es, settings, tables, reindex_options, progress)
    counts, _invalid, _rcu = type_counts(
        ddb,
        settings,
        tables,
        options.reindex.segments,
        options.reindex.max_rcu,
        options.reindex.page_limit,
    )
    planned = {index.name for index in plan.indices}
    appeared = {name: "" for name in counts if name not in planned}
    verify = _verify(
        es,
        {n: c for n, c in counts.items() if n in planned},
        options.verify_tolerance,
        plan.generation,
    )
    try:
        if not all(v["ok"] for v in verify.values()):
            raise VerificationFailed(
                f"verification failed, nothing was swapped (the old indices still serve; "
                f"the new generation {plan.generation} was deleted): {verify}"
            )
        _settle_appeared(es, plan, appeared, deployment)
        swapped = _swap(es, plan, deployment)
    except Ddb2esError:
        abandon(es, plan, deployment)
        _reload_state_path(tables).unlink(missing_ok=True)  # nothing left to resume
        raise
    replayed = _replay(es, ddb, streams, settings, tables, plan.started) if options.replay else 0
    deleted = _prune(es, plan, options.keep, deployment)
    return ReloadSummary(
        plan,
        summary,
        verify,
        swapped,
        deleted,
        replayed,
        time.monotonic() - started,
        appeared,
    )


def _mark_rebuilds(es: Any, plan: ReloadPlan, deployment: str) -> None:
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
            _delete_owned(es, new, deployment)
            deleted.append(new)
        except NotOwned as exc:
            log.error("%s", exc)
    if deleted:
        log.warning("abandoned generation %s: deleted %s", plan.generation, ", ".join(deleted))
    return deleted


def _settle_appeared(es: Any, plan: ReloadPlan, appeared: dict[str, str], deployment: str) -> None:
    """Types unseen at planning time are never swapped: X may be another application's alias,
    or an index the stream handler created (which holds every item of X, all younger than the
    load). Their generation, if the scan made one, is deleted when it is ours."""
    for name in sorted(appeared):
        found = ownership(es, name, deployment)
        generation = name + plan.generation
        if es.indices.exists(index=generation):
            try:
                _delete_owned(es, generation, deployment)
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


def _swap(es: Any, plan: ReloadPlan, deployment: str) -> list[str]:
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


def _replay(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    since: datetime,
) -> int:
    """Apply what the tables' streams recorded since `since`, through the aliases."""
    from ddb2es_cli.stream_runner import StreamOptions, run_stream

    with_streams = [t for t in tables if describe_table(ddb, t.name).stream_arn]
    if not with_streams:
        log.warning("no table has a stream: changes made during the rebuild are not replayed")
        return 0
    start = (since - timedelta(seconds=5)).isoformat()
    state = DEFAULT_STATE_DIR / f"reload-replay-{since.strftime('%Y%m%dt%H%M%S%f')}.json"
    options = StreamOptions(start=start, until_caught_up=True, state_path=state, poll_interval=0.2)
    summary = run_stream(ddb, streams, es, settings, with_streams, options)
    state.unlink(missing_ok=True)
    return sum(t.records for t in summary.tables.values())


def _prune(es: Any, plan: ReloadPlan, keep: int, deployment: str) -> list[str]:
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
                _delete_owned(es, stale, deployment)
                deleted.append(stale)
            except NotOwned as exc:
                log.warning("%s", exc)
    return deleted


# --- rollback ------------------------------------------------------------------------------------


@dataclass
class Rollback:
    """One alias going back to the generation its last swap replaced."""

    alias: str
    from_index: str
    to_index: str
    swapped_at: str
    age_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "from": self.from_index,
            "to": self.to_index,
            "swapped_at": self.swapped_at,
            "age_s": round(self.age_s),
        }

    def line(self, done: bool) -> str:
        verb = "moved" if done else "would move"
        return (
            f"{verb} {self.alias}: {self.from_index} -> {self.to_index} (replaced by the swap "
            f"of {self.swapped_at}, {_age(self.age_s)} ago; it lacks every change since then "
            f"until brought current)"
        )


@dataclass
class RollbackResult:
    moves: list[Rollback]
    skipped: dict[str, str]
    dry_run: bool
    caught_up: str = ""  # how the old generations were brought current
    replayed: int = 0
    reindexed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "moves": [m.as_dict() for m in self.moves],
            "skipped": self.skipped,
            "caught_up": self.caught_up,
            "replayed_records": self.replayed,
            "reindexed_documents": self.reindexed,
        }

    def lines(self) -> list[str]:
        out = [m.line(not self.dry_run) for m in self.moves]
        out += [f"not moved {name}: {why}" for name, why in sorted(self.skipped.items())]
        if self.caught_up:
            out.append(self.caught_up)
        return out


def plan_rollback(
    es: Any, ddb: Any, settings: Settings, tables: list[TableSettings], segments: int
) -> RollbackResult:
    """For each alias of the tables: the generation its last swap replaced (recorded at swap
    time), only while the alias still points where that swap put it."""
    deployment = settings.deployment_name
    counts, _invalid, _rcu = type_counts(ddb, settings, tables, segments)
    now = datetime.now(timezone.utc)
    moves: list[Rollback] = []
    skipped: dict[str, str] = {}
    for name in sorted(counts):
        record = last_swap(es, deployment, name)
        kind, behind = current(es, name)
        if record is None or kind != "alias":
            continue
        replaced = [str(r) for r in record.get("replaced", [])]
        if behind != [record.get("new")]:
            skipped[name] = (
                f"points at {','.join(behind)}, not at {record.get('new')} where the last "
                "swap put it"
            )
        elif len(replaced) != 1:
            skipped[name] = (
                "the last swap replaced a concrete index (deleted): nothing to go back to"
            )
        elif not es.indices.exists(index=replaced[0]):
            skipped[name] = f"{replaced[0]} no longer exists"
        elif ownership(es, replaced[0], deployment).status != OWNED:
            skipped[name] = ownership(es, replaced[0], deployment).reason(deployment)
        else:
            at = datetime.fromisoformat(str(record["at"]))
            moves.append(
                Rollback(
                    name, behind[0], replaced[0], str(record["at"]), (now - at).total_seconds()
                )
            )
    return RollbackResult(moves, skipped, dry_run=True)


def rollback(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    segments: int,
    dry_run: bool = False,
    break_lock: bool = False,
) -> RollbackResult:
    """Point each alias back at the generation its last swap replaced, in one atomic call,
    then bring those generations current: a replay of the tables' streams from the swap (so
    deletes arrive too) when every table has one, else a reindex of the tables into them."""
    deployment = settings.deployment_name
    result = plan_rollback(es, ddb, settings, tables, segments)
    if not result.moves:
        raise Ddb2esError(
            "nothing to roll back: no alias of these tables has a recorded previous generation"
            + "".join(f"; {n}: {why}" for n, why in sorted(result.skipped.items()))
        )
    if dry_run:
        return result
    with run_lock(es, deployment, [t.name for t in tables], "reload rollback", force=break_lock):
        actions: list[dict[str, Any]] = []
        for move in result.moves:
            require_owned(es, [move.alias, move.to_index], deployment, f"rolling back {move.alias}")
            actions.append({"remove": {"index": move.from_index, "alias": move.alias}})
            actions.append(
                {"add": {"index": move.to_index, "alias": move.alias, "is_write_index": True}}
            )
        es.indices.update_aliases(body={"actions": actions})
        at = datetime.now(timezone.utc)
        for move in result.moves:
            record_swap(es, deployment, move.alias, [move.from_index], move.to_index, at)
        result.dry_run = False
        since = min(datetime.fromisoformat(m.swapped_at) for m in result.moves)
        with_streams = all(describe_table(ddb, t.name).stream_arn for t in tables)
        if with_streams and at - since < timedelta(hours=23):
            result.replayed = _replay(es, ddb, streams, settings, tables, since)
            result.caught_up = (
                f"brought current: replayed {result.replayed} stream records "
                f"since {since.isoformat()}"
            )
        else:
            summary = run_reindex(
                ddb, es, settings, tables, ReindexOptions(segments=segments, failures_path=None)
            )
            result.reindexed = sum(t.indexed for t in summary.tables.values())
            result.caught_up = (
                f"brought current by a reindex ({result.reindexed} documents); items deleted "
                "since the swap are still in it: run `ddb2es drift --repair`"
            )
    return result


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- resume --------------------------------------------------------------------------------------


def _reload_state_path(tables: list[TableSettings]) -> Path:
    return state_path_for(tables, DEFAULT_STATE_DIR).with_name(
        state_path_for(tables).name.replace("reindex-", "reload-")
    )


def _saved_start(tables: list[TableSettings], options: ReloadOptions) -> datetime:
    path = _reload_state_path(tables)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"nothing to resume: no interrupted reload in {path}") from None
    if saved.get("strategy") != options.strategy:
        raise ConfigError(
            f"--resume: the interrupted reload used --strategy {saved.get('strategy')}"
        )
    return datetime.fromisoformat(saved["started"])


def _saved_indices(tables: list[TableSettings]) -> set[str] | None:
    try:
        saved = json.loads(_reload_state_path(tables).read_text())
    except (OSError, ValueError):
        return None
    names = saved.get("indices")
    return set(names) if isinstance(names, list) else None


def _save_start(
    tables: list[TableSettings], options: ReloadOptions, moment: datetime, indices: list[str]
) -> None:
    """What --resume needs to continue the same generation: its time and its planned names."""
    write_json_atomic(
        _reload_state_path(tables),
        {"strategy": options.strategy, "started": moment.isoformat(), "indices": indices},
    )
