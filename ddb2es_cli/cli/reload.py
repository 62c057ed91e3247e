"""`ddb2es reload` and `reload rollback`."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ddb2es_cli.cli.common import (
    Bars,
    app_of,
    confirm,
    emit,
    failures_option,
    output_options,
    print_lines,
    segments_option,
    tables_argument,
)
from ddb2es_cli.errors import ExitStatus


@click.command()
@tables_argument
@click.option(
    "--strategy",
    type=click.Choice(["blue-green", "delete"]),
    default="blue-green",
    show_default=True,
    help="blue-green: no downtime; delete: the weekend flow.",
)
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Previous generations kept (blue-green).",
)
@click.option("--adopt", multiple=True, help="Take over this existing unmanaged index.")
@segments_option
@click.option(
    "--replay",
    is_flag=True,
    help="blue-green without a running stream consumer: replay the streams after the swap.",
)
@click.option(
    "--verify-tolerance",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Documents an index may differ from a fresh count (tables taking writes).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted reload.")
@click.option("--yes", is_flag=True, help="Do it without asking (needed when not interactive).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@failures_option("ddb2es-failures.ndjson")
@output_options
@click.pass_context
def reload(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    strategy: str,
    keep: int,
    adopt: tuple[str, ...],
    segments: int | None,
    replay: bool,
    verify_tolerance: int,
    resume: bool,
    yes: bool,
    dry_run: bool,
    failures_path: Path,
    json_output: bool,
    quiet: bool,
) -> None:
    """Rebuild every index of the tables: blue-green (new generations, atomic alias swap) or
    delete (delete and reload; downtime). `reload rollback TABLE...` swaps the aliases back to
    the previous generation.

    \b
    Example:
      ddb2es --config ddb2es.toml reload --all --strategy blue-green --yes
      ddb2es reload orders-service --strategy delete --dry-run
      ddb2es reload rollback orders-service --yes
    """
    from ddb2es_cli.clients import make_dynamodb_client, make_search_client
    from ddb2es_cli.reindex import ReindexOptions, default_segments
    from ddb2es_cli.reload import ReloadOptions, plan_reload, rollback, run_reload

    app = app_of(ctx, json_output, quiet)
    is_rollback = bool(tables) and tables[0] == "rollback"
    selected = app.settings.select_tables(tables[1:] if is_rollback else tables, all_tables)
    ddb = make_dynamodb_client(app.settings.dynamodb)
    es, engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    segs = segments or default_segments()
    if is_rollback:
        if not (dry_run or yes or confirm("Swap the aliases back to the previous generation?")):
            raise click.UsageError("refusing to roll back without --yes (not interactive)")
        moves = rollback(es, ddb, app.settings, selected, segs, dry_run=dry_run)
        verb = "would move" if dry_run else "moved"
        lines = [f"{verb} {m['alias']}: {m['from']} -> {m['to']}" for m in moves]
        emit(app, {"dry_run": dry_run, "moves": moves}, print_lines(lines))
        return
    options = ReloadOptions(
        strategy=strategy,
        keep=keep,
        adopt=adopt,
        dry_run=dry_run,
        replay=replay,
        verify_tolerance=verify_tolerance,
        reindex=ReindexOptions(segments=segs, failures_path=failures_path, resume=resume),
    )
    plan = plan_reload(es, engine, ddb, app.settings, selected, options)
    if dry_run:
        emit(app, plan.as_dict(), print_lines(plan.lines()))
        return
    if not app.json_output:
        for line in plan.lines():
            click.echo(line, err=True)
    if not (yes or confirm(f"Reload {len(plan.indices)} indices ({strategy})?")):
        raise click.UsageError("refusing to reload without --yes (not interactive)")
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    streams = make_dynamodb_client(app.settings.dynamodb, "dynamodbstreams")
    try:
        summary = run_reload(
            es,
            engine,
            ddb,
            streams,
            app.settings,
            selected,
            options,
            bars,
            None if resume else plan,
        )
    except KeyboardInterrupt:
        bars.close()
        click.echo("Error: interrupted; rerun with --resume", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
    bars.close()
    data = summary.as_dict()

    def render(console: Console) -> None:
        table = Table("index", "expected", "found", "verified", title=f"reload ({strategy})")
        for name, v in data["verify"].items():
            table.add_row(
                name,
                str(v["expected"]),
                str(v["found"]),
                "[green]ok[/]" if v["ok"] else "[red]NO[/]",
            )
        console.print(table)
        if summary.swapped:
            console.print(f"aliases swapped: {', '.join(summary.swapped)}")
        if summary.deleted:
            console.print(f"deleted: {', '.join(summary.deleted)}")
        console.print(f"stream records replayed: {summary.replayed}; {data['duration_s']} s")

    emit(app, data, render)
    if summary.reindex and summary.reindex.failures:
        ctx.exit(ExitStatus.PARTIAL)
    if not summary.verified:
        ctx.exit(ExitStatus.ERROR)
