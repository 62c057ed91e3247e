"""Transient overload never drops a stream update (issue 9, item 4); trimmed checkpoints; the
caught-up rule; a 403 on the rebuild-marker lookup (issue 10, item 7).

DynamoDB Local's real streams and osmem; faults come from small wrappers around the real clients
and, for the CLI, from an HTTP proxy in front of the search server.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from opensearchpy.exceptions import AuthorizationException, TransportError
from opensearchpy.exceptions import ConnectionError as OSConnectionError

from ddb2es_cli.cli import cli
from ddb2es_cli.stream import apply_batch, batch_item_failures
from ddb2es_cli.stream_runner import CheckpointTrimmed, StreamOptions, run_stream
from tests.conftest import Stack, wait_for
from tests.faults import FaultProxy
from tests.test_stream import (
    config,
    index_documents,
    item,
    record,
    source,
    streams_client_for,
    table_documents,
)


class Flaky:
    """The real client, but the first `failing` bulk requests meet `fault`."""

    def __init__(self, client: Any, failing: int, fault: str) -> None:
        self._client = client
        self.failing = failing
        self.fault = fault
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > self.failing:
            return self._client.bulk(*args, **kwargs)
        if self.fault == "connection":
            raise OSConnectionError("N/A", "Connection reset by peer", None)
        if self.fault == "503":
            raise TransportError(503, "service_unavailable", {"error": "overloaded"})
        body = kwargs.get("body", args[0] if args else "")
        lines = [json.loads(x) for x in str(body).splitlines() if x.strip()]
        items = [
            {kind: {"_index": m["_index"], "_id": m["_id"], "status": int(self.fault), "error": {}}}
            for entry in lines
            for kind, m in entry.items()
            if kind in ("index", "delete")
        ]
        return {"took": 1, "errors": True, "items": items}


def options(tmp_path: Path, **values: Any) -> StreamOptions:
    base: dict[str, Any] = {
        "until_caught_up": True,
        "state_path": tmp_path / "stream.json",
        "failures_path": tmp_path / "failures.ndjson",
        "poll_interval": 0.02,
        "initial_backoff": 0.01,
        "max_backoff": 0.05,
    }
    base.update(values)
    return StreamOptions(**base)


def follow(stack: Stack, table: str, es: Any, opts: StreamOptions, streams: Any = None) -> Any:
    settings = stack.settings(table)
    return run_stream(
        stack.ddb, streams or streams_client_for(stack), es, settings, list(settings.tables), opts
    )


def checkpoints(path: Path) -> list[Any]:
    state = json.loads(path.read_text())["streams"]
    return [shard["seq"] for shards in state.values() for shard in shards.values()]


# --- the handler --------------------------------------------------------------------------------


def test_a_lost_connection_is_retryable_not_a_crash(stack: Stack) -> None:
    records = [record("INSERT", {"pk": {"S": f"k{n}"}}, n, 1000, new=item(f"k{n}")) for n in (7, 8)]
    # A blip is absorbed inside the batch (the bulk writer resends after a short backoff) ...
    blip = Flaky(stack.es, 1, "connection")
    result = apply_batch(blip, records, config(stack))
    assert blip.calls == 2 and result.failed == [] and result.retryable == []
    assert result.indexed == 2
    # ... a connection that stays lost past the writer's budget makes the batch retryable.
    lost = Flaky(stack.es, 10**6, "connection")
    result = apply_batch(lost, records, config(stack))
    assert result.failed == [] and "Connection reset" in result.retryable[0].reason
    assert batch_item_failures(records, result) == {"batchItemFailures": [{"itemIdentifier": "7"}]}


class Mixed:
    """Documents whose id names a status get that status (permanent 400, retryable 504)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        response = self._client.bulk(*args, **kwargs)
        for entry in response["items"]:
            op = next(iter(entry.values()))
            for status in (400, 504):
                if str(status) in op["_id"]:
                    op["status"], op["error"] = status, {"type": "injected", "reason": "x"}
                    response["errors"] = True
        return response


def test_only_retryable_failures_reach_batch_item_failures(stack: Stack) -> None:
    records = [
        record("INSERT", {"pk": {"S": "ok"}}, 1, 1000, new=item("ok")),
        record("INSERT", {"pk": {"S": "p400"}}, 2, 1000, new=item("p400")),
        record("INSERT", {"pk": {"S": "r504"}}, 3, 1000, new=item("r504")),
    ]
    result = apply_batch(Mixed(stack.es), records, config(stack))
    assert [f.keys["pk"] for f in result.failed] == ["p400"]
    assert batch_item_failures(records, result) == {"batchItemFailures": [{"itemIdentifier": "3"}]}


