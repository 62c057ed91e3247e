"""`ddb2es export start`, `ddb2es apply-export`, and the `reindex --from-export` glue."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ddb2es_cli.cli.common import (
    AppContext,
    app_of,
    emit,
    failures_option,
    output_options,
    print_failures,
)
from ddb2es_cli.config import TableSettings
from ddb2es_cli.errors import ConfigError, ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

    from ddb2es_cli.export.rebuild import ExportSource
    from ddb2es_cli.reindex import ReindexOptions

s3_endpoint_option = click.option(
    "--s3-endpoint",
    envvar="DDB2ES_S3_ENDPOINT",
    default=None,
    help="S3 endpoint URL (default: [s3] endpoint, else AWS).",
)


max_read_mbps_option = click.option(
    "--max-read-mbps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --from-export: cap on export bytes read per second (MB/s).",
)


def s3_factory(app: AppContext, endpoint: str | None) -> Any:
    """Builds the S3 client only when an s3:// URL needs one."""
    from ddb2es_cli.export.location import make_s3_client

    settings = app.settings

    def make() -> Any:
        return make_s3_client(
            endpoint or settings.s3_endpoint, settings.dynamodb.region, settings.dynamodb.profile
        )

    return make


def export_source_for(
    app: AppContext,
    selected: list[TableSettings],
    url: str,
    options: ReindexOptions,
    s3_endpoint: str | None,
    max_read_mbps: float | None,
) -> ExportSource:
    """`reindex --from-export`: one unit per data file, reader threads = --segments, a state
    file of the export's own (so --resume never mixes a scan's keys with file lines)."""
    from ddb2es_cli.export.rebuild import export_source

    if len(selected) != 1:
        raise click.UsageError("--from-export takes exactly one TABLE (an export is of one table)")
    source = export_source(
        url,
        selected[0].name,
        s3_factory(app, s3_endpoint),
        workers=options.segments,
        page_limit=options.page_limit,
        max_read_mbps=max_read_mbps,
    )
    options.segments = source.segments
    options.state_path = options.state_path or source.state_path
    return source


def export_sources_for(
    app: AppContext,
    selected: list[TableSettings],
    urls: tuple[str, ...],
    options: ReindexOptions,
    s3_endpoint: str | None,
    max_read_mbps: float | None,
) -> dict[str, ExportSource]:
    """`reload --from-export URL...`: each export goes with the table its manifest names (or
    the one TABLE); every table of the reload needs exactly one."""
    from ddb2es_cli.export.location import open_location
    from ddb2es_cli.export.manifest import load_export
    from ddb2es_cli.export.rebuild import check_full, source_of

    s3 = s3_factory(app, s3_endpoint)
    names = {t.name for t in selected}
    sources: dict[str, ExportSource] = {}
    for url in urls:
        export = load_export(open_location(url, s3))  # once: S3 reads of both manifests
        table = export.table
        if table is None and len(urls) == 1 and len(selected) == 1:
            table = selected[0].name
        if table is None:
            raise ConfigError(f"{url}: its manifest names no table: reload one TABLE with it")
        if table not in names:
            raise ConfigError(f"{url} is an export of {table!r}, which this reload does not name")
        if table in sources:
            raise ConfigError(f"two exports of {table!r}: give one per table")
        sources[table] = source_of(
            check_full(export, table),
            table,
            workers=options.segments,
            page_limit=options.page_limit,
            max_read_mbps=max_read_mbps,
        )
    return sources


