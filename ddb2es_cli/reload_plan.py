"""The reload plan: what the tables map to, what exists, what is ours, and the decision
for each index (create, delete, swap, migrate or blocked) with its reason.

A value that changes nothing: `--dry-run` prints it and the real run executes the same plan.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings, TableSettings, key_collisions
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.ownership import (
    MISSING,
    OTHER_DEPLOYMENT,
    check_generation_room,
    generation_suffix,
    ownership,
)
from ddb2es_cli.reindex import ReindexOptions, ReindexSummary
from ddb2es_cli.source import CapacityLimiter, Page, SegmentTask, describe_table, scan_pages
from ddb2es_cli.stream_indices import REBUILD_CHECK_SECONDS
from ddb2es_cli.stream_records import view_refusal
from ddb2es_cli.template import apply_template, template_spec
from ddb2es_cli.transform import TransformError, index_name

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
    # reload --from-export: table name -> its full export (export.rebuild.ExportSource), read
    # instead of scanning; the streams are replayed from each export's time (reload_export.py).
    exports: dict[str, Any] = field(default_factory=dict)


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
    sources: list[str] = field(default_factory=list)  # what is read instead of a scan

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
            "sources": self.sources,
        }

    def lines(self) -> list[str]:
        out = [f"Template {self.template.get('name')}: {self.template.get('action')}"]
        out.extend(self.sources)
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
        table_invalid, table_rcu = tally_index_names(ddb, [table], pages, counts)
        invalid += table_invalid
        rcu += table_rcu
    return counts, invalid, rcu


def scan_counts(
    ddb: Any, settings: Settings, tables: list[TableSettings], options: ReloadOptions
) -> tuple[Counter[str], int]:
    """`type_counts` with the reload's scan options (the plan and the verification count alike).
    Returns (counts, items with an invalid index name)."""
    counts, invalid, _rcu = type_counts(
        ddb,
        settings,
        tables,
        options.reindex.segments,
        options.reindex.max_rcu,
        options.reindex.page_limit,
    )
    return counts, invalid


def tally_index_names(
    ddb: Any, tables: list[TableSettings], pages: Iterable[Page], counts: Counter[str]
) -> tuple[int, float]:
    """Add each item of `pages` (of `tables`) to the count of its index name. Returns (items
    with an invalid index name, read capacity the pages consumed)."""
    shapes = {}
    for table in tables:
        info = describe_table(ddb, table.name)
        shapes[table.name] = table.shape(info.hash_key, info.range_key)
    invalid = 0
    rcu = 0.0
    for page in pages:
        rcu += page.consumed_rcu
        shape = shapes[page.table]
        for item in page.items:
            try:
                counts[index_name(item, shape)] += 1
            except TransformError:
                invalid += 1
    return invalid, rcu


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
    sources: list[str] = []
    if options.exports:
        counts, invalid, sources = _export_counts(ddb, settings, tables, options)
    else:
        counts, invalid = scan_counts(ddb, settings, tables, options)
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
        sources,
    )


def _export_counts(
    ddb: Any, settings: Settings, tables: list[TableSettings], options: ReloadOptions
) -> tuple[Counter[str], int, list[str]]:
    """The counts of a reload from exports, read from them (no read capacity), after the
    checks that its changes since can be replayed."""
    from ddb2es_cli.reload_export import check_replayable, export_lines, export_type_counts

    if options.strategy != "blue-green":
        raise ConfigError(
            "--from-export needs --strategy blue-green: only a generation nothing else writes "
            "can be checked against the export"
        )
    missing = [t.name for t in tables if t.name not in options.exports]
    if missing:
        raise ConfigError(f"--from-export: no export given for {', '.join(missing)}")
    check_replayable(ddb, settings, options.exports, time.time())
    counts, invalid = export_type_counts(ddb, tables, options.exports, options.reindex.segments)
    return counts, invalid, export_lines(options.exports, settings)


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
