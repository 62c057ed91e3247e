"""A click group that imports a command's module only when that command is used.

click's documented lazy-loading pattern: the group knows each command's name and import path,
`get_command` imports on demand, `list_commands` returns the names. `ddb2es --help` lists the
commands from their summaries (the first paragraph of each command's help, kept next to the
import path; tests/test_cli.py checks they match), so it imports no command module: importing
them all, with what they import, cost about 60 of the 155 ms of CPU `--help` took.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from gettext import gettext as _
from typing import Any

import click


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives, and what `ddb2es --help` says about it."""

    import_path: str  # "package.module:attribute"
    summary: str  # the first paragraph of the command's help


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, LazyCommand] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.lazy_commands:
            # Not a name we know: click's answer ("No such command", with "Did you mean ...?"
            # since click 8.4) looks at self.commands, so let it hold every command first.
            for name in self.lazy_commands:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def _load(self, name: str) -> click.Command:
        module_name, _, attribute = self.lazy_commands[name].import_path.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[name].import_path} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, with a stand-in made of its summary for a command not yet imported
        (`get_short_help_str` shortens it exactly as it would the command's own help)."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = click.Command(name, help=self.lazy_commands[name].summary)
            if not command.hidden:
                rows.append((name, command))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section(_("Commands")):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])
