"""What an operator sees: progress that starts where a resumed run is, errors on a line of their
own, status lines while following streams, the reload's wait said out loud, help that names the
files as they are."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from ddb2es_cli.cli import cli
from ddb2es_cli.errors import ConnectionFailed, ExitStatus
from ddb2es_cli.reindex import ReindexOptions, run_reindex, state_path_for
from ddb2es_cli.reload import type_counts
from ddb2es_cli.sink import BulkOptions
from tests.conftest import Stack


def _items(n: int, kind: str = "o") -> list[dict[str, Any]]:
    return [{"pk": {"S": f"k-{i:05d}"}, "TYPE": {"S": kind}, "n": {"N": str(i)}} for i in range(n)]


class _Recorder:
    """A Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.started: dict[str, tuple[int, int]] = {}
        self.advanced: dict[str, int] = {}

    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        self.started[table] = (estimated_items, done)

    def advance(self, table: str, items: int) -> None:
        self.advanced[table] = self.advanced.get(table, 0) + items


class _DyingSearch:
    """The search client, whose bulk endpoint goes away after two requests."""

    def __init__(self, client: Any) -> None:
        self._client, self.calls = client, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > 2:
            raise OSConnectionError("N/A", "Connection refused", None)
        return self._client.bulk(*args, **kwargs)


def test_a_resumed_run_starts_its_progress_at_what_is_done(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("resumebar")
    stack.put_items(table, _items(300))
    settings = stack.settings(table)

    def options(**more: Any) -> ReindexOptions:
        return ReindexOptions(
            segments=2,
            page_limit=20,
            failures_path=tmp_path / "f.ndjson",
            state_path=tmp_path / "state.json",
            bulk=BulkOptions(chunk_size=20, retry_for=0.2, initial_backoff=0.01, max_backoff=0.05),
            **more,
        )

    with pytest.raises(ConnectionFailed):
        run_reindex(stack.ddb, _DyingSearch(stack.es), settings, list(settings.tables), options())
    resumed = _Recorder()
    run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(resume=True), resumed)
    estimated, done = resumed.started[table]
    assert estimated == 300
    assert 0 < done < 300  # the interrupted run checkpointed some pages, not all
    assert done + resumed.advanced[table] == 300  # and the bar ends at 100%


def _run_with_tty_stderr(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (so progress bars draw); returns (code, stderr)."""
    controller, terminal = pty.openpty()
    # A new pty is 0x0: tqdm would draw bars of width 0. Give it a real terminal's size.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            continue  # once the child is gone and all is read, the read below fails (EIO)
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_an_error_gets_a_line_of_its_own_not_the_end_of_a_bar(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("barerror")
    stack.put_items(table, _items(40))
    config = stack.config_file(tmp_path, table)
    args = [sys.executable, "-m", "ddb2es_cli", "--config", str(config), "reindex", table]
    code, stderr = _run_with_tty_stderr(
        [*args, "--resume", "--state-file", str(tmp_path / "none.json")], stack.cli_env(), tmp_path
    )
    assert code == ExitStatus.USAGE, stderr
    lines = re.split(r"[\r\n]+", stderr)
    error = [line for line in lines if "nothing to resume" in line]
    assert error and all(line.startswith("Error:") for line in error), stderr


def test_seed_draws_a_progress_bar(dynamodb_url: str, tmp_path: Path) -> None:
    env = {
        "DDB2ES_DYNAMODB_ENDPOINT": dynamodb_url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    prefix = f"t{os.getpid()}{int(time.time() * 1000) % 100000}-"
    args = [sys.executable, "-m", "ddb2es_cli", "local", "seed", "--items", "90"]
    code, stderr = _run_with_tty_stderr([*args, "--prefix", prefix], env, tmp_path)
    assert code == 0, stderr
    assert re.search(r"seed: 100%.*90(\.0)?/90", stderr), stderr


def test_state_file_names_are_what_help_says(tmp_path: Path) -> None:
    help_text = " ".join(CliRunner().invoke(cli, ["reindex", "--help"]).output.split())
    assert "reindex-<hash>.json" in help_text
    assert "12 hex digits of the SHA-256 of the sorted table names, comma-joined" in help_text
    stream_help = " ".join(CliRunner().invoke(cli, ["stream", "--help"]).output.split())
    assert "stream-<hash>.json" in stream_help
    from ddb2es_cli.config import TableSettings

    tables = [TableSettings(name="b-table"), TableSettings(name="a-table")]
    digest = hashlib.sha256(b"a-table,b-table").hexdigest()[:12]
    assert state_path_for(tables).name == f"reindex-{digest}.json"


def test_reload_takes_max_rcu_and_page_size_and_says_why_it_waits(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = stack.create_table("reloadopts")
    stack.put_items(table, _items(30))
    config = stack.config_file(tmp_path, table)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "reload", table, "--yes", "--max-rcu", "50", "--page-size", "7"],
        env=stack.cli_env(),
    )
    assert result.exit_code == 0, result.output
    assert "waiting 10 s for the stream handler to see the rebuild marker" in result.output
    assert stack.es.count(index=f"{stack.prefix}o")["count"] == 30


def test_type_counts_scan_in_pages_of_the_given_size(stack: Stack) -> None:
    table = stack.create_table("typecounts")
    stack.put_items(table, _items(30))
    settings = stack.settings(table)
    pages = []
    real_scan = stack.ddb.scan

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(stack.ddb, name)

        def scan(self, **kwargs: Any) -> Any:
            pages.append(kwargs.get("Limit"))
            return real_scan(**kwargs)

    counts, _invalid, _rcu = type_counts(
        Counting(), settings, list(settings.tables), 1, max_rcu=100, page_limit=7
    )
    assert counts[f"{stack.prefix}o"] == 30
    assert pages and set(pages) == {7}


def test_stream_follow_prints_status_lines_and_the_summary_on_ctrl_c(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("follow", stream=True)
    stack.put_items(table, _items(25))
    config = stack.config_file(tmp_path, table)
    args = [sys.executable, "-m", "ddb2es_cli", "--config", str(config), "stream", table]
    proc = subprocess.Popen(
        [*args, "--status-every", "0.2", "--failures", str(tmp_path / "f.ndjson")],
        env={**os.environ, **stack.cli_env()},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"stream: \d+ records applied in the last 0.2 s \((\d+) in all\)", line)
        if found and int(found.group(1)) == 25:
            break
    else:
        pytest.fail(f"no status line counted 25 records: {seen}")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == ExitStatus.INTERRUPTED, stderr
    assert table in stdout and "25" in stdout  # the summary table
    assert "checkpoints are saved" in stderr
    assert "Traceback" not in stderr


def test_doctor_names_an_endpoint_set_through_aws_variables(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.cli_env(), "DDB2ES_DYNAMODB_ENDPOINT": ""}
    env["AWS_ENDPOINT_URL_DYNAMODB"] = stack.dynamodb_url
    result = CliRunner().invoke(cli, ["--json", "doctor", "--state-dir", str(tmp_path)], env=env)
    import json

    check = next(c for c in json.loads(result.output)["checks"] if c["name"] == "dynamodb")
    assert check["ok"] and check["detail"] == f"{stack.dynamodb_url} answers", check
