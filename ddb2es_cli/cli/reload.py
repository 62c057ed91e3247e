"""`ddb2es reload` and `ddb2es reload rollback`.

`reload` is a group whose default command is the reload itself, so `reload TABLE...` keeps
working and `rollback` is a real subcommand with its own options and help.
"""

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
    connect,
    dynamodb_client,
    emit,
    failures_option,
    load_segments_option,
    make_clients,
    max_rcu_option,
    output_options,
    print_lines,
    segments_option,
    tables_argument,
)
from ddb2es_cli.cli.export import max_read_mbps_option, s3_endpoint_option
from ddb2es_cli.cli.reindex import page_size_option
from ddb2es_cli.cli.scale import lease_option, state_options, state_table_option
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console


class _ReloadGroup(click.Group):
    """`reload rollback ...` runs the subcommand; anything else is `reload run ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _DefaultCommand(click.Command):
    """`reload run` is what `reload` runs: its usage line says `ddb2es reload`."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent else ctx.command_path
        formatter.write_usage(path, " ".join(self.collect_usage_pieces(ctx)))


break_lock_option = click.option(
    "--break-lock",
    is_flag=True,
    help="Remove the run lock of these tables first (after confirmation): only when its "
    "holder is known to be dead.",
)


def _confirm_break(yes: bool, dry_run: bool = False) -> None:
    if dry_run or yes or confirm("Break the run lock? Only if its holder is dead."):
        return
    raise click.UsageError("refusing to break the lock without --yes (not interactive)")


@click.group(cls=_ReloadGroup)
def reload() -> None:
    """Rebuild every index of the tables (`reload TABLE...`, see `reload run --help`), or
    swap the aliases back (`reload rollback TABLE...`).

    \b
    Example:
      ddb2es --config ddb2es.toml reload --all --strategy blue-green --yes
      ddb2es reload rollback orders-service --yes
    """


