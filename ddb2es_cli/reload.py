"""`reload`: rebuild every index of the tables, by deleting them (the weekend flow) or blue/green.

The plan is a value (what exists, what is ours, what will be deleted, created, swapped, and why
each index is in or out); `--dry-run` prints it and the real run executes the same plan.
Ownership: an index is ours when its mapping `_meta.managed_by` says `ddb2es` (set by the
template and by every index ddb2es creates), or when the operator adopts it by name. Nothing
else, and no system or hidden index, is ever deleted or swapped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.reindex import Progress, ReindexOptions, ReindexSummary, run_reindex, state_path_for
from ddb2es_cli.sink import MANAGED_META, REBUILD_SUFFIX, create_managed_index
from ddb2es_cli.source import SegmentTask, describe_table, scan_pages
from ddb2es_cli.stream import REBUILD_CHECK_SECONDS
from ddb2es_cli.template import apply_template, template_spec
from ddb2es_cli.transform import TransformError, index_name

log = logging.getLogger("ddb2es.reload")

STRATEGIES = ("delete", "blue-green")
_GENERATION = re.compile(r"-(\d{8}t\d{9}z)\Z")  # -YYYYmmddtHHMMSSmmmz
_GENERATION_LEN = len("-20260101t000000000z")


class ReloadRefused(Ddb2esError):
    """The plan touches an index ddb2es cannot show it manages."""


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
    verify_tolerance: int = 0  # documents a generation may differ from a fresh count
    gc_deletes: str = "1h"
    reindex: ReindexOptions = field(default_factory=ReindexOptions)


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
            "replayed_records": self.replayed,
            "duration_s": round(self.duration_s, 2),
        }


# --- what the tables map to --------------------------------------------------------------------


def type_counts(
    ddb: Any, settings: Settings, tables: list[TableSettings], segments: int
) -> tuple[Counter[str], int, float]:
    """Items per index name for the tables, from a scan that reads only the type attribute.

    Returns (counts, items with an invalid index name, read capacity consumed)."""
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


def generation_suffix(moment: datetime) -> str:
    """Sortable, lower-case, unique per millisecond: `-20261126t031500123z`."""
    return "-" + moment.strftime("%Y%m%dt%H%M%S") + f"{moment.microsecond // 1000:03d}z"


# --- plan ----------------------------------------------------------------------------------------


def _is_managed(es: Any, index: str) -> bool:
    mapping = es.indices.get_mapping(index=index)
    first: dict[str, Any] = next(iter(mapping.values()), {})
    meta = first.get("mappings", {}).get("_meta", {}) or {}
    return bool(meta.get("managed_by") == MANAGED_META["managed_by"])


def _current(es: Any, name: str) -> tuple[str, list[str]]:
    """What `name` is now: missing, a concrete index, or an alias (and what it points to)."""
    if es.indices.exists_alias(name=name):
        return "alias", sorted(es.indices.get_alias(name=name))
    if es.indices.exists(index=name):
        return "index", [name]
    return "missing", []


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
    counts, invalid, _rcu = type_counts(ddb, settings, tables, options.reindex.segments)
    moment = now or datetime.now(timezone.utc)
    suffix = generation_suffix(moment)
    template = apply_template(es, engine, template_spec(settings), dry_run=True)
    plans: list[IndexPlan] = []
    for name in sorted(counts):
        now_is, behind = _current(es, name)
        managed = all(_is_managed(es, i) for i in behind) if behind else True
        plan = IndexPlan(name, counts[name], now_is, behind, managed, "", "")
        _decide(plan, options, suffix)
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
    )


def _decide(plan: IndexPlan, options: ReloadOptions, suffix: str) -> None:
    ours = plan.managed or plan.name in options.adopt
    if plan.name.startswith("."):
        plan.action, plan.reason = "blocked", "system or hidden index: never touched"
        return
    if plan.now != "missing" and not ours:
        plan.action = "blocked"
        plan.reason = (
            f"{plan.now} {','.join(plan.behind)} is not managed by ddb2es "
            f"(no _meta.managed_by); pass --adopt {plan.name} to take it over"
        )
        return
    adopted = "" if plan.managed else " (adopted)"
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
    """Execute the plan (made here when not given). The caller asked for confirmation."""
    started = time.monotonic()
    if options.reindex.resume:  # the generation the interrupted run was loading
        plan = plan_reload(
            es, engine, ddb, settings, tables, options, _saved_start(tables, options)
        )
    else:
        plan = plan or plan_reload(es, engine, ddb, settings, tables, options)
        _save_start(tables, options, plan.started)
    rebuild_start = plan.started
    if plan.blocked:
        raise ReloadRefused(
            "reload refused: " + "; ".join(f"{p.name}: {p.reason}" for p in plan.blocked)
        )
    apply_template(es, engine, template_spec(settings))
    if options.strategy == "delete":
        result = _delete_flow(es, ddb, settings, tables, options, plan, progress, started)
    else:
        result = _blue_green_flow(
            es, ddb, streams, settings, tables, options, plan, progress, started, rebuild_start
        )
    _reload_state_path(tables).unlink(missing_ok=True)
    return result


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
    if not options.reindex.resume:
        for index in plan.indices:
            if index.action != "delete":
                continue
            if index.now == "alias":  # a former blue/green generation: drop alias and indices
                es.indices.delete(index=",".join(index.behind))
                deleted.extend(index.behind)
            else:
                es.indices.delete(index=index.name)
                deleted.append(index.name)
            log.info("deleted %s", index.name)
    reindex_options = replace(options.reindex, bulk_load_settings=None)
    summary = run_reindex(ddb, es, settings, tables, reindex_options, progress)
    counts, _invalid, _rcu = type_counts(ddb, settings, tables, options.reindex.segments)
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
    rebuild_start: datetime,
) -> ReloadSummary:
    reindex_options = replace(
        options.reindex,
        index_suffix=plan.generation,
        bulk_load_settings=True,
        extra_load_settings={"gc_deletes": options.gc_deletes},
        state_path=options.reindex.state_path
        or state_path_for(tables).with_name(f"reload{plan.generation}.json"),
    )
    _mark_rebuilds(es, plan)
    # The stream handler looks for rebuild markers every REBUILD_CHECK_SECONDS: once it has seen
    # them, every change is written to both generations, so the scan may start.
    time.sleep(options.marker_wait)
    try:
        summary = run_reindex(ddb, es, settings, tables, reindex_options, progress)
        counts, _invalid, _rcu = type_counts(ddb, settings, tables, options.reindex.segments)
        verify = _verify(es, dict(counts), options.verify_tolerance, plan.generation)
        if not all(v["ok"] for v in verify.values()):
            raise Ddb2esError(
                f"verification failed, nothing was swapped (the old indices still serve): {verify}"
            )
        swapped = _swap(es, plan, summary, options.adopt)
    except BaseException:
        _unmark_rebuilds(es, plan)
        raise
    replayed = _replay(es, ddb, streams, settings, tables, rebuild_start) if options.replay else 0
    deleted = _prune(es, plan, options.keep)
    return ReloadSummary(
        plan, summary, verify, swapped, deleted, replayed, time.monotonic() - started
    )


def _mark_rebuilds(es: Any, plan: ReloadPlan) -> None:
    """Create the new generations and point X-rebuilding at each (see stream.py)."""
    actions = []
    for index in plan.indices:
        if index.new_index is None:
            continue
        create_managed_index(es, index.new_index)
        actions.append({"add": {"index": index.new_index, "alias": index.name + REBUILD_SUFFIX}})
    if actions:
        es.indices.update_aliases(body={"actions": actions})


def _unmark_rebuilds(es: Any, plan: ReloadPlan) -> None:
    for index in plan.indices:
        if index.new_index and es.indices.exists_alias(name=index.name + REBUILD_SUFFIX):
            es.indices.delete_alias(index=index.new_index, name=index.name + REBUILD_SUFFIX)


def _swap(es: Any, plan: ReloadPlan, summary: ReindexSummary, adopt: tuple[str, ...]) -> list[str]:
    """Every alias moves in one atomic `_aliases` call; concrete indices are replaced in it.

    What each name is now is read again here, not taken from the plan: while the load ran, the
    stream handler may have created an index of a type that was new then."""
    actions: list[dict[str, Any]] = []
    aliases = []
    planned = {index.name for index in plan.indices}
    for new in sorted(summary.indices):
        if not new.endswith(plan.generation):
            continue
        alias = new[: -len(plan.generation)]
        now_is, behind = _current(es, alias)
        if alias not in planned and now_is == "index":
            # A type that first appeared during the load: the stream handler created X and has
            # written every item of it since (all are younger than the rebuild), while the new
            # generation may have missed some. X stays; the next reload migrates it.
            log.info("%s appeared during the load and stays as it is", alias)
            es.indices.delete(index=new)
            continue
        if now_is == "alias":
            actions += [{"remove": {"index": old, "alias": alias}} for old in behind]
        elif now_is == "index":
            if not (_is_managed(es, alias) or alias in adopt):
                raise ReloadRefused(
                    f"nothing was swapped: {alias} is an index ddb2es does not "
                    f"manage; pass --adopt {alias} to replace it"
                )
            actions.append({"remove_index": {"index": alias}})
        actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
        if es.indices.exists_alias(name=alias + REBUILD_SUFFIX):
            actions.append({"remove": {"index": new, "alias": alias + REBUILD_SUFFIX}})
        aliases.append(alias)
    if actions:
        es.indices.update_aliases(body={"actions": actions})
    return aliases


def _replay(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    since: datetime,
) -> int:
    """Apply what the tables' streams recorded since the rebuild began, through the aliases."""
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


