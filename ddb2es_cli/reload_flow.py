"""The two reload flows once the plan is accepted: delete (downtime) and blue/green (load a
new generation beside the old one, verify the counts, swap), plus the stream replay.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.ownership import create_owned_index, current, require_owned
from ddb2es_cli.reindex import (
    Progress,
    ReindexOptions,
    ReindexSummary,
    run_reindex,
    state_path_for,
)
from ddb2es_cli.reload_generations import (
    abandon,
    mark_rebuilds,
    prune_generations,
    settle_appeared,
    swap_aliases,
)
from ddb2es_cli.reload_plan import (
    ReloadOptions,
    ReloadPlan,
    ReloadSummary,
    VerificationFailed,
    scan_counts,
)
from ddb2es_cli.reload_resume import reload_state_path
from ddb2es_cli.source import describe_table
from ddb2es_cli.stream_options import StreamSummary

log = logging.getLogger("ddb2es.reload")


def delete_flow(
    es: Any,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    plan: ReloadPlan,
    progress: Progress | None,
    started: float,
) -> ReloadSummary:
    """Delete the owned indices, reload into the live names, verify: empty until refilled."""
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
    summary, counts = _load_and_count(es, ddb, settings, tables, options, reindex_options, progress)
    verify = verify_counts(es, dict(counts), options.verify_tolerance)
    return ReloadSummary(plan, summary, verify, [], deleted, 0, time.monotonic() - started)


def verify_counts(
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


def blue_green_flow(
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
    """Load a new generation beside each index, verify it, swap every alias in one call."""
    deployment = settings.deployment_name
    reindex_options = generation_load(options, plan, tables)
    # Once the handler has seen the markers, every change is written to both generations, so
    # the scan may start.
    mark_and_wait(es, plan, deployment, options, "then every change goes to both generations")
    # An interruption (Ctrl-C, a lost connection) keeps the generations AND their markers: the
    # stream handler keeps them current until `--resume` swaps them or a new reload abandons
    # them. What is known to be wrong (verification, a refused swap) is abandoned at once.
    summary, counts = _load_and_count(es, ddb, settings, tables, options, reindex_options, progress)
    planned = {index.name for index in plan.indices}
    appeared = {name: "" for name in counts if name not in planned}
    verify = verify_counts(
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
        settle_appeared(es, plan, appeared, deployment)
        swapped = swap_aliases(es, plan, deployment)
    except Ddb2esError:
        abandon(es, plan, deployment)
        reload_state_path(tables).unlink(missing_ok=True)  # nothing left to resume
        raise
    replayed = (
        replay_streams(es, ddb, streams, settings, tables, plan.started) if options.replay else 0
    )
    deleted = prune_generations(es, plan, options.keep, deployment)
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


def generation_load(
    options: ReloadOptions, plan: ReloadPlan, tables: list[TableSettings]
) -> ReindexOptions:
    """The load of a blue/green generation: into X + suffix, with bulk-load settings and
    tombstones kept `gc_deletes`, its state file named after the generation (for --resume)."""
    return replace(
        options.reindex,
        index_suffix=plan.generation,
        bulk_load_settings=True,
        extra_load_settings={"gc_deletes": options.gc_deletes},
        state_path=options.reindex.state_path
        or state_path_for(tables).with_name(f"reload{plan.generation}.json"),
    )


def mark_and_wait(
    es: Any, plan: ReloadPlan, deployment: str, options: ReloadOptions, then: str
) -> None:
    """Point X-rebuilding at each generation, then wait until the stream handler (which looks
    every REBUILD_CHECK_SECONDS) has surely seen the markers."""
    mark_rebuilds(es, plan, deployment)
    if options.notify and options.marker_wait > 0:
        options.notify(
            f"waiting {options.marker_wait:.0f} s for the stream handler to see the rebuild "
            f"marker ({then})"
        )
    time.sleep(options.marker_wait)


def replay_streams(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    since: datetime,
) -> int:
    """Apply what the tables' streams recorded since `since`, through the aliases."""
    summary = replay_since(es, ddb, streams, settings, tables, since)
    return sum(t.records for t in summary.tables.values()) if summary else 0


def replay_since(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    since: datetime,
) -> StreamSummary | None:
    """`replay_streams` with the run's counters and failures (None: no table has a stream)."""
    from ddb2es_cli.stream_runner import StreamOptions, run_stream

    with_streams = [t for t in tables if describe_table(ddb, t.name).stream_arn]
    if not with_streams:
        log.warning("no table has a stream: changes made during the rebuild are not replayed")
        return None
    start = (since - timedelta(seconds=5)).isoformat()
    state = DEFAULT_STATE_DIR / f"reload-replay-{since.strftime('%Y%m%dt%H%M%S%f')}.json"
    options = StreamOptions(start=start, until_caught_up=True, state_path=state, poll_interval=0.2)
    summary = run_stream(ddb, streams, es, settings, with_streams, options)
    state.unlink(missing_ok=True)
    return summary


def _load_and_count(
    es: Any,
    ddb: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: ReloadOptions,
    reindex_options: ReindexOptions,
    progress: Progress | None,
) -> tuple[ReindexSummary, Counter[str]]:
    """The load (in this process, or spread over workers by `options.loader`), then a fresh count
    of the tables per index for the verification."""
    load = options.loader or run_reindex
    summary = load(ddb, es, settings, tables, reindex_options, progress)
    counts, _invalid = scan_counts(ddb, settings, tables, options)
    return summary, counts
