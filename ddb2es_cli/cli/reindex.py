"""`ddb2es reindex`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ddb2es_cli.cli.common import (
    Bars,
    Table,
    app_of,
    confirm,
    dynamodb_client,
    emit,
    failures_option,
    load_segments_option,
    make_clients,
    max_rcu_option,
    output_options,
    print_failures,
    print_lines,
    tables_argument,
)
from ddb2es_cli.cli.export import max_read_mbps_option, s3_endpoint_option
from ddb2es_cli.cli.scale import lease_option, run_scaled, state_table_option
from ddb2es_cli.config import DEFAULT_PAGE_LIMIT
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

page_size_option = click.option(
    "--page-size",
    type=click.IntRange(min=0),
    default=DEFAULT_PAGE_LIMIT,
    show_default=True,
    help="Items per Scan page; memory grows with it (0: DynamoDB's 1 MB pages).",
)


@click.command()
@tables_argument
@load_segments_option
@click.option(
    "--retry-for",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    help="Seconds a busy or unreachable cluster is retried before the run stops "
    "(state saved, exit 1: rerun with --resume).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Documents per bulk request.",
)
@click.option(
    "--max-chunk-bytes",
    type=click.IntRange(min=1024),
    default=10 * 1024 * 1024,
    show_default=True,
    help="Bytes per bulk request (managed domains cap it).",
)
@max_rcu_option
@click.option(
    "--bulk-load-settings/--no-bulk-load-settings",
    default=None,
    help="refresh_interval=-1 and 0 replicas during the load, restored after "
    "(default: only for indices this run creates).",
)
@failures_option("ddb2es-failures.ndjson")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: .ddb2es/reindex-<hash>.json, <hash> = 12 hex digits of the "
    "SHA-256 of the sorted table names, comma-joined).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoints.")
@click.option(
    "--retry-failures",
    "retry_failures_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Re-read the keys of a failures file (consistent reads) and write them again; "
    "the file keeps only what still fails. Takes no TABLE.",
)
@page_size_option
@click.option(
    "--from-export",
    "from_export",
    metavar="URL",
    default=None,
    help="Read a full DynamoDB export (s3://bucket/prefix/AWSDynamoDB/<ExportId>/ or a local "
    "copy) instead of scanning: no read capacity. One TABLE; --segments = reader threads.",
)
@max_read_mbps_option
@s3_endpoint_option
@click.option("--dry-run", is_flag=True, help="Print the plan; scan and write nothing.")
@click.option(
    "--break-lock",
    is_flag=True,
    help="Remove the run lock of these tables first (asks; --yes when not interactive).",
)
@click.option("--yes", is_flag=True, help="Confirm --break-lock without asking.")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of this run on this machine (one progress display and summary).",
)
@click.option(
    "--join",
    "join_run",
    default=None,
    metavar="RUN_ID",
    help="Become a worker of an existing run (any machine that reaches the state). Takes no TABLE.",
)
@state_table_option
@lease_option
@output_options
@click.pass_context
def reindex(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    segments: int | None,
    retry_for: float,
    chunk_size: int,
    max_chunk_bytes: int,
    max_rcu: float | None,
    bulk_load_settings: bool | None,
    failures_path: Path,
    state_file: Path | None,
    resume: bool,
    retry_failures_file: Path | None,
    page_size: int | None,
    from_export: str | None,
    max_read_mbps: float | None,
    s3_endpoint: str | None,
    dry_run: bool,
    break_lock: bool,
    yes: bool,
    processes: int | None,
    join_run: str | None,
    state_table: str | None,
    lease_seconds: float | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Rebuild the documents of tables into the live indices (upsert; deletes nothing).

    Exit 4 when some documents failed (see the failures file), 130 when interrupted
    (rerun with --resume).

    \b
    Example:
      ddb2es reindex orders-service --segments 16 --max-rcu 500
      ddb2es --config ddb2es.toml reindex --all --resume
      ddb2es reindex orders-service --state-table ddb2es-state --processes 4
      ddb2es reindex --state-table ddb2es-state --join r20261127t205800-1a2b3c
    """
    from ddb2es_cli.reindex import ReindexOptions, plan_reindex, run_reindex
    from ddb2es_cli.segments import default_load_segments
    from ddb2es_cli.sink import BulkOptions

    app = app_of(ctx, json_output, quiet)
    if retry_failures_file is not None:
        if tables or all_tables:
            raise click.UsageError("--retry-failures takes no TABLE and no --all")
        _retry_failures(ctx, app, retry_failures_file, chunk_size, retry_for)
        return
    scaled = bool(processes or join_run or state_table or app.settings.state_table)
    if join_run and (tables or all_tables):
        raise click.UsageError("--join takes no TABLE and no --all: the run names its tables")
    if scaled and (resume or state_file):
        raise click.UsageError(
            "--resume and --state-file belong to single-process runs; a run of workers "
            "continues with --join RUN_ID"
        )
    selected = [] if join_run else app.settings.select_tables(tables, all_tables)
    options = ReindexOptions(
        segments=segments or default_load_segments(),
        bulk=BulkOptions(
            chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, retry_for=retry_for
        ),
        max_rcu=max_rcu,
        bulk_load_settings=bulk_load_settings,
        failures_path=failures_path,
        state_path=state_file,
        resume=resume,
        page_limit=page_size or None,
    )
    source = None
    if from_export is not None:
        from ddb2es_cli.cli.export import export_source_for

        source = export_source_for(app, selected, from_export, options, s3_endpoint, max_read_mbps)
        if scaled:  # a run of workers: the run record names the export, each worker reads it
            options.from_export, options.max_read_mbps = from_export, max_read_mbps
    elif join_run:
        options.max_read_mbps = max_read_mbps  # when the run reads an export
    elif max_read_mbps is not None:
        raise click.UsageError("--max-read-mbps applies to --from-export only")
    if s3_endpoint:  # workers of a run over an export (spawned ones get a copy of the settings)
        app.override(s3_endpoint=s3_endpoint)
    if dry_run:
        from ddb2es_cli.estimate import TableSize, estimate

        plans = plan_reindex(dynamodb_client(app), selected)
        sizes = [TableSize(p.info.name, p.info.item_count, p.info.size_bytes) for p in plans]
        cost = estimate(sizes, options.segments, options.page_limit, max_rcu)
        plan_data = {
            "dry_run": True,
            "tables": [p.as_dict(options.segments) for p in plans],
            "estimate": cost.as_dict(),
        }

        def render_plan(console: Console) -> None:
            for p in plans:
                d = p.as_dict(options.segments)
                if source is not None:
                    console.print(
                        f"Would read export {source.export.url} "
                        f"({len(source.export.files)} data files, "
                        f"{source.export.item_count} items) instead of scanning:"
                    )
                console.print(
                    f"Would scan {d['table']} (keys {d['hash_key']}"
                    f"{', ' + d['range_key'] if d['range_key'] else ''}; "
                    f"~{d['estimated_items']} items) in {d['segments']} segments "
                    f"into indices named by {d['type_attribute']!r} with prefix "
                    f"{d['index_prefix']!r} (missing type: {d['default_index']})"
                )
            print_lines(cost.lines())(console)

        emit(app, plan_data, render_plan)
        return
    from ddb2es_cli.ownership import run_lock

    if break_lock and not (yes or confirm("Break the run lock? Only if its holder is dead.")):
        raise click.UsageError("refusing to break the lock without --yes (not interactive)")
    extra: dict[str, Any] = {}
    if scaled:
        if break_lock:
            from ddb2es_cli.ownership import break_lock as remove_locks

            remove_locks(
                make_clients(app)[1], app.settings.deployment_name, [t.name for t in selected]
            )
        summary, extra = run_scaled(
            ctx,
            app,
            selected,
            options,
            processes=processes,
            join=join_run,
            state_table=state_table,
            lease_seconds=lease_seconds,
            segments=options.segments if source is not None else segments,
        )
        _render_summary(ctx, app, summary, extra, failures_path)
        return
    ddb, es = make_clients(app)
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    names = [t.name for t in selected]
    try:
        # One run of a table at a time, on any machine: the lock lives in the cluster.
        with run_lock(es, app.settings.deployment_name, names, "reindex", force=break_lock):
            pages_from = source.pages_from if source is not None else None
            summary = run_reindex(ddb, es, app.settings, selected, options, bars, pages_from)
    except KeyboardInterrupt:
        bars.close()
        click.echo("Error: interrupted; progress is saved: rerun with --resume", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
    finally:
        bars.close()  # before any error is printed, so it gets a line of its own
    if source is not None:
        from datetime import datetime, timezone

        since = datetime.fromtimestamp(source.export.export_time_ms / 1000, timezone.utc)
        # Deletes that reached the index after exportTime and before this load are undone by
        # it (their tombstones are gone): say how to close that window.
        click.echo(
            f"Note: items deleted after the export time ({since:%Y-%m-%dT%H:%M:%SZ}) may be back "
            "in the index: apply an incremental export from then to now (`ddb2es export start "
            "--incremental`, `ddb2es apply-export`) or run `ddb2es drift --repair`",
            err=True,
        )
    _render_summary(ctx, app, summary, extra, failures_path)


def _render_summary(
    ctx: click.Context, app: Any, summary: Any, extra: dict[str, Any], failures_path: Path
) -> None:
    data: dict[str, Any] = {**summary.as_dict(), **extra}

    def render(console: Console) -> None:
        table = Table(
            "table",
            "scanned",
            "indexed",
            "conflicts",
            "failed",
            "RCU",
            "seconds",
            "items/s",
            title="reindex",
        )
        for t in data["tables"]:
            table.add_row(
                t["table"],
                str(t["scanned"]),
                str(t["indexed"]),
                str(t["conflicts"]),
                str(t["failed"]),
                str(t["rcu"]),
                str(t["duration_s"]),
                str(t["items_per_s"]),
            )
        console.print(table)
        per_index = Table("index", "indexed", "conflicts", "failed")
        for name, s in data["indices"].items():
            per_index.add_row(name, str(s["indexed"]), str(s["conflicts"]), str(s["failed"]))
        if data["indices"]:
            console.print(per_index)
        if extra.get("run_id"):
            run = extra.get("run") or {}
            console.print(
                f"run {extra['run_id']}: {run.get('status', '?')}"
                + (f"; takeovers: {run['takeovers']}" if run.get("takeovers") else ""),
                markup=False,
            )
        print_failures(
            console, summary.failures, "documents failed", summary.failures_path or failures_path
        )

    emit(app, data, render)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)


def _retry_failures(
    ctx: click.Context, app: Any, path: Path, chunk_size: int, retry_for: float
) -> None:
    from ddb2es_cli.retry_failures import retry_failures
    from ddb2es_cli.sink import BulkOptions

    ddb, es = make_clients(app)
    summary = retry_failures(
        ddb, es, app.settings, path, BulkOptions(chunk_size=chunk_size, retry_for=retry_for)
    )
    data = summary.as_dict()

    def render(console: Console) -> None:
        console.print(
            f"{data['retried']} retried: {data['written']} written, {data['conflicts']} "
            f"already newer, {data['gone']} deleted meanwhile, "
            f"{data['still_failing']} still failing"
        )
        print_failures(console, len(summary.still_failing), "documents still fail", path)

    emit(app, data, render)
    if summary.still_failing:
        ctx.exit(ExitStatus.PARTIAL)
