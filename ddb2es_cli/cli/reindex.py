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
    emit,
    failures_option,
    make_clients,
    max_rcu_option,
    output_options,
    print_failures,
    segments_option,
    tables_argument,
)
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
@segments_option
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
@click.option("--dry-run", is_flag=True, help="Print the plan; scan and write nothing.")
@click.option(
    "--break-lock",
    is_flag=True,
    help="Remove the run lock of these tables first (asks; --yes when not interactive).",
)
@click.option("--yes", is_flag=True, help="Confirm --break-lock without asking.")
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
    dry_run: bool,
    break_lock: bool,
    yes: bool,
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
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.reindex import (
        ReindexOptions,
        default_segments,
        plan_reindex,
        run_reindex,
    )
    from ddb2es_cli.sink import BulkOptions

    app = app_of(ctx, json_output, quiet)
    if retry_failures_file is not None:
        if tables or all_tables:
            raise click.UsageError("--retry-failures takes no TABLE and no --all")
        _retry_failures(ctx, app, retry_failures_file, chunk_size, retry_for)
        return
    selected = app.settings.select_tables(tables, all_tables)
    options = ReindexOptions(
        segments=segments or default_segments(),
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
    if dry_run:
        plans = plan_reindex(make_dynamodb_client(app.settings.dynamodb), selected)
        plan_data = {"dry_run": True, "tables": [p.as_dict(options.segments) for p in plans]}

        def render_plan(console: Console) -> None:
            for p in plans:
                d = p.as_dict(options.segments)
                console.print(
                    f"Would scan {d['table']} (keys {d['hash_key']}"
                    f"{', ' + d['range_key'] if d['range_key'] else ''}; "
                    f"~{d['estimated_items']} items) in {d['segments']} segments "
                    f"into indices named by {d['type_attribute']!r} with prefix "
                    f"{d['index_prefix']!r} (missing type: {d['default_index']})"
                )

        emit(app, plan_data, render_plan)
        return
    from ddb2es_cli.ownership import run_lock

    if break_lock and not (yes or confirm("Break the run lock? Only if its holder is dead.")):
        raise click.UsageError("refusing to break the lock without --yes (not interactive)")
    ddb, es = make_clients(app)
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    names = [t.name for t in selected]
    try:
        # One run of a table at a time, on any machine: the lock lives in the cluster.
        with run_lock(es, app.settings.deployment_name, names, "reindex", force=break_lock):
            summary = run_reindex(ddb, es, app.settings, selected, options, bars)
    except KeyboardInterrupt:
        bars.close()
        click.echo("Error: interrupted; progress is saved: rerun with --resume", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
    finally:
        bars.close()  # before any error is printed, so it gets a line of its own
    data: dict[str, Any] = summary.as_dict()

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
        console.print(per_index)
        print_failures(console, summary.failures, "documents failed", failures_path)

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
