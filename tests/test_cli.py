"""The command line as a whole: help, documentation, usage errors and exit codes."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.errors import ExitStatus

README = (Path(__file__).parent.parent / "README.md").read_text()


def all_commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        full = f"{prefix}{name}"
        found.append((full, command))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, full + " "))
    return found


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in cli.commands:
        assert name in result.output


def test_every_command_has_help_with_an_example() -> None:
    for name, _command in all_commands():
        result = CliRunner().invoke(cli, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"`ddb2es {name} --help` has no example"


def test_every_command_is_in_the_readme() -> None:
    for name, _ in all_commands():
        words = name.split()
        if len(words) == 1:
            assert f"ddb2es {name}" in README, f"README does not mention `ddb2es {name}`"
        else:
            group, sub = words
            assert f"ddb2es {group}" in README and sub in README, f"`{name}` not in README"


def test_usage_errors_exit_2_with_one_line() -> None:
    result = CliRunner().invoke(cli, ["reindex"])
    assert result.exit_code == ExitStatus.USAGE
    assert "name at least one table, or use --all" in result.output
    result = CliRunner().invoke(cli, ["reindex", "a-table", "--all"])
    assert result.exit_code == ExitStatus.USAGE
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == ExitStatus.USAGE


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
