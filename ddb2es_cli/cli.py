"""Command line: parse options, build settings and clients, call one core function, render.

Only this module imports click and rich. Results go to stdout (a table, or JSON with --json);
logs and progress go to stderr.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ddb2es_cli import __version__
from ddb2es_cli.config import Settings, load_settings
from ddb2es_cli.errors import Ddb2esError, ExitStatus

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("ddb2es")
NOISY_LOGGERS = ("opensearch", "elasticsearch", "elastic_transport", "urllib3", "botocore", "boto3")


@dataclass
class AppContext:
    """What the global options gave; settings are built on first use so `--help` never fails."""

    config_path: Path | None
    overrides: dict[str, Any]
    json_output: bool = False
    quiet: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, self.overrides)
        return self._settings


def tables_argument(func: F) -> F:
    """TABLE... or --all (every [[tables]] entry of the config file)."""
    func = click.option(
        "--all", "all_tables", is_flag=True, help="Every table in the config file."
    )(func)
    return click.argument("tables", nargs=-1)(func)


segments_option = click.option(
    "--segments",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel scan segments (default: 4 per core, at least 4).",
)


def failures_option(default: str, what: str = "documents that failed") -> Callable[[F], F]:
    return click.option(
        "--failures",
        "failures_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path(default),
        show_default=True,
        help=f"NDJSON file for {what}, with their keys and the reason.",
    )


def output_options(func: F) -> F:
    """--json and --quiet on every command as well as globally (`local up --json` reads well)."""
    func = click.option("--quiet", "quiet", is_flag=True, help="No progress bars or logs.")(func)
    func = click.option(
        "--json", "json_output", is_flag=True, help="Print the result as one JSON document."
    )(func)
    return func


def _app(ctx: click.Context, json_output: bool = False, quiet: bool = False) -> AppContext:
    app = ctx.find_object(AppContext)
    assert app is not None, "the cli group sets the context object"
    app.json_output = app.json_output or json_output
    app.quiet = app.quiet or quiet
    if app.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    return app


def print_lines(lines: list[str]) -> Callable[[Console], None]:
    """A renderer for plain lines (no rich markup: names may contain brackets)."""

    def render(console: Console) -> None:
        for line in lines:
            console.print(line, markup=False)

    return render


def emit(app: AppContext, data: Any, render: Callable[[Console], None]) -> None:
    """JSON on stdout with --json, else the human rendering."""
    if app.json_output:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        # Piped output keeps whole names (rich would fold tables to 80 columns).
        width = None if sys.stdout.isatty() else 200
        render(Console(highlight=False, width=width))


class Ddb2esGroup(click.Group):
    """The one place where core exceptions become a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Ddb2esError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_status)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(ExitStatus.INTERRUPTED)


@click.group(
    cls=Ddb2esGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="ddb2es")
