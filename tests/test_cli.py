"""The command line as a whole: help, documentation, usage errors and exit codes."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from ddb2es_cli.cli import COMMANDS, cli
from ddb2es_cli.errors import ExitStatus
from tests.conftest import Stack

README = (Path(__file__).parent.parent / "README.md").read_text()


def all_commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    """Every command, nested ones too (list_commands/get_command: the top level loads lazily)."""
    found = []
    with click.Context(group) as ctx:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, f"{prefix}{name} is listed but does not load"
            full = f"{prefix}{name}"
            found.append((full, command))
            if isinstance(command, click.Group):
                found.extend(all_commands(command, full + " "))
    return found


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    with click.Context(cli) as ctx:
        names = cli.list_commands(ctx)
    assert len(names) == len(COMMANDS) >= 11
    for name in names:
        assert name in result.output


def test_the_help_listing_says_what_each_command_says() -> None:
    """`ddb2es --help` lists the commands from COMMANDS without importing them: each summary
    there is the first paragraph of the command's own help, shortened alike at any width."""
    with click.Context(cli) as ctx:
        for name, lazy in COMMANDS.items():
            command = cli.get_command(ctx, name)
            assert command is not None and command.help, name
            assert not command.hidden and not command.short_help and not command.deprecated
            assert lazy.summary.split() == command.help.partition("\n\n")[0].split(), name
            stand_in = click.Command(name, help=lazy.summary)
            for limit in (20, 45, 60, 80, 200):
                assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_every_command_has_help_with_an_example() -> None:
    for name, _command in all_commands():
        result = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"`ddb2es {name} --help` has no example"


def test_every_command_is_in_the_readme() -> None:
    """Each visible command, `ddb2es <group> <subcommand>` word for word (a README that only
    says `template apply|check|show` does not tell a reader how to type `template check`)."""
    missing = [
        f"ddb2es {name}"
        for name, command in all_commands()
        if not command.hidden and f"ddb2es {name}" not in README
    ]
    assert missing == [], f"README does not mention {missing}"


def test_usage_errors_exit_2_with_one_line() -> None:
    result = CliRunner().invoke(cli, ["reindex"])
    assert result.exit_code == ExitStatus.USAGE
    assert "name at least one table, or use --all" in result.output
    result = CliRunner().invoke(cli, ["reindex", "a-table", "--all"])
    assert result.exit_code == ExitStatus.USAGE
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == ExitStatus.USAGE


def test_a_mistyped_command_gets_the_same_answer_as_before_lazy_loading() -> None:
    """click (8.4 and later) suggests the closest command names from the group's commands: the
    lazy group loads them all for a name it does not know."""
    result = CliRunner().invoke(cli, ["reindx"])
    assert result.exit_code == ExitStatus.USAGE
    assert "No such command 'reindx'." in result.output
    if hasattr(click.exceptions, "NoSuchCommand"):
        assert "Did you mean 'reindex'?" in result.output


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "reindex", "t"])
    assert result.exit_code == ExitStatus.USAGE
    assert result.output.strip().splitlines() == [
        f"Error: config file not found: {tmp_path}/nope.toml"
    ]


def test_seed_refuses_to_write_to_aws() -> None:
    result = CliRunner().invoke(cli, ["local", "seed"], env={"DDB2ES_DYNAMODB_ENDPOINT": ""})
    assert result.exit_code == ExitStatus.USAGE
    assert "loopback endpoint" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "ddb2es" in result.output


def test_only_the_cli_package_imports_the_terminal_libraries() -> None:
    """The core is a library (and the Lambda handler's code): click, rich and tqdm stay out."""
    import ast

    package = Path(__file__).parent.parent / "ddb2es_cli"
    core = sorted(package.glob("*.py"))
    assert len(core) > 10
    for path in core:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in ("click", "rich", "tqdm"), f"{path.name}: {name}"


# --- issue 11: logs, --verbose anywhere, "cancelled", JSON errors ------------------------------


def _run(args: list[str], cwd: Path, env: dict[str, str], **kwargs: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **env},
        **kwargs,
    )


def test_no_log_lines_by_default_and_verbose_after_the_command(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("orders")
    stack.config_file(tmp_path, table)
    quiet = _run(["drift", table], tmp_path, stack.cli_env())
    assert quiet.returncode in (0, 3), quiet.stderr
    assert " INFO " not in quiet.stderr and "INFO" not in quiet.stderr, quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr
    verbose = _run(["drift", table, "--verbose"], tmp_path, stack.cli_env())
    assert verbose.returncode == quiet.returncode, verbose.stderr
    assert " DEBUG botocore" in verbose.stderr and " INFO ddb2es" in verbose.stderr
    before = _run(["--verbose", "drift", table], tmp_path, stack.cli_env())
    assert " INFO ddb2es" in before.stderr


def test_answering_no_to_a_confirmation_says_cancelled(tmp_path: Path) -> None:
    """On a terminal, "n" cancels (exit 1): it is not a refusal for want of --yes."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ddb2es_cli", "drift", "orders", "--repair"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "DDB2ES_DYNAMODB_ENDPOINT": "http://127.0.0.1:1"},
        )
        os.write(controller, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert proc.returncode == ExitStatus.ERROR, err
    assert "Repair documents in the live indices?" in err
    assert err.strip().endswith("\nError: cancelled: nothing was changed") or err.strip().endswith(
        ": Error: cancelled: nothing was changed"
    ), err
    assert "not interactive" not in err and out == ""


def test_without_a_terminal_and_without_yes_it_refuses(tmp_path: Path) -> None:
    proc = _run(["drift", "orders", "--repair"], tmp_path, {}, stdin=subprocess.DEVNULL)
    assert proc.returncode == ExitStatus.USAGE
    assert "refusing to repair without --yes (not interactive)" in proc.stderr


def test_json_errors_are_json_on_stdout() -> None:
    result = CliRunner().invoke(cli, ["--json", "reindex"])
    assert result.exit_code == ExitStatus.USAGE
    assert json.loads(result.stdout) == {
        "error": "name at least one table, or use --all",
        "exit_code": 2,
    }
    assert result.stderr == ""
    result = CliRunner().invoke(cli, ["reindex", "ab", "--json"])
    assert json.loads(result.stdout)["exit_code"] == 2
