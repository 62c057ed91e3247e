"""`reload --from-export`: blue/green generations loaded from full DynamoDB exports (no read
capacity), brought current by replaying each table's stream from its export's time.

An export is the table as it was at exportTime; what changed since is only in the stream, for
24 hours. The order of the steps is what keeps deletes deleted:
1. the generations are created WITHOUT rebuild markers, so nothing but the load writes them,
   and their counts must equal the export's exactly (no tolerance needed, however busy the table);
2. then the markers go up (the stream handler writes both generations from then on), and the
   stream is replayed from exportTime - overlap, AFTER the load: a delete since the export removes
   the loaded document (a tombstone written before the load could be gone by the time the loaded
   copy arrives, and the copy would come back). Versions make the replay and the handler's own
   writes commute: every record newer than the export outranks its documents.
A table without a stream, or whose stream is younger than its export, or an export older than the
stream keeps records, is refused: the window could not be closed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.export.reader import export_tasks
from ddb2es_cli.export.rebuild import several_exports
from ddb2es_cli.ownership import create_owned_index, require_owned
from ddb2es_cli.reindex import (
    Progress,
    ReindexOptions,
    ReindexSummary,
    run_reindex,
)
from ddb2es_cli.reload_flow import generation_load, mark_and_wait, replay_since, verify_counts
from ddb2es_cli.reload_generations import abandon, prune_generations, swap_aliases
from ddb2es_cli.reload_plan import (
    ReloadOptions,
    ReloadPlan,
    ReloadSummary,
    VerificationFailed,
    tally_index_names,
)
from ddb2es_cli.reload_resume import reload_state_path, save_verified, saved_verified
from ddb2es_cli.source import describe_table
from ddb2es_cli.stream_records import view_refusal

if TYPE_CHECKING:
    from ddb2es_cli.export.rebuild import ExportSource

log = logging.getLogger("ddb2es.reload")

# DynamoDB Streams keep a record 24 hours. The replay must start well before the records of the
# export's time go: an hour of margin for the replay itself to reach them.
STREAM_KEEPS_S = 24 * 3600
REPLAY_MARGIN_S = 3600


def replay_from(source: ExportSource, settings: Settings) -> datetime:
    """Where the replay starts: the export's version rule (exportTime - overlap), so every
    record that outranks the export's documents is applied."""
    ms = source.export.export_time_ms - settings.version_overlap_ms
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def replay_deadline(source: ExportSource, settings: Settings) -> datetime:
    """The replay of this export's changes must have started by then (the stream trims)."""
    start = replay_from(source, settings).timestamp()
    return datetime.fromtimestamp(start + STREAM_KEEPS_S - REPLAY_MARGIN_S, timezone.utc)


def check_replayable(
    ddb: Any, settings: Settings, exports: dict[str, ExportSource], now: float
) -> None:
    """Refuse (one line, exit 2) any table whose changes since its export cannot be replayed."""
    for table, source in sorted(exports.items()):
        taken = _iso(source.export.export_time_ms / 1000)
        info = describe_table(ddb, table)
        if not info.stream_arn:
            raise ConfigError(
                f"--from-export: table {table!r} has no stream, so the changes since its export "
                f"({taken}) cannot reach the new generation: reload it from the table, or "
                "`reindex --from-export` and `apply-export` incremental exports"
            )
        refusal = view_refusal(info.stream_view, table)
        if refusal:
            raise ConfigError(f"--from-export: {refusal}")
        enabled = _label_time(info.stream_label)
        # Changes from before the stream are in the export when the export came after it.
        if enabled is not None and enabled > source.export.export_time_ms / 1000:
            raise ConfigError(
                f"--from-export: the stream of {table!r} was enabled at {_iso(enabled)}, after "
                f"its export ({taken}): the changes in between are in no stream; take a new "
                f"export (`ddb2es export start {table} ...`)"
            )
        deadline = replay_deadline(source, settings).timestamp()
        if now > deadline:
            raise ConfigError(
                f"--from-export: the export of {table!r} ({taken}) is too old: its stream keeps "
                f"24 h, and the replay of the changes since had to start by {_iso(deadline)}; "
                f"take a new export (`ddb2es export start {table} ...`)"
            )


def export_type_counts(
    ddb: Any, tables: list[TableSettings], exports: dict[str, ExportSource], workers: int
) -> tuple[Counter[str], int]:
    """Items per index name, read from the exports (the counts never change: they are what the
    loaded generations must hold). Returns (counts, items with an invalid index name)."""
    counts: Counter[str] = Counter()
    tasks = [task for t in tables for task in export_tasks(exports[t.name].export, t.name)]
    pages = several_exports(exports, workers)(tasks)
    try:
        invalid, _rcu = tally_index_names(ddb, tables, pages, counts)
    finally:
        pages.close()
    return counts, invalid


