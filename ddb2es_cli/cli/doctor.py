"""`ddb2es doctor`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ddb2es_cli.cli.common import Table, app_of, emit, output_options
from ddb2es_cli.errors import ExitStatus

if TYPE_CHECKING:
    from rich.console import Console


@click.command()
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
    """Check both endpoints: engine, version, client, auth mode, tables, the template.

    Exits 1 when any check fails.

    \b
    Example:
      ddb2es --es-url https://search.example.com --es-aws-sigv4 doctor
    """
    from ddb2es_cli.doctor import run_doctor

    app = app_of(ctx, json_output, quiet)
    report = run_doctor(app.settings, state_dir, fix)

    def render(console: Console) -> None:
        table = Table("check", "", "detail")
        for check in report.checks:
            status = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
            if check.ok and check.warning:
                status = "[yellow]warn[/]"
            table.add_row(check.name, status, check.detail)
        console.print(table)

    emit(app, report.as_dict(), render)
    if not report.ok:
        sys.exit(ExitStatus.ERROR)
