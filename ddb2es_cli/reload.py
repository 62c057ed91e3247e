"""`reload`: rebuild every index of the tables, by deleting them (the weekend flow) or blue/green.

The plan is a value (what exists, what is ours, what will be deleted, created, swapped, and why
each index is in or out); `--dry-run` prints it and the real run executes the same plan.
Ownership (ownership.py): an index is ours when ddb2es created it for this deployment (mapping
`_meta`) or the operator adopted it (`--adopt`, which writes that mark). Nothing else, and no
system or hidden index, is ever deleted or swapped; every destructive step asks again when it acts.
One run of the same tables at a time: the run lock lives in the cluster's control index.

This module runs the plan under the lock; the parts live in reload_plan.py (the plan),
reload_flow.py (delete and blue/green), reload_generations.py (alias and generation steps),
reload_rollback.py and reload_resume.py. Their public names are re-exported here.
"""

from __future__ import annotations

import time
from typing import Any

from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.ownership import adopt, run_lock
from ddb2es_cli.reindex import Progress
from ddb2es_cli.reload_export import export_flow
from ddb2es_cli.reload_flow import blue_green_flow, delete_flow
from ddb2es_cli.reload_generations import abandon as abandon
from ddb2es_cli.reload_generations import clean_stale as clean_stale
from ddb2es_cli.reload_plan import STRATEGIES as STRATEGIES
from ddb2es_cli.reload_plan import IndexPlan as IndexPlan
from ddb2es_cli.reload_plan import ReloadOptions as ReloadOptions
from ddb2es_cli.reload_plan import ReloadPlan as ReloadPlan
from ddb2es_cli.reload_plan import ReloadRefused as ReloadRefused
from ddb2es_cli.reload_plan import ReloadSummary as ReloadSummary
from ddb2es_cli.reload_plan import VerificationFailed as VerificationFailed
from ddb2es_cli.reload_plan import plan_reload as plan_reload
from ddb2es_cli.reload_plan import type_counts as type_counts
from ddb2es_cli.reload_resume import reload_state_path, save_start, saved_indices, saved_start
from ddb2es_cli.reload_rollback import Rollback as Rollback
from ddb2es_cli.reload_rollback import RollbackResult as RollbackResult
from ddb2es_cli.reload_rollback import plan_rollback as plan_rollback
from ddb2es_cli.reload_rollback import rollback as rollback
from ddb2es_cli.template import apply_template, template_spec


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
    plan = plan or plan_for_run(es, engine, ddb, settings, tables, options)
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
        save_start(tables, options, plan.started, [i.name for i in plan.indices])
    apply_template(es, engine, template_spec(settings))
    if options.exports:
        result = export_flow(es, ddb, streams, settings, tables, options, plan, progress, started)
    elif options.strategy == "delete":
        result = delete_flow(es, ddb, settings, tables, options, plan, progress, started)
    else:
        result = blue_green_flow(
            es, ddb, streams, settings, tables, options, plan, progress, started
        )
    result.cleaned = cleaned
    reload_state_path(tables).unlink(missing_ok=True)
    return result


def plan_for_run(
    es: Any,
    engine: Engine,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
) -> ReloadPlan:
    """The plan a run executes, made once (each plan counts the tables with a scan): a fresh
    one, or on `--resume` the interrupted run's (its start time, so its generation names, and
    only its indices: a type that appeared since is reported, never swapped)."""
    if not options.reindex.resume:
        return plan_reload(es, engine, ddb, settings, tables, options)
    plan = plan_reload(es, engine, ddb, settings, tables, options, saved_start(tables, options))
    planned = saved_indices(tables)
    if planned is not None:
        plan.indices = [i for i in plan.indices if i.name in planned]
        plan.blocked = [i for i in plan.blocked if i.name in planned]
    return plan
