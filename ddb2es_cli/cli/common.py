"""What every command shares: the context object, the shared options, output, clients,
progress bars and the confirmation prompt."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ddb2es_cli.errors import Cancelled
from ddb2es_cli.redaction import RedactingFormatter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable

    from ddb2es_cli.clients import Engine
    from ddb2es_cli.config import Settings


# rich costs about 50 ms to import: only output that draws a table or markup loads it.
def Table(*columns: Any, **options: Any) -> RichTable:
    """rich's Table, imported on first use."""
    from rich.table import Table as RichTable

    return RichTable(*columns, **options)


def escape(markup: str) -> str:
    """rich's markup escape, imported on first use."""
    from rich.markup import escape as rich_escape

    return rich_escape(markup)


F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    """What the global options gave; settings are built on first use so `--help` never fails."""

    config_path: Path | None
    overrides: dict[str, Any]
    json_output: bool = False
    quiet: bool = False
    _settings: Settings | None = field(default=None, repr=False)
    _boto_session: Any = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            # config (with transform) costs about 30 ms of CPU: `--help` never needs it.
            from ddb2es_cli.config import load_settings

            self._settings = load_settings(self.config_path, self.overrides)
        return self._settings

    def boto_session(self) -> Any:
        """The command's one boto3 session, shared by its DynamoDB and Streams clients: a second
        session would load botocore's data files again (about 0.2 s of CPU)."""
        if self._boto_session is None:
            from ddb2es_cli.clients import make_boto_session

            self._boto_session = make_boto_session(self.settings.dynamodb)
        return self._boto_session

    def override(self, **changes: Any) -> None:
        """Settings a command's own option changes (`reindex --s3-endpoint`), so that what it
        hands on (to spawned workers, say) carries them."""
        self._settings = replace(self.settings, **changes)


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

load_segments_option = click.option(
    "--segments",
    type=click.IntRange(min=1),
    default=None,
    help="Parallel scan segments, one reader thread each (default: 2 per core, at least 2).",
)


max_rcu_option = click.option(
    "--max-rcu",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Cap read capacity consumed per second by the scans.",
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


JSON_ERRORS = "ddb2es.json_errors"  # ctx.meta key: print errors as JSON
# The client libraries log every request, and failed ones with tracebacks: our own messages say
# what went wrong in one line; --verbose shows theirs.
NOISY_LOGGERS = ("opensearch", "elasticsearch", "elastic_transport", "urllib3", "botocore", "boto3")
DEFAULT_FORMAT = "%(levelname)s: %(message)s"
VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (click's test runner swaps it per run)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(verbose: bool) -> None:
    """Warnings only by default; --verbose: everything, with times. Secrets are always masked."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _StderrHandler)]
    if not root.handlers:  # like basicConfig: a host that set up logging keeps its own
        ours = [_StderrHandler()]
        root.addHandler(ours[0])
    for handler in ours:
        handler.setFormatter(RedactingFormatter(VERBOSE_FORMAT if verbose else DEFAULT_FORMAT))
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.CRITICAL)


def _verbose_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        setup_logging(verbose=True)


def output_options(func: F) -> F:
    """--json, --quiet and --verbose on every command as well as globally."""
    func = click.option(
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_verbose_callback,
        help="Logs, and every HTTP request (secrets masked).",
    )(func)
    func = click.option("--quiet", "quiet", is_flag=True, help="No progress bars or logs.")(func)
    func = click.option(
        "--json", "json_output", is_flag=True, help="Print the result as one JSON document."
    )(func)
    return func


def app_of(ctx: click.Context, json_output: bool = False, quiet: bool = False) -> AppContext:
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


def print_failures(console: Console, count: int, what: str, path: Path | None) -> None:
    """The one red line that points at the failures file (escaped: paths may hold brackets)."""
    if count:
        console.print(f"[red]{count} {what}[/]: see {escape(str(path))}")


def emit(app: AppContext, data: Any, render: Callable[[Console], None]) -> None:
    """JSON on stdout with --json, else the human rendering."""
    if app.json_output:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        # Piped output keeps whole names (rich would fold tables to 80 columns).
        width = None if sys.stdout.isatty() else 200
        from rich.console import Console

        render(Console(highlight=False, width=width))


def make_clients(app: AppContext) -> tuple[Any, Any]:
    """The DynamoDB and the search client (see connect)."""
    ddb, es, _engine = connect(app)
    return ddb, es


def connect(app: AppContext) -> tuple[Any, Any, Engine]:
    """The DynamoDB client, the search client and the engine, the search side first.

    The engine's `GET /` needs only urllib3, so it goes out before boto3 and botocore's client
    (about 0.35 s of CPU) are loaded: the first request of a command comes that much sooner.
    When the search side fails, the DynamoDB client is still built before its error is raised,
    so that a DynamoDB settings error (region, profile, endpoint) is the one reported, as when
    DynamoDB came first.
    """
    from ddb2es_cli.clients import make_search_client

    try:
        es, engine = make_search_client(app.settings.search, app.settings.dynamodb.region)
    except Exception:
        dynamodb_client(app)
        raise
    return dynamodb_client(app), es, engine


def dynamodb_client(app: AppContext, service: str = "dynamodb") -> Any:
    """A `dynamodb` or `dynamodbstreams` client on the command's one boto3 session."""
    from ddb2es_cli.clients import make_dynamodb_client

    return make_dynamodb_client(app.settings.dynamodb, service, session=app.boto_session())


class Bars:
    """One tqdm bar per table on stderr; none when stderr is not a terminal or with --quiet."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bars[table] = tqdm(
            total=estimated_items or None,
            initial=done,
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


def confirm(question: str) -> bool:
    """Ask only on a terminal (False when not interactive: the caller refuses without --yes);
    a "no" answer cancels the command."""
    if not sys.stdin.isatty():
        return False
    if not click.confirm(question, default=False, err=True):
        raise Cancelled("cancelled: nothing was changed")
    return True
