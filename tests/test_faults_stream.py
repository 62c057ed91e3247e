"""Real faults during `ddb2es stream` runs: the runner killed -9 at random moments, the search
server and DynamoDB Local restarted under it. Every run ends with the index exactly equal to the
table (`drift --full` exit 0)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ddb2es_cli import local
from ddb2es_cli.cli import cli
from tests.conftest import Stack, _stack, wait_for
from tests.servers import free_port, start_elasticsearch


def random_writes(stack: Stack, table: str, rng: random.Random, count: int) -> None:
    """Puts, updates that change the TYPE, and deletes over a small key space."""
    for n in range(count):
        key = {"pk": {"S": f"k{rng.randrange(40)}"}}
        roll = rng.random()
        if roll < 0.55:
            item = {**key, "TYPE": {"S": rng.choice(["Order", "Invoice"])}, "n": {"N": str(n)}}
            stack.ddb.put_item(TableName=table, Item=item)
        elif roll < 0.8:
            stack.ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #t = :t, n = :n",
                ExpressionAttributeNames={"#t": "TYPE"},
                ExpressionAttributeValues={":t": {"S": "Refund"}, ":n": {"N": str(n)}},
            )
        else:
            stack.ddb.delete_item(TableName=table, Key=key)


class Runner:
    """`ddb2es stream` as a real process, as an operator runs it."""

    def __init__(self, stack: Stack, tmp_path: Path, table: str) -> None:
        self.stack, self.table = stack, table
        self.config = stack.config_file(tmp_path, table)
        self.state = tmp_path / "stream-state.json"
        self.failures = tmp_path / "stream-failures.ndjson"

    def args(self, *extra: str) -> list[str]:
        return [
            *("--config", str(self.config), "--quiet", "stream", self.table),
            *("--state-file", str(self.state), "--failures", str(self.failures)),
            *extra,
        ]

    def start(self, *extra: str) -> subprocess.Popen[str]:
        env = {**os.environ, **self.stack.cli_env()}
        command = [sys.executable, "-m", "ddb2es_cli", *self.args(*extra)]
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def checkpoint_stamp(self) -> int:
        return self.state.stat().st_mtime_ns if self.state.exists() else 0

    def catch_up(self) -> None:
        result = CliRunner().invoke(cli, self.args("--until-caught-up"), env=self.stack.cli_env())
        assert result.exit_code == 0, result.output
        assert not self.failures.exists()

    def assert_exact(self) -> None:
        result = CliRunner().invoke(
            cli,
            ["--config", str(self.config), "drift", self.table, "--full", "--quiet"],
            env=self.stack.cli_env(),
        )
        assert result.exit_code == 0, result.output


def test_stream_runner_killed_at_random_moments_resumes_exactly(
    stack: Stack, tmp_path: Path
) -> None:
    seed = int(os.environ.get("DDB2ES_TEST_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    table = stack.create_table("killed", stream=True)
    runner = Runner(stack, tmp_path, table)
    writer = threading.Thread(target=random_writes, args=(stack, table, rng, 400))
    writer.start()
    try:
        for _ in range(3):
            before = runner.checkpoint_stamp()
            proc = runner.start("--batch-size", "7")
            wait_for(
                lambda before=before, proc=proc: (
                    runner.checkpoint_stamp() != before or proc.poll() is not None
                ),
                f"a checkpoint (seed {seed})",
            )
            time.sleep(rng.uniform(0, 0.3))  # a random moment after it, not a wait for a result
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL, (seed, proc.communicate())
    finally:
        writer.join()
    runner.catch_up()
    runner.assert_exact()


@pytest.fixture
def own_noida(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = {"port": free_port(), "dir": tmp_path / "noida-data"}
    server["proc"] = start_elasticsearch(server["port"], tmp_path, server["dir"])
    try:
        yield server
    finally:
        local.stop(server["proc"])


def test_stream_runner_waits_out_a_search_server_restart(
    dynamodb_url: str, own_noida: dict[str, Any], tmp_path: Path
) -> None:
    """noida-db keeps its data across a clean stop (not across kill -9), so SIGTERM it."""
    stacks = _stack(dynamodb_url, own_noida["proc"].url)
    stack = next(stacks)
    try:
        table = stack.create_table("search-restart", stream=True)
        runner = Runner(stack, tmp_path, table)
        rng = random.Random(11)
        random_writes(stack, table, rng, 150)
        proc = runner.start("--batch-size", "5")
        wait_for(lambda: runner.checkpoint_stamp() != 0, "a first checkpoint")
        local.stop(own_noida["proc"])
        random_writes(stack, table, rng, 100)  # while the cluster is away
        own_noida["proc"] = start_elasticsearch(own_noida["port"], tmp_path, own_noida["dir"])
        random_writes(stack, table, rng, 50)
        proc.send_signal(signal.SIGTERM)  # the follower stops where it is ...
        assert proc.wait(timeout=60) == 130, proc.communicate()
        runner.catch_up()  # ... and a second run catches up from its checkpoints
        runner.assert_exact()
    finally:
        stacks.close()


def test_stream_runner_waits_out_a_dynamodb_local_restart(
    opensearch_url: str, tmp_path: Path
) -> None:
    """DynamoDB Local with -dbPath keeps tables and streams across a restart."""
    port = free_port()
    db_dir = tmp_path / "ddb-data"
    db_dir.mkdir()
    ddb = local.start_dynamodb(port, tmp_path, db_path=db_dir)
    stacks = _stack(ddb.url, opensearch_url)
    stack = next(stacks)
    try:
        table = stack.create_table("ddb-restart", stream=True)
        runner = Runner(stack, tmp_path, table)
        rng = random.Random(13)
        random_writes(stack, table, rng, 150)
        proc = runner.start("--batch-size", "5")
        wait_for(lambda: runner.checkpoint_stamp() != 0, "a first checkpoint")
        local.stop(ddb)
        ddb = local.start_dynamodb(port, tmp_path, db_path=db_dir)
        random_writes(stack, table, rng, 100)
        before = runner.checkpoint_stamp()
        wait_for(lambda: runner.checkpoint_stamp() != before, "the follower to go on")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130, proc.communicate()
        runner.catch_up()
        runner.assert_exact()
    finally:
        stacks.close()
        local.stop(ddb)
