"""`ddb2es stream`."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from ddb2es_cli.cli.common import (
    Table,
    app_of,
    dynamodb_client,
    emit,
    failures_option,
    make_clients,
    output_options,
    print_failures,
    tables_argument,
)
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

    from ddb2es_cli.stream_runner import StreamStatus

SUMMARY_COLUMNS = (
    "table",
    "shards",
    "records",
    "indexed",
    "deleted",
    "conflicts",
    "failed",
    "retried",
    "lag_seconds",
)


@click.command()
@tables_argument
@click.option(
    "--from",
    "start",
    default=None,
    help="Where shards without a checkpoint start: trim-horizon (the default), latest or an "
    "ISO 8601 time. Given explicitly, trim-horizon also goes on past a trimmed checkpoint "
    "(which otherwise stops the run: updates were lost, reindex first).",
)
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Stop when every shard is read: to its end, or up to a record written after the run "
    "started, or after --caught-up-empty-pages empty pages in a row.",
)
@click.option(
    "--caught-up-empty-pages",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="With --until-caught-up: empty pages in a row after which an open shard counts as "
    "read (streams answer empty pages mid-shard too).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: .ddb2es/stream-<hash>.json, <hash> = 12 hex digits of the "
    "SHA-256 of the sorted table names, comma-joined).",
)
@failures_option("ddb2es-stream-failures.ndjson", "records the cluster refused")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between status lines on stderr when following: records applied, the "
    "handler's counters (indexed, deleted, conflicts, failed, retried) and the lag; one JSON "
    "object per line with --json.",
)
@output_options
@click.pass_context
def stream(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    start: str | None,
    until_caught_up: bool,
    caught_up_empty_pages: int,
    state_file: Path | None,
    failures_path: Path,
    batch_size: int,
    status_every: float,
    json_output: bool,
    quiet: bool,
) -> None:
    """Follow the tables' DynamoDB Streams and apply them with the Lambda handler's code.

    Runs until Ctrl-C or SIGTERM (exit 130; the next run continues from the checkpoints), or
    with --until-caught-up until every shard is read. Overload (429/502/503/504) and lost
    connections are retried until they pass; records the cluster refuses go to the failures
    file (exit 4). A checkpoint older than the stream's 24 h stops the run (exit 1).

    \b
    Example:
      ddb2es --config ddb2es.toml stream --all
      ddb2es stream orders-service --from 2026-11-26T03:00:00Z --until-caught-up
    """
    from ddb2es_cli.stream_runner import StreamOptions, run_stream

    app = app_of(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    ddb, es = make_clients(app)
    streams = dynamodb_client(app, "dynamodbstreams")
    options = StreamOptions(
        start=start,
        until_caught_up=until_caught_up,
        caught_up_empty_pages=caught_up_empty_pages,
        state_path=state_file,
        failures_path=failures_path,
        batch_size=batch_size,
        status=None
        if until_caught_up or app.quiet
        else _status_line(status_every, app.json_output),
        status_interval=status_every,
    )
    stop = threading.Event()
    with _stop_on_signals(stop):
        summary = run_stream(ddb, streams, es, app.settings, selected, options, stop)
    data = summary.as_dict()

    def render(console: Console) -> None:
        table = Table(*(c.replace("_seconds", " s") for c in SUMMARY_COLUMNS))
        for t in data["tables"]:
            table.add_row(*("-" if t[k] is None else str(t[k]) for k in SUMMARY_COLUMNS))
        console.print(table)
        print_failures(console, summary.failures, "records failed", failures_path)

    if stop.is_set():
        click.echo("interrupted; checkpoints are saved: the next run continues from them", err=True)
    emit(app, data, render)
    if stop.is_set():
        ctx.exit(ExitStatus.INTERRUPTED)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)


def _status_line(interval: float, as_json: bool = False) -> Callable[[StreamStatus], None]:
    """One line per interval on stderr, so a follow run shows it is alive and how far behind,
    with the counters the deployed handler sends as metrics."""

    def status(now: StreamStatus) -> None:
        if as_json:
            line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **now.as_dict()}
            click.echo(json.dumps(line), err=True)
            return
        lag = now.lag_seconds
        behind = "idle" if lag is None else f"lag {lag:.0f} s"
        click.echo(
            f"{time.strftime('%H:%M:%S')} stream: {now.applied} records applied in the last "
            f"{interval:g} s ({now.records} in all), {behind}; {now.indexed} indexed, "
            f"{now.deleted} deleted, {now.conflicts} conflicts, {now.failed} failed, "
            f"{now.retried} retried",
            err=True,
        )

    return status


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the run between pages, so the summary is still printed; a second
    one interrupts at once (a call that hangs)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
