"""`ddb2es stream`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ddb2es_cli.cli.common import (
    app_of,
    emit,
    failures_option,
    make_clients,
    output_options,
    print_failures,
    tables_argument,
)
from ddb2es_cli.errors import ExitStatus


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
    help="Checkpoint file (default: .ddb2es/stream-<tables>.json).",
)
@failures_option("ddb2es-stream-failures.ndjson", "records the cluster refused")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
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
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.stream_runner import StreamOptions, run_stream

    app = app_of(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    ddb, es = make_clients(app)
    streams = make_dynamodb_client(app.settings.dynamodb, "dynamodbstreams")
    options = StreamOptions(
        start=start,
        until_caught_up=until_caught_up,
        caught_up_empty_pages=caught_up_empty_pages,
        state_path=state_file,
        failures_path=failures_path,
        batch_size=batch_size,
    )
    try:
        summary = run_stream(ddb, streams, es, app.settings, selected, options)
    except KeyboardInterrupt:
        click.echo("Error: interrupted; checkpoints are saved", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
    data = summary.as_dict()

    def render(console: Console) -> None:
        table = Table("table", "shards", "records", "indexed", "deleted", "conflicts", "failed")
        for t in data["tables"]:
            table.add_row(
                *(
                    str(t[k])
                    for k in (
                        "table",
                        "shards",
                        "records",
                        "indexed",
                        "deleted",
                        "conflicts",
                        "failed",
                    )
                )
            )
        console.print(table)
        print_failures(console, summary.failures, "records failed", failures_path)

    emit(app, data, render)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)