# --- the runner ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "failing"), [("502", 8), ("connection", 3), ("503", 2)])
def test_the_runner_retries_overload_until_every_record_applies(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, failing: int
) -> None:
    table = stack.create_table(f"overload-{fault}", stream=True)
    stack.put_items(table, [item(f"k{n}", n={"N": str(n)}) for n in range(20)])
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "k3"}})
    es = Flaky(stack.es, failing, fault)
    with caplog.at_level(logging.WARNING, logger="ddb2es"):
        summary = follow(stack, table, es, options(tmp_path))
    assert summary.failures == 0 and not (tmp_path / "failures.ndjson").exists()
    assert index_documents(stack) == table_documents(stack, table)
    assert es.calls > failing  # every failing request was retried
    # Each retry round says so (the bulk writer's resends, then the runner's, if any).
    rounds = [
        r
        for r in caplog.records
        if "resending" in r.getMessage() or "not applied" in r.getMessage()
    ]
    assert len(rounds) >= failing


def test_a_stopped_runner_keeps_the_checkpoint_before_unapplied_records(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("stopped", stream=True)
    stack.put_items(table, [item(f"k{n}") for n in range(10)])
    es = Flaky(stack.es, 10**9, "503")  # overloaded for as long as it runs
    stop = threading.Event()
    settings = stack.settings(table)
    runner = threading.Thread(
        target=run_stream,
        args=(stack.ddb, streams_client_for(stack), es, settings, list(settings.tables)),
        kwargs={"options": options(tmp_path, until_caught_up=False), "stop": stop},
    )
    runner.start()
    try:
        wait_for(lambda: es.calls >= 5, "five retry rounds")
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert checkpoints(tmp_path / "stream.json") in ([], [None])
    assert not (tmp_path / "failures.ndjson").exists()
    follow(stack, table, stack.es, options(tmp_path))  # the cluster is back
    assert index_documents(stack) == table_documents(stack, table)


@pytest.fixture
def overload_proxy(stack: Stack) -> Iterator[FaultProxy]:
    """A proxy to the search server that answers 503 to every bulk request."""
    proxy = FaultProxy(int(stack.es_url.rsplit(":", 1)[1]), lambda n: "503")
    try:
        yield proxy
    finally:
        proxy.close()


def test_sigterm_during_overload_exits_130_and_keeps_the_checkpoint(
    stack: Stack, tmp_path: Path, overload_proxy: FaultProxy
) -> None:
    table = stack.create_table("sigterm", stream=True)
    stack.put_items(table, [item(f"k{n}") for n in range(10)])
    config_file = stack.config_file(tmp_path, table)
    env = {**os.environ, **stack.cli_env(), "DDB2ES_ES_URL": overload_proxy.url}
    state = tmp_path / "stream.json"
    command = [sys.executable, "-m", "ddb2es_cli", "--config", str(config_file), "stream", table]
    command += ["--state-file", str(state), "--failures", str(tmp_path / "failures.ndjson")]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: overload_proxy.bulks >= 6 or proc.poll() is not None, "bulk retries")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "resending" in err or ("not applied" in err and "retry" in err), err
    assert checkpoints(state) in ([], [None])
    assert not (tmp_path / "failures.ndjson").exists()
    follow(stack, table, stack.es, options(tmp_path, state_path=state))
    assert index_documents(stack) == table_documents(stack, table)


# --- trimmed checkpoints ------------------------------------------------------------------------


def lose_a_shard(state: Path) -> None:
    """A checkpoint in a shard that DescribeStream no longer lists (closed over 24 h ago)."""
    data = json.loads(state.read_text())
    for shards in data["streams"].values():
        shards["shardId-00000001700000000000-00000000"] = {"seq": "100", "done": False}
    state.write_text(json.dumps(data))


