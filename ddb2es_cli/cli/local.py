"""`ddb2es local`: the embedded DynamoDB Local and search server, and sample data."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ddb2es_cli.cli.common import Table, app_of, emit, output_options
from ddb2es_cli.errors import ConfigError, ExitStatus

if TYPE_CHECKING:
    from rich.console import Console


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
    help="Where pid and log files go (default: $DDB2ES_STATE_DIR, else "
    "$XDG_STATE_HOME/ddb2es/local or ~/.local/state/ddb2es/local).",
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
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow an endpoint that is not loopback (AWS, another host): tables are dropped there.",
)
@click.option("--yes", is_flag=True, help="Drop existing sample tables without asking.")
@output_options
@click.pass_context
def local_seed(
    ctx: click.Context,
    items: int,
    prefix: str,
    random_seed: int,
    item_bytes: int,
    allow_remote: bool,
    yes: bool,
    json_output: bool,
    quiet: bool,
) -> None:
    """Create sample tables (every attribute type, several TYPEs) in DynamoDB.

    Drops and recreates the tables named <prefix>orders, <prefix>events, <prefix>customers:
    only on a loopback endpoint unless --allow-remote, and after asking (or --yes) when they
    exist already.

    \b
    Example:
      ddb2es --dynamodb-endpoint http://localhost:8000 local seed --items 10000
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.local import is_loopback_endpoint
    from ddb2es_cli.seed import existing_tables, seed, table_names

    app = app_of(ctx, json_output, quiet)
    endpoint = _effective_endpoint(app.settings.dynamodb.endpoint)
    if not allow_remote and not is_loopback_endpoint(endpoint):
        where = endpoint or "AWS (no --dynamodb-endpoint)"
        raise ConfigError(
            f"local seed drops and recreates {', '.join(table_names(prefix))} and only writes "
            f"to a loopback endpoint, not {where}: pass --allow-remote to mean it"
        )
    client = make_dynamodb_client(app.settings.dynamodb)
    existing = existing_tables(client, prefix)
    if existing and not yes:
        question = f"Drop and recreate the existing tables {', '.join(existing)} at {endpoint}?"
        if not sys.stdin.isatty():
            raise ConfigError(
                f"{', '.join(existing)} exist at {endpoint} and would be dropped: pass --yes"
            )
        if not click.confirm(question, default=False, err=True):
            click.echo("cancelled: nothing was dropped", err=True)
            ctx.exit(ExitStatus.USAGE)
    with _seed_bar(items, enabled=not app.quiet and sys.stderr.isatty()) as advance:
        tables = seed(
            client,
            items=items,
            prefix=prefix,
            seed=random_seed,
            item_bytes=item_bytes,
            progress=advance,
        )
    data = [t.__dict__ for t in tables]

    def render(console: Console) -> None:
        table = Table("table", "hash key", "range key", "items")
        for t in tables:
            table.add_row(t.name, t.hash_key, t.range_key or "", str(t.items))
        console.print(table)

    emit(app, data, render)


def _effective_endpoint(configured: str | None) -> str | None:
    """The endpoint boto3 will use: the configured one, else AWS's own endpoint variables."""
    return (
        configured
        or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


@contextlib.contextmanager
def _seed_bar(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A bar of items written on stderr (closed before anything else is printed)."""
    if not enabled:
        yield lambda _n: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc="seed", unit=" items", unit_scale=True, file=sys.stderr)

    def advance(items: int) -> None:
        bar.update(items)

    try:
        yield advance
    finally:
        bar.close()
