"""Command line: parse options, build settings and clients, call one core function, render.

Only this package imports click and rich. Results go to stdout (a table, or JSON with --json);
logs and progress go to stderr. Each command lives in a module of its own; `common` holds what
they share.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from ddb2es_cli import __version__
from ddb2es_cli.cli.common import JSON_ERRORS, AppContext, setup_logging
from ddb2es_cli.cli.lazy import LazyCommand, LazyGroup
from ddb2es_cli.errors import Ddb2esError, ExitStatus
from ddb2es_cli.redaction import redact

if TYPE_CHECKING:
    from botocore.exceptions import BotoCoreError, ClientError

    from ddb2es_cli.config import DynamoSettings, SearchSettings

# Each command is imported when it is used, so `ddb2es --help` imports none of them; the summary
# is the first paragraph of the command's help (tests/test_cli.py checks that they match).
COMMANDS = {
    "local": LazyCommand(
        "ddb2es_cli.cli.local:local",
        "The embedded local stack: DynamoDB Local and an OpenSearch-compatible server.",
    ),
    "doctor": LazyCommand(
        "ddb2es_cli.cli.doctor:doctor",
        "Check both endpoints: engine, version, client, auth mode, tables, the template.",
    ),
    "reindex": LazyCommand(
        "ddb2es_cli.cli.reindex:reindex",
        "Rebuild the documents of tables into the live indices (upsert; deletes nothing).",
    ),
    "drift": LazyCommand(
        "ddb2es_cli.cli.drift:drift",
        "Check that the indices are still true to the tables; --repair makes them so.",
    ),
    "template": LazyCommand(
        "ddb2es_cli.cli.template:template",
        "The single-shard index template (composable, or legacy on old engines).",
    ),
    "reload": LazyCommand(
        "ddb2es_cli.cli.reload:reload",
        "Rebuild every index of the tables (`reload TABLE...`, see `reload run --help`), or "
        "swap the aliases back (`reload rollback TABLE...`).",
    ),
    "stream": LazyCommand(
        "ddb2es_cli.cli.stream:stream",
        "Follow the tables' DynamoDB Streams and apply them with the Lambda handler's code.",
    ),
    "state": LazyCommand(
        "ddb2es_cli.cli.scale:state",
        "The DynamoDB table that coordinates runs spread over many workers.",
    ),
    "status": LazyCommand(
        "ddb2es_cli.cli.scale:status",
        "Where runs stand: units done/claimed/free, items, rate, ETA, live workers, failures.",
    ),
    "export": LazyCommand(
        "ddb2es_cli.cli.export:export",
        "DynamoDB table exports to S3 (no read capacity consumed).",
    ),
    "apply-export": LazyCommand(
        "ddb2es_cli.cli.export:apply_export",
        "Apply incremental exports (in time order, a gapless chain) like stream records.",
    ),
}


class Ddb2esGroup(LazyGroup):
    """The one place where core exceptions become a one-line message and an exit code.

    With `--json` (anywhere on the line) the error is `{"error": ..., "exit_code": ...}` on
    stdout instead, so a script reading stdout always gets JSON.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words = args[: args.index("--")] if "--" in args else args
        ctx.meta[JSON_ERRORS] = "--json" in words
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Ddb2esError as exc:
            fail(ctx, str(exc), exc.exit_status)
        except click.ClickException as exc:
            if not ctx.meta.get(JSON_ERRORS):
                raise
            fail(ctx, exc.format_message(), ExitStatus(exc.exit_code))
        except (KeyboardInterrupt, click.Abort):
            fail(ctx, "interrupted", ExitStatus.INTERRUPTED)
        except Exception as exc:
            if isinstance(exc, _search_errors()):
                # A search call no core function wrapped (the control index, a template).
                from ddb2es_cli.clients import search_error

                error = search_error(exc, _search_settings(ctx))
                fail(ctx, str(error), error.exit_status)
            if not isinstance(exc, _aws_errors()):
                raise
            # A DynamoDB call no core function wrapped: still one line naming the endpoint.
            from ddb2es_cli.clients import aws_error

            aws = cast("BotoCoreError | ClientError", exc)
            error = aws_error(aws, _dynamodb_settings(ctx))
            fail(ctx, str(error), error.exit_status)


def _aws_errors() -> tuple[type[Exception], ...]:
    """botocore's error classes, if botocore was imported (no botocore, no botocore error):
    `--help` and commands that never reach DynamoDB skip its import."""
    module = sys.modules.get("botocore.exceptions")
    if module is None:
        return ()
    return (module.BotoCoreError, module.ClientError)


def _search_errors() -> tuple[type[Exception], ...]:
    if not any(m in sys.modules for m in ("opensearchpy", "elasticsearch", "elastic_transport")):
        return ()
    from ddb2es_cli.clients import search_library_errors

    return search_library_errors()


def _search_settings(ctx: click.Context) -> SearchSettings | None:
    app = ctx.find_object(AppContext)
    try:
        return app.settings.search if app is not None else None
    except Ddb2esError:
        return None


def fail(ctx: click.Context, message: str, status: ExitStatus) -> None:
    """Print the error (secrets masked) and exit with its status."""
    message = redact(" ".join(message.split()))  # one line, whatever the message held
    if ctx.meta.get(JSON_ERRORS):
        click.echo(json.dumps({"error": message, "exit_code": int(status)}))
    else:
        click.echo(f"Error: {message}", err=True)
    ctx.exit(status)


def _dynamodb_settings(ctx: click.Context) -> DynamoSettings | None:
    app = ctx.find_object(AppContext)
    try:
        return app.settings.dynamodb if app is not None else None
    except Ddb2esError:
        return None


@click.group(
    cls=Ddb2esGroup,
    lazy_commands=COMMANDS,
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
    envvar="DDB2ES_ES_AWS_SERVICE",
    default=None,
    help="SigV4 service: es (domains) or aoss (Serverless).",
)
@click.option(
    "--es-ca-certs", type=click.Path(exists=True, dir_okay=False), help="CA bundle for TLS."
)
@click.option(
    "--es-verify-certs/--no-es-verify-certs",
    envvar="DDB2ES_ES_VERIFY_CERTS",
    default=None,
    help="Verify TLS certificates (default: on).",
)
@click.option("--json", "json_output", is_flag=True, help="Print the result as one JSON document.")
@click.option("--quiet", is_flag=True, help="No progress bars or logs.")
@click.option(
    "--verbose",
    is_flag=True,
    help="Logs: ours, and every HTTP request (secrets masked). Also after the command name.",
)
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
    setup_logging(verbose)
    ctx.obj = AppContext(config_path, overrides, json_output, quiet)


def main() -> None:
    # `kill` (SIGTERM) stops a run like Ctrl-C does: state saved, index settings restored.
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="ddb2es")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