def test_a_checkpoint_in_a_vanished_shard_stops_the_run(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    table = stack.create_table("vanished", stream=True)
    stack.put_items(table, [item("k0")])
    follow(stack, table, stack.es, options(tmp_path))
    lose_a_shard(tmp_path / "stream.json")
    stack.put_items(table, [item("k1")])
    with pytest.raises(CheckpointTrimmed, match="reindex"):
        follow(stack, table, stack.es, options(tmp_path))
    config_file = stack.config_file(tmp_path, table)
    base = ["--config", str(config_file), "stream", table, "--until-caught-up"]
    base += ["--state-file", str(tmp_path / "stream.json")]
    done = CliRunner().invoke(cli, base, env=stack.cli_env())
    assert done.exit_code == 1, done.output
    (line,) = [x for x in done.output.splitlines() if x.startswith("Error:")]
    assert "lost" in line and f"ddb2es reindex {table}" in line
    # An explicit --from trim-horizon goes on from what the stream still has.
    done = CliRunner().invoke(cli, [*base, "--from", "trim-horizon"], env=stack.cli_env())
    assert done.exit_code == 0, done.output
    assert source(stack, "order", '{"pk":"k1"}') is not None


class TrimmedStreams:
    """The real streams client, but checkpoints (AFTER_SEQUENCE_NUMBER) are trimmed away."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        if kwargs.get("ShardIteratorType") == "AFTER_SEQUENCE_NUMBER":
            raise ClientError(
                {"Error": {"Code": "TrimmedDataAccessException", "Message": "trimmed"}},
                "GetShardIterator",
            )
        return self._client.get_shard_iterator(**kwargs)


def test_a_trimmed_checkpoint_stops_the_run_unless_trim_horizon_is_explicit(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("trimmed", stream=True)
    stack.put_items(table, [item("k0")])
    follow(stack, table, stack.es, options(tmp_path))
    stack.put_items(table, [item("k1")])
    streams = TrimmedStreams(streams_client_for(stack))
    with pytest.raises(CheckpointTrimmed, match="trimmed"):
        follow(stack, table, stack.es, options(tmp_path), streams)
    follow(stack, table, stack.es, options(tmp_path, start="trim-horizon"), streams)
    assert source(stack, "order", '{"pk":"k1"}') is not None


# --- --until-caught-up --------------------------------------------------------------------------


class EmptyPages:
    """The real streams client, with `empty` empty pages before every real page, mid-shard too
    (as real DynamoDB Streams answer)."""

    def __init__(self, client: Any, empty: int) -> None:
        self._client = client
        self.empty = empty
        self.served = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **kwargs: Any) -> Any:
        if self.served < self.empty:
            self.served += 1
            return {"Records": [], "NextShardIterator": kwargs["ShardIterator"]}
        self.served = 0
        return self._client.get_records(**kwargs)


def test_until_caught_up_reads_past_empty_pages_mid_shard(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("sparse", stream=True)
    stack.put_items(table, [item(f"k{n}") for n in range(30)])
    streams = EmptyPages(streams_client_for(stack), 4)
    summary = follow(stack, table, stack.es, options(tmp_path, batch_size=5), streams)
    assert summary.tables[table].records == 30
    assert index_documents(stack) == table_documents(stack, table)


# --- a role that may not read aliases (issue 10, item 7) ----------------------------------------


class _ForbiddenIndices:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.lookups = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def get_alias(self, **kwargs: Any) -> Any:
        self.lookups += 1
        raise AuthorizationException(403, "security_exception", {"error": "no permission"})


class WriteOnly:
    """The real client, as seen by a role allowed to write documents but not to read aliases."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.indices = _ForbiddenIndices(client.indices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_forbidden_marker_lookup_is_one_loud_line_not_a_failed_batch(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ddb2es_cli.stream_indices as indices_module

    monkeypatch.setattr(indices_module, "_LOGGED_ONCE", set())
    monkeypatch.setattr(indices_module, "REBUILD_CHECK_SECONDS", 0.0)  # look up every batch
    es = WriteOnly(stack.es)
    with caplog.at_level(logging.WARNING, logger="ddb2es.stream"):
        for n in range(3):
            batch = [record("INSERT", {"pk": {"S": f"k{n}"}}, n, 1000, new=item(f"k{n}"))]
            result = apply_batch(es, batch, config(stack))
            assert batch_item_failures(batch, result) == {"batchItemFailures": []}
    assert es.indices.lookups == 3
    loud = [r for r in caplog.records if "403" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelno == logging.ERROR
    assert all(source(stack, "order", f'{{"pk":"k{n}"}}') is not None for n in range(3))