def export_loader(exports: dict[str, ExportSource]) -> Callable[..., ReindexSummary]:
    """The load of one process: one run over every table's export (each table as many units as
    the largest export has data files; a unit past a table's files reads nothing), with the
    generation's state file, so `--resume` continues the files where they stopped."""

    def load(
        ddb: Any,
        es: Any,
        settings: Settings,
        tables: list[TableSettings],
        options: ReindexOptions,
        progress: Progress | None = None,
    ) -> ReindexSummary:
        units = max(exports[t.name].segments for t in tables)
        run_options = replace(options, segments=units)
        pages_from = several_exports(exports, options.segments)
        return run_reindex(ddb, es, settings, tables, run_options, progress, pages_from)

    return load


def export_flow(
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
    """Load unmarked generations, verify them against the exports, mark, replay, swap."""
    deployment = settings.deployment_name
    exports = options.exports
    expected = {i.name: i.items for i in plan.indices if i.new_index is not None}
    reindex_options = generation_load(options, plan, tables)
    summary: ReindexSummary | None = None
    verify = saved_verified(tables) if options.reindex.resume else None
    if verify is None:  # else: an interrupted run got past the verification
        for index in plan.indices:
            if index.new_index is not None:
                create_owned_index(es, index.new_index, deployment)
                require_owned(es, [index.new_index], deployment, f"loading {index.new_index}")
        # An interruption keeps the unmarked generation for `--resume` (nothing else writes it).
        load = options.loader or export_loader(exports)
        summary = load(ddb, es, settings, tables, reindex_options, progress)
        verify = verify_counts(es, expected, options.verify_tolerance, plan.generation)
    try:
        if not all(v["ok"] for v in verify.values()):
            raise VerificationFailed(
                f"verification failed: the new generation {plan.generation} does not hold "
                f"what the export holds; it was deleted, nothing was swapped: {verify}"
            )
        save_verified(tables, verify)
        # The load took its time: the stream must still hold the export's changes.
        check_replayable(ddb, settings, exports, time.time())
        mark_and_wait(es, plan, deployment, options, "then the streams replay from the export")
        replayed = _replay(es, ddb, streams, settings, tables, exports)
        swapped = swap_aliases(es, plan, deployment)
    except Ddb2esError:
        abandon(es, plan, deployment)
        reload_state_path(tables).unlink(missing_ok=True)  # nothing left to resume
        raise
    if options.replay:  # no stream consumer runs: what changed during the replay and swap
        replayed += _replay(es, ddb, streams, settings, tables, exports, since=plan.started)
    deleted = prune_generations(es, plan, options.keep, deployment)
    return ReloadSummary(
        plan, summary, verify, swapped, deleted, replayed, time.monotonic() - started
    )


def _replay(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    exports: dict[str, ExportSource],
    since: datetime | None = None,
) -> int:
    """The tables' streams from the earliest export's replay start (or `since`) until caught
    up, in one run. Records older than a table's own export only meet newer versions (409,
    harmless). A record that cannot be applied fails the reload: the generation would miss it."""
    start = since or min(replay_from(exports[t.name], settings) for t in tables)
    result = replay_since(es, ddb, streams, settings, tables, start)
    if result is None:
        return 0
    if result.failures:
        raise VerificationFailed(
            f"{result.failures} stream records since the export could not be applied (see "
            f"{result.failures_path}); the new generation would miss them: it was deleted, "
            "nothing was swapped"
        )
    return sum(t.records for t in result.tables.values())


def export_lines(exports: dict[str, ExportSource], settings: Settings) -> list[str]:
    """What the plan says about its sources."""
    return [
        f"Reads export {s.export.url} of {table} ({len(s.export.files)} data files, "
        f"{s.export.item_count} items, taken {_iso(s.export.export_time_ms / 1000)}; no read "
        f"capacity), then replays its stream from {_iso(replay_from(s, settings).timestamp())} "
        f"(must start by {_iso(replay_deadline(s, settings).timestamp())})"
        for table, s in sorted(exports.items())
    ]


def _label_time(label: str | None) -> float | None:
    """A stream label is the stream's creation time (`2026-11-27T23:10:05.123`, UTC)."""
    if not label:
        return None
    try:
        moment = datetime.fromisoformat(label.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