@click.group()
def export() -> None:
    """DynamoDB table exports to S3 (no read capacity consumed).

    \b
    Example:
      ddb2es export start orders --s3-bucket my-exports --s3-prefix ddb
      ddb2es reindex orders --from-export s3://my-exports/ddb/AWSDynamoDB/0169...-a1b2c3d4/
    """


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@export.command("start")
@click.argument("table")
@click.option("--s3-bucket", required=True, help="Bucket the export is written to.")
@click.option("--s3-prefix", default=None, help="Key prefix inside the bucket.")
@click.option(
    "--incremental",
    is_flag=True,
    help="Export only the changes between --from and --to (NEW_AND_OLD_IMAGES).",
)
@click.option("--from", "from_time", default=None, help="Incremental start (ISO 8601, UTC).")
@click.option("--to", "to_time", default=None, help="Incremental end, exclusive (ISO 8601).")
@click.option("--no-wait", is_flag=True, help="Return once DynamoDB accepted the export.")
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds between status checks while waiting.",
)
@output_options
@click.pass_context
def start(
    ctx: click.Context,
    table: str,
    s3_bucket: str,
    s3_prefix: str | None,
    incremental: bool,
    from_time: str | None,
    to_time: str | None,
    no_wait: bool,
    poll_seconds: float,
    json_output: bool,
    quiet: bool,
) -> None:
    """Start an export of TABLE to S3 (DYNAMODB_JSON), wait for it, print its URL.

    Needs point-in-time recovery on the table. Pass the URL to `reindex --from-export` (full)
    or `apply-export` (incremental).

    \b
    Example:
      ddb2es export start orders --s3-bucket my-exports
      ddb2es export start orders --s3-bucket my-exports --incremental \\
          --from 2026-11-27T10:00:00Z --to 2026-11-27T12:00:00Z
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.export.start import start_export, wait_export

    app = app_of(ctx, json_output, quiet)
    window = None
    if incremental:
        begin, end = _time(from_time, "--from"), _time(to_time, "--to")
        if begin is None or end is None:
            raise click.UsageError("--incremental needs --from and --to")
        window = (begin, end)
    elif from_time or to_time:
        raise click.UsageError("--from and --to go with --incremental")
    ddb = make_dynamodb_client(app.settings.dynamodb)
    status = start_export(ddb, table, s3_bucket, s3_prefix, window)
    if not no_wait:

        def show(current: Any, seconds: float) -> None:
            if not app.quiet:
                click.echo(f"export {current.status} after {seconds:.0f} s", err=True)

        status = wait_export(ddb, status.arn, show, interval=poll_seconds)

    def render(console: Console) -> None:
        console.print(f"export {status.status}: {status.arn}", markup=False)
        if status.url:
            use = "apply-export" if incremental else f"reindex {table} --from-export"
            console.print(f"URL: {status.url}  (ddb2es {use} {status.url})", markup=False)

    emit(app, status.as_dict(), render)


@click.command("apply-export")
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@click.option(
    "--table",
    default=None,
    help="Table whose indices get the changes "
    "(default: the table named in the exports' manifests).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Records per bulk request.",
)
@click.option(
    "--max-read-mbps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cap on export bytes read per second (MB/s).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: .ddb2es/apply-export-<hash>.json).",
)
@failures_option("ddb2es-apply-failures.ndjson")
@s3_endpoint_option
@output_options
@click.pass_context
def apply_export(
    ctx: click.Context,
    urls: tuple[str, ...],
    table: str | None,
    batch_size: int,
    max_read_mbps: float | None,
    state_file: Path | None,
    failures_path: Path,
    s3_endpoint: str | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Apply incremental exports (in time order, a gapless chain) like stream records.

    Upserts, deletes and TYPE changes, each versioned by its write time, so applying twice or
    after the stream handler changes nothing. A rerun after a crash continues where it stopped.
    Exit 2 when the exports leave a gap.

    \b
    Example:
      ddb2es apply-export s3://my-exports/ddb/AWSDynamoDB/0170...-e5f6/ \\
          s3://my-exports/ddb/AWSDynamoDB/0171...-a7b8/
    """
    from ddb2es_cli.clients import make_search_client
    from ddb2es_cli.config_checks import check_table_name
    from ddb2es_cli.export.incremental import apply_exports
    from ddb2es_cli.export.location import ByteLimiter, open_location
    from ddb2es_cli.export.manifest import load_export

    app = app_of(ctx, json_output, quiet)
    make_s3 = s3_factory(app, s3_endpoint)
    client: list[Any] = []

    def shared_s3() -> Any:
        if not client:
            client.append(make_s3())
        return client[0]

    exports = [load_export(open_location(url, shared_s3)) for url in urls]
    names = {e.table for e in exports if e.table}
    if table is None:
        if len(names) != 1:
            raise ConfigError("name the table with --table (the manifests do not say which)")
        table = names.pop()
    settings = app.settings.table(check_table_name(table))
    es, _engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    summary = apply_exports(
        es,
        app.settings,
        settings,
        exports,
        state_path=state_file,
        failures_path=failures_path,
        batch_size=batch_size,
        limiter=ByteLimiter(max_read_mbps * 1_000_000 if max_read_mbps else None),
    )
    data = summary.as_dict()

    def render(console: Console) -> None:
        console.print(
            f"{data['exports']} exports, {data['records']} records: {data['indexed']} indexed, "
            f"{data['deleted']} deleted, {data['conflicts']} already newer, "
            f"{data['skipped']} skipped, {data['failures']} failed",
            markup=False,
        )
        print_failures(console, summary.failures, "records failed", failures_path)

    emit(app, data, render)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)