@reload.command("run", cls=_DefaultCommand, hidden=True)
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
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Previous generations kept (blue-green; at least 1, the rollback target).",
)
@click.option(
    "--adopt",
    multiple=True,
    help="Take over this existing index or alias: the run marks it as this deployment's.",
)
@load_segments_option
@max_rcu_option
@page_size_option
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
@click.option(
    "--from-export",
    "from_exports",
    metavar="URL",
    multiple=True,
    help="Load from full DynamoDB exports (one per table; s3://... or a local copy) instead "
    "of scanning, then replay each table's stream from its export time (blue-green only).",
)
@max_read_mbps_option
@s3_endpoint_option
@click.option("--resume", is_flag=True, help="Continue an interrupted reload.")
@break_lock_option
@click.option("--yes", is_flag=True, help="Do it without asking (needed when not interactive).")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@failures_option("ddb2es-failures.ndjson")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Spread the load over worker processes of a run (more may --join its id).",
)
@state_table_option
@lease_option
@output_options
@click.pass_context
def run(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    strategy: str,
    keep: int,
    adopt: tuple[str, ...],
    segments: int | None,
    max_rcu: float | None,
    page_size: int,
    replay: bool,
    verify_tolerance: int,
    from_exports: tuple[str, ...],
    max_read_mbps: float | None,
    s3_endpoint: str | None,
    resume: bool,
    break_lock: bool,
    yes: bool,
    dry_run: bool,
    failures_path: Path,
    processes: int | None,
    state_table: str | None,
    lease_seconds: float | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Rebuild every index of the tables: blue-green (new generations, atomic alias swap) or
    delete (delete and reload; downtime). Only indices this deployment owns are touched (or
    those named with --adopt). `reload rollback TABLE...` swaps the aliases back.

    \b
    Example:
      ddb2es --config ddb2es.toml reload --all --strategy blue-green --yes
      ddb2es reload orders-service --strategy delete --dry-run
      ddb2es reload rollback orders-service --yes
      ddb2es reload orders-service --state-table ddb2es-state --processes 4 --yes
    """
    from ddb2es_cli.reindex import ReindexOptions
    from ddb2es_cli.reload import ReloadOptions, plan_for_run, run_reload
    from ddb2es_cli.segments import default_load_segments

    app = app_of(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    ddb, es, engine = connect(app)
    segs = segments or default_load_segments()
    options = ReloadOptions(
        strategy=strategy,
        keep=keep,
        adopt=adopt,
        replay=replay,
        verify_tolerance=verify_tolerance,
        break_lock=break_lock,
        reindex=ReindexOptions(
            segments=segs,
            failures_path=failures_path,
            resume=resume,
            max_rcu=max_rcu,
            page_limit=page_size or None,
        ),
        notify=None if app.quiet or app.json_output else lambda line: click.echo(line, err=True),
    )
    if from_exports:
        from ddb2es_cli.cli.export import export_sources_for

        options.exports = export_sources_for(
            app, selected, from_exports, options.reindex, s3_endpoint, max_read_mbps
        )
        if s3_endpoint:  # spawned workers get a copy of the settings
            app.override(s3_endpoint=s3_endpoint)
    elif max_read_mbps is not None:
        raise click.UsageError("--max-read-mbps applies to --from-export only")
    if processes and not dry_run:
        if resume:
            raise click.UsageError("--resume continues single-process reloads only")
        from ddb2es_cli.scale import scaled_loader
        from ddb2es_cli.state import new_run_id

        state = state_options(app, state_table, lease_seconds)
        options.run_token = new_run_id()
        units = None
        if options.exports:  # a run of workers over one export: a unit per data file
            if len(options.exports) != 1:
                raise click.UsageError("--processes with --from-export takes one TABLE")
            (source,) = options.exports.values()
            options.reindex.from_export = source.export.url
            options.reindex.max_read_mbps = max_read_mbps
            units = source.segments
        options.loader = scaled_loader(
            state.open(ddb), state, processes, options.run_token, options.notify, units
        )
    plan = plan_for_run(es, engine, ddb, app.settings, selected, options)
    if dry_run and options.exports:  # nothing is scanned: no read capacity to estimate
        emit(app, plan.as_dict(), print_lines(plan.lines()))
        return
    if dry_run:
        from ddb2es_cli.estimate import TableSize, estimate
        from ddb2es_cli.source import describe_table

        infos = [describe_table(ddb, t.name) for t in selected]
        sizes = [TableSize(i.name, i.item_count, i.size_bytes) for i in infos]
        cost = estimate(sizes, segs, page_size or None, max_rcu)
        emit(
            app,
            {**plan.as_dict(), "estimate": cost.as_dict()},
            print_lines(plan.lines() + cost.lines()),
        )
        return
    if not app.json_output:
        for line in plan.lines():
            click.echo(line, err=True)
    if not (yes or confirm(f"Reload {len(plan.indices)} indices ({strategy})?")):
        raise click.UsageError("refusing to reload without --yes (not interactive)")
    if break_lock:
        _confirm_break(yes)
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    streams = dynamodb_client(app, "dynamodbstreams")
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
            plan,
        )
    except KeyboardInterrupt:
        bars.close()
        kept = (
            "the new generation stays (loaded from the export until verified, then kept "
            "current by the stream handler)"
            if options.exports
            else "the new generation and its rebuild marker stay (the stream handler keeps it "
            "current)"
        )
        click.echo(
            f"Error: interrupted; {kept}: rerun with --resume, or a new reload abandons it",
            err=True,
        )
        ctx.exit(ExitStatus.INTERRUPTED)
    finally:
        bars.close()  # before any error is printed, so it gets a line of its own
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
        for name, what in summary.appeared.items():
            console.print(f"appeared during the load: {name}: {what}")
        if summary.cleaned:
            console.print(f"cleaned before the load: {', '.join(summary.cleaned)}")
        console.print(f"stream records replayed: {summary.replayed}; {data['duration_s']} s")

    emit(app, data, render)
    if summary.reindex and summary.reindex.failures:
        ctx.exit(ExitStatus.PARTIAL)
    if not summary.verified:
        ctx.exit(ExitStatus.ERROR)


@reload.command("rollback")
@tables_argument
@segments_option
@break_lock_option
@click.option("--yes", is_flag=True, help="Do it without asking (needed when not interactive).")
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@output_options
@click.pass_context
def rollback_command(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    segments: int | None,
    break_lock: bool,
    yes: bool,
    dry_run: bool,
    json_output: bool,
    quiet: bool,
) -> None:
    """Point each alias of the tables back at the generation its last swap replaced (recorded
    at swap time), then bring that generation current: a replay of the tables' streams since
    the swap, or a reindex when a table has no stream.

    \b
    Example:
      ddb2es reload rollback orders-service --dry-run
      ddb2es --config ddb2es.toml reload rollback --all --yes
    """
    from ddb2es_cli.reload import plan_rollback, rollback
    from ddb2es_cli.segments import default_segments

    app = app_of(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    ddb, es = make_clients(app)
    segs = segments or default_segments()
    if not dry_run:
        preview = plan_rollback(es, ddb, app.settings, selected, segs)
        if not app.json_output:
            for line in preview.lines():
                click.echo(line, err=True)
        if not (yes or confirm("Swap the aliases back to the previous generation?")):
            raise click.UsageError("refusing to roll back without --yes (not interactive)")
        if break_lock:
            _confirm_break(yes)
    streams = dynamodb_client(app, "dynamodbstreams")
    result = rollback(
        es, ddb, streams, app.settings, selected, segs, dry_run=dry_run, break_lock=break_lock
    )
    data: dict[str, Any] = result.as_dict()
    emit(app, data, print_lines(result.lines()))
