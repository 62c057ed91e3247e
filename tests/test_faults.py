"""Real faults between ddb2es and the search server; every run must end with the index exactly
equal to the table (`drift --full` exit 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ddb2es_cli.checkpoint import RunState
from ddb2es_cli.cli import cli
from ddb2es_cli.index_settings import BULK_LOAD_SETTINGS, current_load_settings
from ddb2es_cli.reindex import run_reindex
from ddb2es_cli.sink import BulkOptions
from tests.conftest import Stack, wait_for
from tests.faults import ClientWrapper, FaultProxy
from tests.servers import free_port, start_elasticsearch
from tests.test_reindex import options, sample_items


def drift_full(stack: Stack, config: Path, table: str) -> int:
    result = CliRunner().invoke(
        cli, ["--config", str(config), "drift", table, "--full", "--quiet"], env=stack.cli_env()
    )
    return result.exit_code


def test_reindex_through_resets_and_503s_ends_exactly_equal(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("faulty")
    stack.put_items(table, sample_items(300, types=("a", "b")))
    config = stack.config_file(tmp_path, table)
    # More failures in a row than the client's own transport retries (3) absorb.
    fates = {2: "reset", 3: "503", 4: "reset", 5: "503", 6: "reset", 9: "503", 10: "503"}
    fates.update({11: "503", 12: "503", 13: "reset"})
    proxy = FaultProxy(int(stack.es_url.rsplit(":", 1)[1]), lambda n: fates.get(n, "pass"))
    env = {**stack.cli_env(), "DDB2ES_ES_URL": proxy.url}
    try:
        result = CliRunner().invoke(
            cli,
            [
                *("--config", str(config), "reindex", table, "--chunk-size", "40", "--quiet"),
                *("--failures", str(tmp_path / "failures.ndjson")),
                *("--state-file", str(tmp_path / "state.json")),
            ],
            env=env,
        )
    finally:
        proxy.close()
    assert result.exit_code == 0, result.output
    assert sorted(proxy.faults) == sorted(fates.values())
    assert not (tmp_path / "failures.ndjson").exists()
    assert drift_full(stack, config, table) == 0


def test_reindex_through_stalled_requests_ends_exactly_equal(stack: Stack, tmp_path: Path) -> None:
    """A cluster that takes requests and never answers: the client times out (2 s here), the
    writer resends; the stalled requests never reach the server."""
    from ddb2es_cli.clients import make_search_client
    from ddb2es_cli.config import SearchSettings
    from ddb2es_cli.reindex import ReindexOptions, run_reindex
    from ddb2es_cli.sink import BulkOptions

    table = stack.create_table("stalled")
    stack.put_items(table, sample_items(120, types=("s",)))
    fates = {2: "stall", 3: "stall", 5: "stall"}
    proxy = FaultProxy(int(stack.es_url.rsplit(":", 1)[1]), lambda n: fates.get(n, "pass"))
    es, _ = make_search_client(SearchSettings(url=proxy.url), timeout=2)
    settings = stack.settings(table)
    try:
        summary = run_reindex(
            stack.ddb,
            es,
            settings,
            list(settings.tables),
            ReindexOptions(
                segments=2,
                failures_path=tmp_path / "failures.ndjson",
                state_path=tmp_path / "state.json",
                bulk=BulkOptions(chunk_size=30, initial_backoff=0.05, max_backoff=0.2),
            ),
        )
    finally:
        proxy.close()
        es.close()
    assert proxy.faults == ["stall"] * 3
    assert summary.failures == 0 and summary.tables[table].indexed == 120
    assert drift_full(stack, stack.config_file(tmp_path, table), table) == 0


def test_reindex_waits_out_a_search_server_restart(dynamodb_url: str, tmp_path: Path) -> None:
    """The search server goes away in the middle of a load and comes back on the same port.

    noida-db keeps its data only across a clean stop, and reads numbers back from disk as
    doubles, so it is stopped with SIGTERM and the items carry no 38-digit numbers.
    """
    import threading

    from ddb2es_cli import local
    from tests.conftest import _stack

    port = free_port()
    server = start_elasticsearch(port, tmp_path, tmp_path / "noida-data")
    stacks = _stack(dynamodb_url, server.url)
    stack = next(stacks)
    try:
        table = stack.create_table("restart")
        items = sample_items(400, types=("r",))
        for item in items:
            del item["big"]
        stack.put_items(table, items)
        config = stack.config_file(tmp_path, table)
        args = ["--config", str(config), "reindex", table, "--chunk-size", "20", "--quiet"]
        args += ["--page-size", "20", "--failures", str(tmp_path / "failures.ndjson")]
        args += ["--state-file", str(tmp_path / "state.json")]
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: outcome.update(result=CliRunner().invoke(cli, args, env=stack.cli_env()))
        )
        index = f"{stack.prefix}r"
        worker.start()
        wait_for(
            lambda: (
                not worker.is_alive()
                or (stack.es.indices.exists(index=index) and _count(stack, index) > 0)
            ),
            "a first document",
        )
        assert worker.is_alive(), "the run ended before the restart"
        local.stop(server)
        server = start_elasticsearch(port, tmp_path, tmp_path / "noida-data")
        worker.join(timeout=180)
        result = outcome.get("result")
        assert result is not None and result.exit_code == 0, result and result.output
        assert drift_full(stack, config, table) == 0
    finally:
        stacks.close()
        local.stop(server)


def _count(stack: Stack, index: str) -> int:
    stack.es.indices.refresh(index=index)
    return int(stack.es.count(index=index)["count"])


class RestoreRefused(ClientWrapper):
    """The real client, but putting settings back (anything but the bulk-load values) finds no
    cluster for the first `failures` attempts (None: never succeeds)."""

    def __init__(self, client: Any, failures: int | None) -> None:
        super().__init__(client)
        self.failures = failures
        self.refused = 0
        outer = self

        class Indices:
            def __getattr__(self, name: str) -> Any:
                return getattr(client.indices, name)

            def put_settings(self, **kwargs: Any) -> Any:
                values = kwargs.get("body", {}).get("index", {})
                restoring = values != BULK_LOAD_SETTINGS
                if restoring and (outer.failures is None or outer.refused < outer.failures):
                    outer.refused += 1
                    raise ConnectionError("connection refused (the node is restarting)")
                return client.indices.put_settings(**kwargs)

        self.indices = Indices()


def _load_with(stack: Stack, tmp_path: Path, es: Any, table: str) -> Any:
    settings = stack.settings(table)
    return run_reindex(
        stack.ddb,
        es,
        settings,
        list(settings.tables),
        options(tmp_path, bulk=BulkOptions(chunk_size=50, initial_backoff=0.01, retry_for=1.0)),
    )


def test_settings_are_put_back_once_the_cluster_answers_again(stack: Stack, tmp_path: Path) -> None:
    """A node restart as the load ends used to leave the index without refreshes or replicas."""
    table = stack.create_table("restore")
    stack.put_items(table, sample_items(60, types=("rs",)))
    es = RestoreRefused(stack.es, failures=2)
    summary = _load_with(stack, tmp_path, es, table)
    index = f"{stack.prefix}rs"
    assert summary.tables[table].indexed == 60 and es.refused == 2
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
    assert summary.restored == [index]
    assert not (tmp_path / "state.json").exists()


def test_settings_still_pending_keep_the_state_file_for_the_next_run(
    stack: Stack, tmp_path: Path
) -> None:
    """The state file holds what to put back: a completed run used to delete it even when the
    restore failed, and the index kept its bulk-load settings for good."""
    table = stack.create_table("pending")
    stack.put_items(table, sample_items(60, types=("pd",)))
    index = f"{stack.prefix}pd"
    summary = _load_with(stack, tmp_path, RestoreRefused(stack.es, failures=None), table)
    assert summary.tables[table].indexed == 60 and summary.restored == []
    assert current_load_settings(stack.es, index)["refresh_interval"] == "-1"
    state = RunState.load(tmp_path / "state.json")
    assert state is not None and not state.unfinished() and index in state.pending_restore

    again = _load_with(stack, tmp_path, stack.es, table)  # the next run puts them back first
    assert index in again.restored
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
    assert not (tmp_path / "state.json").exists()
