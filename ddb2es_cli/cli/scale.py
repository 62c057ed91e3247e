"""Runs of many workers: `reindex --processes/--join`, `state init`, `status`."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ddb2es_cli.cli.common import (
    AppContext,
    Bars,
    Table,
    app_of,
    emit,
    make_clients,
    output_options,
)
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_STATE_TABLE = "ddb2es-state"

state_table_option = click.option(
    "--state-table",
    default=None,
    help="DynamoDB table that coordinates runs of many workers ([state] table; "
    "default: the local files in .ddb2es/, one machine only).",
)
lease_option = click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Seconds a silent worker keeps its units before another takes them "
    "([state] lease_seconds; default 30).",
)


def state_options(app: AppContext, table: str | None, lease: float | None) -> Any:
    from ddb2es_cli.scale import StateOptions
    from ddb2es_cli.state import DEFAULT_LEASE_SECONDS

    return StateOptions(
        table=table or app.settings.state_table,
        lease_seconds=lease or app.settings.state_lease_seconds or DEFAULT_LEASE_SECONDS,
    )


def run_scaled(
    ctx: click.Context,
    app: AppContext,
    selected: list[Any],
    options: Any,
    *,
    processes: int | None,
    join: str | None,
    state_table: str | None,
    lease_seconds: float | None,
    segments: int | None,
) -> tuple[Any, dict[str, Any]]:
    """Start a run (N local processes, or this process as its one worker) or join one.
    Returns (summary, extra fields for the output)."""
    from ddb2es_cli.ownership import RunLock
    from ddb2es_cli.scale import (
        check_finished,
        create_run,
        run_summary,
        supervise,
        tables_of,
        work,
    )

    state = state_options(app, state_table, lease_seconds)
    ddb, es = make_clients(app)
    backend = state.open(ddb)
    bars = Bars(enabled=not app.quiet and sys.stderr.isatty())
    try:
        if join:
            result = work(ddb, es, app.settings, backend, join, options, bars)
            extra = {
                "run_id": join,
                "worker_id": result.worker_id,
                "finished_run": result.finished_run,
                "run": result.run_summary,
            }
            return result.summary, extra
        run = create_run(backend, ddb, selected, options, segments)
        say(
            app,
            f"run {run.run_id} ({backend.describe()}); more workers may join with "
            f"`ddb2es reindex --join {run.run_id}`",
        )
        if (processes or 1) == 1:
            result = work(ddb, es, app.settings, backend, run.run_id, options, bars)
            return run_summary(result.run_summary or {}), {
                "run_id": run.run_id,
                "workers": 1,
                "run": result.run_summary,
            }
        names = sorted(t.name for t in tables_of(run))
        lock = RunLock(es, app.settings.deployment_name, names, run.command, token=run.run_id)
        lock.acquire()  # another run of these tables is refused here, before any worker starts
        try:
            done = supervise(ddb, app.settings, backend, state, run, options, processes or 1, bars)
        except BaseException:
            lock.release()
            raise
        lock.stop()
        if done.status["status"] != "done":
            lock.release()
        check_finished(done, processes or 1)
        return run_summary(done.status), {
            "run_id": run.run_id,
            "workers": processes,
            "run": done.status,
        }
    except KeyboardInterrupt:
        bars.close()
        click.echo("Error: interrupted; the run is kept: rerun with --join RUN_ID", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
        raise
    finally:
        bars.close()
        backend.close()


def say(app: AppContext, line: str) -> None:
    if not app.quiet:
        click.echo(line, err=True)


# --- state init ----------------------------------------------------------------------------------


@click.group()
def state() -> None:
    """The DynamoDB table that coordinates runs spread over many workers.

    \b
    Example:
      ddb2es state init --table ddb2es-state
    """


@state.command("init")
@click.option("--table", "table_name", default=None, help="State table name.")
@state_table_option
@output_options
@click.pass_context
def state_init(
    ctx: click.Context,
    table_name: str | None,
    state_table: str | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Create the state table (on-demand billing) unless it exists; wait until it is ACTIVE.

    \b
    Example:
      ddb2es state init --table ddb2es-state
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.state.dynamo import IAM_ACTIONS, INIT_ACTIONS, DynamoState

    app = app_of(ctx, json_output, quiet)
    name = table_name or state_table or app.settings.state_table or DEFAULT_STATE_TABLE
    created = DynamoState(make_dynamodb_client(app.settings.dynamodb), name).init()
    data = {
        "table": name,
        "created": created,
        "iam_actions": list(IAM_ACTIONS),
        "iam_actions_init": list(INIT_ACTIONS),
    }

    def render(console: Console) -> None:
        console.print(f"state table {name} {'created' if created else 'exists'} and is ACTIVE")
        console.print(
            "workers need on it: " + ", ".join(IAM_ACTIONS) + f" ({INIT_ACTIONS[0]}: init only)",
            markup=False,
        )

    emit(app, data, render)


# --- status --------------------------------------------------------------------------------------


@click.command()
@click.argument("run_id", required=False)
@state_table_option
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Runs listed without RUN_ID.",
)
@output_options
@click.pass_context
def status(
    ctx: click.Context,
    run_id: str | None,
    state_table: str | None,
    limit: int,
    json_output: bool,
    quiet: bool,
) -> None:
    """Where runs stand: units done/claimed/free, items, rate, ETA, live workers, failures.

    Without RUN_ID: the most recent runs.

    \b
    Example:
      ddb2es status --state-table ddb2es-state r20261127t205800-1a2b3c --json
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.scale import run_status

    app = app_of(ctx, json_output, quiet)
    state_opts = state_options(app, state_table, None)
    backend = state_opts.open(make_dynamodb_client(app.settings.dynamodb))
    runs = [run_id] if run_id else [r.run_id for r in backend.list_runs(limit)]
    found = [run_status(backend, r) for r in runs]
    if run_id:
        emit(app, found[0], lambda console: _render_run(console, found[0]))
        return

    def render(console: Console) -> None:
        if not found:
            console.print(f"no runs in {backend.describe()}")
            return
        table = Table("run", "status", "tables", "units done", "items", "workers", "failed")
        for s in found:
            table.add_row(
                s["run_id"],
                s["status"],
                ",".join(t["table"] for t in s["tables"]),
                f"{s['units']['done']}/{s['units']['total']}",
                str(s["items"]),
                str(s["live_workers"]),
                str(s["failed"]),
            )
        console.print(table)

    emit(app, {"runs": found}, render)