@click.option(
    "--config",
    "config_path",
    envvar="DDB2ES_CONFIG",
    type=click.Path(path_type=Path),
    help="Config file (default: ./ddb2es.toml when present).",
)
@click.option(
    "--dynamodb-endpoint",
    envvar="DDB2ES_DYNAMODB_ENDPOINT",
    help="DynamoDB endpoint URL (empty: AWS).",
)
@click.option("--region", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"], help="AWS region.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS profile.")
@click.option("--es-url", envvar="DDB2ES_ES_URL", help="Elasticsearch/OpenSearch URL.")
@click.option("--es-username", envvar="DDB2ES_ES_USERNAME", help="Basic auth user.")
@click.option("--es-password", envvar="DDB2ES_ES_PASSWORD", help="Basic auth password.")
@click.option("--es-api-key", envvar="DDB2ES_ES_API_KEY", help="API key (encoded, or id:key).")
@click.option(
    "--es-aws-sigv4/--no-es-aws-sigv4",
    default=None,
    help="Sign requests with AWS SigV4 (managed domains).",
)
@click.option(
    "--es-aws-service",
    type=click.Choice(["es", "aoss"]),
    default=None,
    help="SigV4 service: es (domains) or aoss (Serverless).",
)
@click.option(
    "--es-ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle for TLS."
)
@click.option(
    "--es-verify-certs/--no-es-verify-certs",
    default=None,
    help="Verify TLS certificates (default: on).",
)
@click.option("--json", "json_output", is_flag=True, help="Print the result as one JSON document.")
@click.option("--quiet", is_flag=True, help="No progress bars or logs.")
@click.option("--verbose", is_flag=True, help="Debug logs, including every HTTP request.")
@click.pass_context
def cli(
    ctx: click.Context,
    /,
    config_path: Path | None,
    json_output: bool,
    quiet: bool,
    verbose: bool,
    **overrides: Any,
) -> None:
    """Keep Elasticsearch/OpenSearch indices true to the DynamoDB tables they are built from.

    \b
    Example:
      ddb2es --dynamodb-endpoint http://localhost:8000 --es-url http://localhost:9200 doctor
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        # The client libraries log every request, and failed ones with tracebacks: our own
        # messages say what went wrong in one line; --verbose shows theirs.
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    ctx.obj = AppContext(config_path, overrides, json_output, quiet)


# --- local --------------------------------------------------------------------------------------


@cli.group()
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

    app = _app(ctx, json_output, quiet)
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

    app = _app(ctx, json_output, quiet)
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

    app = _app(ctx, json_output, quiet)
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
@click.option("--items", default=10_000, show_default=True, help="Items in all, over 3 tables.")
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

    app = _app(ctx, json_output, quiet)
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


# --- doctor -------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--fix", is_flag=True, help="Restore index settings that a dead reindex left changed."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".ddb2es"),
    show_default=True,
    help="Where reindex keeps its state files.",
)
@output_options
@click.pass_context
def doctor(ctx: click.Context, fix: bool, state_dir: Path, json_output: bool, quiet: bool) -> None:
    """Check both endpoints: engine, version, client, auth mode, configured tables.

    Exits 1 when any check fails.

    \b
    Example:
      ddb2es --es-url https://search.example.com --es-aws-sigv4 doctor
    """
    from ddb2es_cli.doctor import run_doctor

    app = _app(ctx, json_output, quiet)
    report = run_doctor(app.settings, state_dir, fix)

    def render(console: Console) -> None:
        table = Table("check", "", "detail")
        for check in report.checks:
            table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
        console.print(table)

    emit(app, report.as_dict(), render)
    if not report.ok:
        sys.exit(ExitStatus.ERROR)


# --- reindex ------------------------------------------------------------------------------------


def _clients(app: AppContext) -> tuple[Any, Any]:
    from ddb2es_cli.clients import make_dynamodb_client, make_search_client

    ddb = make_dynamodb_client(app.settings.dynamodb)
    es, _engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    return ddb, es


class _Bars:
    """One tqdm bar per table on stderr; none when stderr is not a terminal or with --quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def start(self, table: str, estimated_items: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bars[table] = tqdm(
            total=estimated_items or None,
            desc=table,
            unit=" items",
            unit_scale=True,
            file=sys.stderr,
            dynamic_ncols=True,
            position=len(self.bars),
        )

    def advance(self, table: str, items: int) -> None:
        bar = self.bars.get(table)
        if bar is not None:
            bar.update(items)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


@cli.command()
@tables_argument
@segments_option
@click.option(
    "--bulk-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Concurrent bulk requests.",
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
@click.option(
    "--max-rcu",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Cap read capacity consumed per second.",
)
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
    help="Checkpoint file (default: .ddb2es/reindex-<tables>.json).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoints.")
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=None,
    help="Items per Scan page (default: DynamoDB's 1 MB pages).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan; scan and write nothing.")
@output_options
@click.pass_context
def reindex(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    segments: int | None,
    bulk_workers: int,
    chunk_size: int,
    max_chunk_bytes: int,
    max_rcu: float | None,
    bulk_load_settings: bool | None,
    failures_path: Path,
    state_file: Path | None,
    resume: bool,
    page_size: int | None,
    dry_run: bool,
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

    app = _app(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    options = ReindexOptions(
        segments=segments or default_segments(),
        bulk=BulkOptions(
            chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, workers=bulk_workers
        ),
        max_rcu=max_rcu,
        bulk_load_settings=bulk_load_settings,
        failures_path=failures_path,
        state_path=state_file,
        resume=resume,
        page_limit=page_size,
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
    ddb, es = _clients(app)
    bars = _Bars(enabled=not app.quiet and sys.stderr.isatty())
    try:
        summary = run_reindex(ddb, es, app.settings, selected, options, bars)
    except KeyboardInterrupt:
        bars.close()
        click.echo("Error: interrupted; progress is saved: rerun with --resume", err=True)
        ctx.exit(ExitStatus.INTERRUPTED)
    bars.close()
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
        if summary.failures:
            console.print(f"[red]{summary.failures} documents failed[/]: see {failures_path}")

    emit(app, data, render)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)


# --- drift --------------------------------------------------------------------------------------


@cli.command()
@tables_argument
@segments_option
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Items drawn at random and compared with their documents field by field.",
)
@click.option(
    "--orphans",
    type=click.IntRange(min=0),
    default=None,
    help="Documents drawn at random from each index and looked up in the table "
    "(default: the sample size).",
)
@click.option("--seed", type=int, default=None, help="Random seed (reported; repeat a run).")
@click.option(
    "--counts",
    type=click.Choice(["exact", "estimate"]),
    default="exact",
    show_default=True,
    help="exact: a key-only scan of every item (consumes read capacity); estimate: the "
    "table's ItemCount, which AWS refreshes only about every 6 hours.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Compare every key of both sides (scans the table, scrolls the indices).",
)
@click.option("--refresh", is_flag=True, help="Refresh the indices before counting.")
@click.option(
    "--tolerance",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Documents of difference accepted per index and findings per table.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Re-read drifted items (consistent GetItem) and rewrite or delete their documents.",
)
@click.option("--dry-run", is_flag=True, help="List what --repair would change; write nothing.")
@click.option("--yes", is_flag=True, help="Repair without asking (needed when not interactive).")
@click.option(
    "--max-rcu",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Cap read capacity consumed per second by the scans.",
)
@failures_option("ddb2es-drift-failures.ndjson", "documents the repair could not write")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as JSON to this file.",
)
@output_options
@click.pass_context
def drift(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    sample: int,
    orphans: int | None,
    seed: int | None,
    counts: str,
    full: bool,
    refresh: bool,
    tolerance: int,
    repair: bool,
    dry_run: bool,
    yes: bool,
    segments: int | None,
    max_rcu: float | None,
    failures_path: Path,
    report_path: Path | None,
    json_output: bool,
    quiet: bool,
) -> None:
    """Check that the indices are still true to the tables; --repair makes them so.

    Counts per index (exact by default: a key-only scan that consumes read capacity),
    sampled items compared field by field, documents drawn from each index looked up in the
    table (orphans), or with --full every key of both sides. Exit 0 when clean (within
    --tolerance), 3 when drift is found, 4 when the repair could not write some documents
    (see --failures), 1 on error.

    \b
    Example:
      ddb2es drift orders-service --sample 2000 --refresh
      ddb2es drift --all --full --repair --yes --report drift.json
      ddb2es --json drift orders-service --counts estimate --seed 42
    """
    from ddb2es_cli.drift import run_drift
    from ddb2es_cli.drift_report import DriftOptions
    from ddb2es_cli.reindex import default_segments

    app = _app(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    if repair and not (dry_run or yes or _confirm("Repair documents in the live indices?")):
        raise click.UsageError("refusing to repair without --yes (not interactive); see --dry-run")
    options = DriftOptions(
        sample=sample,
        orphans=orphans,
        seed=seed,
        counts=counts,
        full=full,
        refresh=refresh,
        tolerance=tolerance,
        repair=repair,
        dry_run=dry_run,
        segments=segments or default_segments(),
        max_rcu=max_rcu,
        failures_path=failures_path,
    )
    options.validate()  # usage errors before any client is built
    ddb, es = _clients(app)
    bars = _Bars(enabled=not app.quiet and sys.stderr.isatty())
    try:
        report = run_drift(ddb, es, app.settings, selected, options, bars)
    finally:
        bars.close()
    data: dict[str, Any] = report.as_dict()
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def render(console: Console) -> None:
        for t in data["tables"]:
            items = f"~{t['items']}" if t["items_estimated"] else str(t["items"])
            rcu = ", ".join(f"{k} {v}" for k, v in t["rcu"].items()) or "none"
            console.print(
                f"[bold]{escape(t['table'])}[/]: {items} items ({t['counts']} counts), "
                f"{t['invalid_index_items']} with an invalid index name; RCU: {rcu}"
            )
            if options.full:
                table = Table("index", "items", "documents", "diff", "missing", "different")
                table.add_column("orphans")
            else:
                table = Table("index", "items", "documents", "diff", "sampled", "missing")
                table.add_column("different")
                table.add_column("orphans/checked")
            table.add_column("foreign")
            for i in t["indices"]:
                diff = i["difference"]
                row = [
                    escape(i["index"]) + ("" if i["exists"] else " (none)"),
                    "?" if i["table_count"] is None else str(i["table_count"]),
                    str(i["index_count"]),
                    "" if diff is None else f"{diff:+d}" if diff else "0",
                ]
                if options.full:
                    f = i["full"] or {}
                    row += [str(f.get(k, 0)) for k in ("missing", "different", "orphans")]
                else:
                    row += [str(i["sampled"]), str(i["missing"]), str(i["different"])]
                    row += [f"{i['orphans']}/{i['orphans_checked']}"]
                table.add_row(*row, str(i["foreign"]))
            console.print(table)
            for i in t["indices"]:
                for e in i["examples"]:
                    extra = e.get("reason") or ", ".join(e.get("fields", []))
                    line = f"  {e['kind']:<9} {e['index']} {e['id']} {extra}"
                    console.print(line, markup=False)
            for note in t["notes"]:
                console.print(f"  {note}", markup=False, style="dim")
            for reason in t["reasons"]:
                console.print(f"  drift: {reason}", markup=False, style="red")
            if not t["drifted"]:
                console.print("  [green]clean[/]")
        r = data["repair"]
        if r is not None and r["dry_run"]:
            console.print(f"repair plan (dry run): {r['planned']} changes for {r['keys']} keys")
        elif r is not None:
            table = Table("indexed", "deleted", "newer write in flight", "already in sync")
            for column in ("owned elsewhere", "failed", "verified"):
                table.add_column(column)
            table.add_row(
                *(str(r[k]) for k in ("indexed", "deleted", "newer_write_in_flight")),
                *(str(r[k]) for k in ("already_in_sync", "other_tables", "failed", "verified")),
            )
            console.print(table)
        for step in report.repair.steps[:50] if report.repair else []:
            outcome = "" if step.outcome == "planned" else f" -> {step.outcome}"
            line = f"  {step.describe(dry_run=options.dry_run)}{outcome}"
            console.print(line, markup=False)
        console.print(f"seed {data['seed']} (--seed {data['seed']} repeats this sample)")

        if report.repair and report.repair.failed:
            console.print(
                f"[red]{report.repair.failed} documents could not be repaired[/]: "
                f"see {escape(str(failures_path))}"
            )

    emit(app, data, render)
    if report.repair and report.repair.failed:
        ctx.exit(ExitStatus.PARTIAL)
    if report.drifted:
        ctx.exit(ExitStatus.DIFFERS)


# --- template -----------------------------------------------------------------------------------


def template_options(func: F) -> F:
    for decorator in reversed(
        [
            click.option(
                "--name",
                default=None,
                help="Template name (default: [template] name, else ddb2es-single-shard).",
            ),
            click.option(
                "--replicas",
                type=click.IntRange(min=0),
                default=None,
                help="number_of_replicas (default: [template] replicas, else the cluster's).",
            ),
            click.option(
                "--priority",
                type=click.IntRange(min=0),
                default=None,
                help="Composable template priority (default: [template] priority, else 10).",
            ),
            click.option(
                "--numbers-as-double/--no-numbers-as-double",
                default=None,
                help="Map dynamically detected numbers to double (default: on).",
            ),
            click.option(
                "--legacy/--composable",
                "legacy",
                default=None,
                help="Force the template flavour (default: what the engine has).",
            ),
        ]
    ):
        func = decorator(func)
    return func


def _template_call(
    ctx: click.Context,
    action: str,
    json_output: bool,
    quiet: bool,
    *,
    name: str | None,
    replicas: int | None,
    priority: int | None,
    numbers_as_double: bool | None,
    legacy: bool | None,
    dry_run: bool = False,
) -> None:
    """apply, check and show share the options that define the template."""
    from ddb2es_cli.clients import make_search_client
    from ddb2es_cli.template import (
        Flavour,
        apply_template,
        check_template,
        flavour,
        mapping_type,
        render,
        template_spec,
    )

    app = _app(ctx, json_output, quiet)
    spec = template_spec(
        app.settings,
        name=name,
        replicas=replicas,
        priority=priority,
        numbers_as_double=numbers_as_double,
    )
    es, engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    kind: Flavour | None = None if legacy is None else ("legacy" if legacy else "composable")
    if action == "show":
        body = render(spec, kind or flavour(engine), mapping_type=mapping_type(engine))
        click.echo(json.dumps(body, indent=2))
        return
    if action == "apply":
        result = apply_template(es, engine, spec, dry_run=dry_run, kind=kind)
    else:
        result = check_template(es, engine, spec, kind=kind)

    def render_result(console: Console) -> None:
        console.print(f"{result.request}: {result.action}")
        for line in result.diff:
            console.print(f"  {line}", markup=False)
        for warning in result.warnings:
            console.print(f"[yellow]warning[/]: {warning}")
        if action == "apply" and dry_run and result.diff:
            console.print(json.dumps(result.body, indent=2), markup=False)

    emit(app, result.as_dict(), render_result)
    if not result.ok:
        ctx.exit(ExitStatus.DIFFERS)


@cli.group()
def template() -> None:
    """The single-shard index template (composable, or legacy on old engines).

    \b
    Example:
      ddb2es template check     # in CI: exit 3 and a diff when it is missing or differs
    """


@template.command("apply")
@template_options
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@output_options
@click.pass_context
def template_apply(ctx: click.Context, /, json_output: bool, quiet: bool, **template: Any) -> None:
    """Install or update the template; no write when it is already identical.

    \b
    Example:
      ddb2es template apply --replicas 1 --dry-run
    """
    _template_call(ctx, "apply", json_output, quiet, **template)


@template.command("check")
@template_options
@output_options
@click.pass_context
def template_check(ctx: click.Context, /, json_output: bool, quiet: bool, **template: Any) -> None:
    """Exit 0 when the installed template matches, 3 with a diff when missing or different.

    \b
    Example:
      ddb2es --es-url https://search.example.com --es-aws-sigv4 template check
    """
    _template_call(ctx, "check", json_output, quiet, **template)


@template.command("show")
@template_options
@output_options
@click.pass_context
def template_show(ctx: click.Context, /, json_output: bool, quiet: bool, **template: Any) -> None:
    """Print the exact template body for this engine.

    \b
    Example:
      ddb2es template show --legacy
    """
    _template_call(ctx, "show", json_output, quiet, **template)


# --- reload -------------------------------------------------------------------------------------


@cli.command()
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

    app = _app(ctx, json_output, quiet)
    is_rollback = bool(tables) and tables[0] == "rollback"
    selected = app.settings.select_tables(tables[1:] if is_rollback else tables, all_tables)
    ddb = make_dynamodb_client(app.settings.dynamodb)
    es, engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    segs = segments or default_segments()
    if is_rollback:
        if not (dry_run or yes or _confirm("Swap the aliases back to the previous generation?")):
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
    if not (yes or _confirm(f"Reload {len(plan.indices)} indices ({strategy})?")):
        raise click.UsageError("refusing to reload without --yes (not interactive)")
    bars = _Bars(enabled=not app.quiet and sys.stderr.isatty())
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


def _confirm(question: str) -> bool:
    """Ask only on a terminal; a non-interactive run without --yes is refused."""
    if not sys.stdin.isatty():
        return False
    return click.confirm(question, default=False, err=True)


# --- stream -------------------------------------------------------------------------------------


@cli.command()
@tables_argument
@click.option(
    "--from",
    "start",
    default="trim-horizon",
    show_default=True,
    help="Where shards without a checkpoint start: trim-horizon, latest or an ISO 8601 time.",
)
@click.option("--until-caught-up", is_flag=True, help="Stop when every shard has no more records.")
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint file (default: .ddb2es/stream-<tables>.json).",
)
@failures_option("ddb2es-stream-failures.ndjson", "records that kept failing")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@output_options
@click.pass_context
def stream(
    ctx: click.Context,
    tables: tuple[str, ...],
    all_tables: bool,
    start: str,
    until_caught_up: bool,
    state_file: Path | None,
    failures_path: Path,
    batch_size: int,
    json_output: bool,
    quiet: bool,
) -> None:
    """Follow the tables' DynamoDB Streams and apply them with the Lambda handler's code.

    Runs until Ctrl-C (state is saved; the next run continues from the checkpoints), or with
    --until-caught-up until every shard is read. Exit 4 when records kept failing.

    \b
    Example:
      ddb2es --config ddb2es.toml stream --all
      ddb2es stream orders-service --from 2026-11-26T03:00:00Z --until-caught-up
    """
    from ddb2es_cli.clients import make_dynamodb_client
    from ddb2es_cli.stream_runner import StreamOptions, run_stream

    app = _app(ctx, json_output, quiet)
    selected = app.settings.select_tables(tables, all_tables)
    ddb, es = _clients(app)
    streams = make_dynamodb_client(app.settings.dynamodb, "dynamodbstreams")
    options = StreamOptions(
        start=start,
        until_caught_up=until_caught_up,
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
        if summary.failures:
            console.print(f"[red]{summary.failures} records failed[/]: see {failures_path}")

    emit(app, data, render)
    if summary.failures:
        ctx.exit(ExitStatus.PARTIAL)


# --- entry point --------------------------------------------------------------------------------


def main() -> None:
    # `kill` (SIGTERM) stops a run like Ctrl-C does: state saved, index settings restored.
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="ddb2es")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
