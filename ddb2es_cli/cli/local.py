"""`ddb2es local`: the embedded DynamoDB Local and search server, and sample data."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ddb2es_cli.cli.common import app_of, emit, output_options
from ddb2es_cli.errors import ExitStatus


@click.group()
def local() -> None:
    """The embedded local stack: DynamoDB Local and an OpenSearch-compatible server.

    \b
    Example:
      ddb2es local up --json && ddb2es local seed --items 10000
    """


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where pid and log files go (default: ./.ddb2es-local or $DDB2ES_STATE_DIR).",
)


@local.command("up")
@click.option("--dynamodb-port", default=8000, show_default=True, help="DynamoDB Local port.")
@click.option("--es-port", default=9200, show_default=True, help="Search server port.")
@click.option(
    "--db-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep DynamoDB data in this folder (-sharedDb) instead of in memory.",
)
@state_dir_option
@output_options
@click.pass_context
def local_up(
    ctx: click.Context,
    dynamodb_port: int,
    es_port: int,
    db_path: Path | None,
    state_dir: Path | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Start DynamoDB Local and the search server (reuses them when already running).

    \b
    Example:
      ddb2es local up --dynamodb-port 8000 --es-port 9200 --json
    """
    from ddb2es_cli import local as local_stack

    app = app_of(ctx, json_output, quiet)
    stack = local_stack.up(state_dir, dynamodb_port=dynamodb_port, es_port=es_port, db_path=db_path)
    data = {"dynamodb_endpoint": stack.dynamodb_endpoint, "es_url": stack.es_url}
    emit(
        app,
        data,
        lambda c: c.print(
            f"DynamoDB Local: {stack.dynamodb_endpoint}\nsearch server:  {stack.es_url}\n"
            f"export DDB2ES_DYNAMODB_ENDPOINT={stack.dynamodb_endpoint} "
            f"DDB2ES_ES_URL={stack.es_url}"
        ),
    )


@local.command("down")
@state_dir_option
@output_options
@click.pass_context
def local_down(ctx: click.Context, state_dir: Path | None, json_output: bool, quiet: bool) -> None:
    """Stop the local servers started by `local up`.

    \b
    Example:
      ddb2es local down
    """
    from ddb2es_cli import local as local_stack

    app = app_of(ctx, json_output, quiet)
    stopped = local_stack.down(state_dir)
    emit(
        app,
        {"stopped": stopped},
        lambda c: c.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running"),
    )


@local.command("status")
@state_dir_option
@output_options
@click.pass_context
def local_status(
    ctx: click.Context, state_dir: Path | None, json_output: bool, quiet: bool
) -> None:
    """Show whether the local servers run.

    \b
    Example:
      ddb2es local status --json
    """
    from ddb2es_cli import local as local_stack

    app = app_of(ctx, json_output, quiet)
    status = local_stack.status(state_dir)

    def render(console: Console) -> None:
        table = Table("server", "running", "pid", "url")
        for name, info in status.items():
            table.add_row(
                name,
                str(info.get("running")),
                str(info.get("pid") or ""),
                str(info.get("url") or ""),
            )
        console.print(table)

    emit(app, status, render)
    if not all(info.get("running") for info in status.values()):
        sys.exit(ExitStatus.ERROR)


@local.command("seed")
@click.option(
    "--items",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Items in all, over 3 tables.",
)
@click.option("--prefix", default="ddb2es-demo-", show_default=True, help="Table name prefix.")
@click.option("--seed", "random_seed", default=0, show_default=True, help="Random seed.")
@click.option("--item-bytes", default=0, help="Pad items to about this size (benchmarks).")
@output_options
@click.pass_context
def local_seed(
    ctx: click.Context,
    items: int,
    prefix: str,
    random_seed: int,
    item_bytes: int,
    json_output: bool,
    quiet: bool,
) -> None:
    """Create sample tables (every attribute type, several TYPEs) in DynamoDB.

    Drops and recreates the tables named <prefix>orders, <prefix>events, <prefix>customers.

    \b
    Example:
      ddb2es --dynamodb-endpoint http://localhost:8000 local seed --items 10000
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.seed import seed

    app = app_of(ctx, json_output, quiet)
    if not app.settings.dynamodb.endpoint:
        raise click.UsageError(
            "local seed only writes to a local endpoint: "
            "pass --dynamodb-endpoint (never to AWS by accident)"
        )
    client = make_dynamodb_client(app.settings.dynamodb)
    tables = seed(client, items=items, prefix=prefix, seed=random_seed, item_bytes=item_bytes)
    data = [t.__dict__ for t in tables]

    def render(console: Console) -> None:
        table = Table("table", "hash key", "range key", "items")
        for t in tables:
            table.add_row(t.name, t.hash_key, t.range_key or "", str(t.items))
        console.print(table)

    emit(app, data, render)