def _render_run(console: Console, s: dict[str, Any]) -> None:
    started = datetime.fromtimestamp(s["created"], timezone.utc).isoformat(timespec="seconds")
    eta = f", ETA {s['eta_s']} s" if s["eta_s"] is not None else ""
    console.print(
        f"run {s['run_id']} ({s['command']}): {s['status']}, started {started} by {s['who']}; "
        f"{s['items']} of ~{s['estimated_items']} items, {s['items_per_s']} items/s{eta}",
        markup=False,
    )
    table = Table("table", "units", "done", "claimed", "free", "scanned", "indexed", "failed")
    for t in s["tables"]:
        table.add_row(
            t["table"],
            str(t["units"]),
            str(t["done"]),
            str(t["claimed"]),
            str(t["free"]),
            str(t["scanned"]),
            str(t["indexed"]),
            str(t["failed"]),
        )
    console.print(table)
    console.print(
        f"workers: {s['live_workers']} live of {len(s['workers'])}; takeovers: {s['takeovers']}; "
        f"failed documents: {s['failed']}",
        markup=False,
    )
    for unit in s["takeover_units"]:
        console.print(
            f"  unit {unit['table']} #{unit['unit']}: taken over {unit['takeovers']}x "
            f"(owners {' -> '.join(unit['owners'])})",
            markup=False,
        )
