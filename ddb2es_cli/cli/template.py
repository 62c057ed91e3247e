"""`ddb2es template apply|check|show`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ddb2es_cli.cli.common import app_of, emit, output_options
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


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

    app = app_of(ctx, json_output, quiet)
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


@click.group()
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