def _prune(es: Any, plan: ReloadPlan, keep: int) -> list[str]:
    """Delete generations older than the newest `keep` previous ones (managed ones only)."""
    deleted: list[str] = []
    for index in plan.indices:
        generations = _generations(es, index.name)
        current = index.new_index
        older = [g for g in generations if g != current and (current is None or g < current)]
        for stale in older[: max(0, len(older) - keep)]:
            if _is_managed(es, stale):
                es.indices.delete(index=stale)
                deleted.append(stale)
    return deleted


def _generations(es: Any, alias: str) -> list[str]:
    found = es.indices.get(index=f"{alias}-*", expand_wildcards="open")
    return sorted(n for n in found if _GENERATION.search(n) and n[:-_GENERATION_LEN] == alias)


# --- rollback ------------------------------------------------------------------------------------


def rollback(
    es: Any,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    segments: int,
    dry_run: bool = False,
) -> list[dict[str, str]]:
    """Point each alias of the tables back at its previous generation, in one atomic call."""
    counts, _invalid, _rcu = type_counts(ddb, settings, tables, segments)
    moves: list[dict[str, str]] = []
    for name in sorted(counts):
        if not es.indices.exists_alias(name=name):
            continue
        current = sorted(es.indices.get_alias(name=name))
        generations = _generations(es, name)
        older = [g for g in generations if current and g < current[0]]
        if not older:
            continue
        moves.append({"alias": name, "from": current[0], "to": older[-1]})
    if not moves:
        raise Ddb2esError("nothing to roll back: no alias of these tables has an older generation")
    if not dry_run:
        actions: list[dict[str, Any]] = []
        for move in moves:
            actions.append({"remove": {"index": move["from"], "alias": move["alias"]}})
            actions.append(
                {"add": {"index": move["to"], "alias": move["alias"], "is_write_index": True}}
            )
        es.indices.update_aliases(body={"actions": actions})
    return moves


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


def _save_start(tables: list[TableSettings], options: ReloadOptions, moment: datetime) -> None:
    """What --resume needs to continue the same generation."""
    write_json_atomic(
        _reload_state_path(tables), {"strategy": options.strategy, "started": moment.isoformat()}
    )
