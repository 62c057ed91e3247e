"""State, checkpoint, failures and report files: private (0600 in a 0700 `.ddb2es`), written
atomically with a unique temp name, and a damaged one is one line naming it and what to do."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, RunState, write_json_atomic
from ddb2es_cli.config import TableSettings
from ddb2es_cli.errors import ConfigError, ExitStatus
from ddb2es_cli.reindex import state_path_for
from ddb2es_cli.sink import Failure, FailureLog
from tests.conftest import Stack


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask, as on many shared hosts: modes must not depend on it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_state_files_are_private(tmp_path: Path, open_umask: None) -> None:
    state = RunState(tmp_path / ".ddb2es" / "reindex-abc.json")
    state.start_table("orders", 2)
    state.checkpoint("orders", 0, {"pk": {"S": "customer-key"}})
    state.save()
    assert mode(tmp_path / ".ddb2es") == 0o700
    assert mode(state.path) == 0o600
    assert [p.name for p in (tmp_path / ".ddb2es").iterdir()] == ["reindex-abc.json"]


def test_an_existing_state_folder_is_tightened(tmp_path: Path, open_umask: None) -> None:
    folder = tmp_path / ".ddb2es"
    folder.mkdir(mode=0o755)
    write_json_atomic(folder / "stream-1.json", {"streams": {}})
    assert mode(folder) == 0o700


def test_failures_file_is_private(tmp_path: Path, open_umask: None) -> None:
    log = FailureLog(tmp_path / "failures.ndjson")
    log.write(Failure("orders", {"pk": "secret-customer"}, "idx", "1", "mapper_parsing_exception"))
    log.close()
    assert mode(tmp_path / "failures.ndjson") == 0o600


def test_two_writers_never_collide_on_the_temp_file(tmp_path: Path) -> None:
    """Two processes (here threads) saving the same state: each rename finds its own temp."""
    path = tmp_path / ".ddb2es" / "reindex-shared.json"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(300):
                write_json_atomic(path, {"writer": n, "i": i, "pad": "x" * 2000})
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert RunState.load(path) is not None
    assert sorted(p.name for p in path.parent.iterdir()) == ["reindex-shared.json"]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"tables": {', "is not valid JSON"),
        ('{"tables": {"orders": {"segments": 3}}}', "is not a ddb2es state file"),
        ('{"tables": {"orders": {"total_segments": "x", "segments": {}}}}', "is not a ddb2es"),
        ("[1, 2]", "is not a ddb2es state file"),
    ],
)
def test_a_damaged_state_file_is_one_line_naming_it(tmp_path: Path, text: str, what: str) -> None:
    path = tmp_path / "reindex-1.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        RunState.load(path)
    message = str(raised.value)
    assert f"state file {path} {what}" in message
    assert "delete it" in message and "\n" not in message


def test_resume_with_a_damaged_state_file(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("orders")
    stack.config_file(tmp_path, table)
    state = tmp_path / state_path_for([TableSettings(table)], DEFAULT_STATE_DIR)
    state.parent.mkdir()
    state.write_text(json.dumps({"tables": {table: {"segments": {"0": 5}}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", "reindex", table, "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **stack.cli_env()},
    )
    assert proc.returncode == ExitStatus.USAGE, proc.stderr
    assert "Traceback" not in proc.stderr
    relative = state.relative_to(tmp_path)
    assert proc.stderr.strip().splitlines() == [
        f"Error: state file {relative} is not a ddb2es state file: move it away or delete it "
        "(the run then starts from the beginning), or restore a good copy"
    ]


def test_drift_report_is_private(stack: Stack, tmp_path: Path, open_umask: None) -> None:
    table = stack.create_table("orders")
    stack.config_file(tmp_path, table)
    proc = subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", "drift", table, "--report", "report.json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **stack.cli_env()},
    )
    assert proc.returncode in (0, 3), proc.stderr
    assert mode(tmp_path / "report.json") == 0o600
