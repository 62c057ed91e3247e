"""Runs spread over many worker processes: leases, takeovers, one-time steps, status, bad input.

Real DynamoDB Local for the data AND the state tables; the search servers of conftest.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.ownership import RunLock
from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.scale import create_run, run_status, work
from ddb2es_cli.sink import BulkOptions, current_load_settings
from ddb2es_cli.state import StateLost, UnitRecord
from ddb2es_cli.state.dynamo import DynamoState
from ddb2es_cli.state.file import FileState
from ddb2es_cli.state.records import LeaseWatch, RunRecord
from tests.conftest import Stack, wait_for
from tests.scale_fixtures import (
    HoldOne,
    assert_exact,
    doc_id,
    json_of,
    run_cli,
    seed,
    state_table,
)

FAST = ("--page-size", "10", "--chunk-size", "20")


def options(tmp_path: Path, **overrides: Any) -> ReindexOptions:
    values: dict[str, Any] = {
        "bulk": BulkOptions(chunk_size=20),
        "failures_path": tmp_path / "failures.ndjson",
        "page_limit": 10,
    }
    values.update(overrides)
    return ReindexOptions(**values)


# --- the lease rule, without servers and without sleeping ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_expires_only_after_its_counter_stood_still_for_the_lease_time() -> None:
    clock = Clock()
    watch = LeaseWatch(30.0, clock)
    assert not watch.expired("u", "w1", 5)  # first sight: never expired
    clock.now += 29.9
    assert not watch.expired("u", "w1", 5)
    clock.now += 0.1
    assert watch.expired("u", "w1", 5)


def test_a_heartbeat_or_a_new_owner_restarts_the_lease() -> None:
    clock = Clock()
    watch = LeaseWatch(30.0, clock)
    watch.expired("u", "w1", 5)
    clock.now += 31
    assert not watch.expired("u", "w1", 6)  # the owner beat: alive, observed afresh
    clock.now += 29
    assert not watch.expired("u", "w1", 6)
    assert not watch.expired("u", "w2", 6)  # taken by another: observed afresh
    clock.now += 30
    assert watch.expired("u", "w2", 6)


def test_dynamo_takeover_is_conditional_on_owner_and_counter(stack: Stack) -> None:
    """B takes A's unit only after A's counter stood still for B's lease time; A's checkpoint
    and heartbeat then fail (A drops the unit), and the unit records the takeover."""
    table = state_table(stack)
    clock = Clock()
    a = DynamoState(stack.ddb, table, lease_seconds=30)
    b = DynamoState(stack.ddb, table, lease_seconds=30, clock=clock)
    run = RunRecord("r1", "reindex", [{"name": "t"}], {"t": 1}, {"t": 0}, {}, "test", 0.0)
    a.create_run(run, [UnitRecord("t", 0, 1)])
    mine = a.claim("r1", "A")
    assert mine is not None and mine.owner == "A"
    assert b.claim("r1", "B") is None  # first sight of A's lease
    clock.now += 29
    assert b.claim("r1", "B") is None
    from ddb2es_cli.state import WorkerRecord

    assert a.heartbeat("r1", WorkerRecord("A"), [mine]) == []  # A is alive: counter moves
    clock.now += 29
    assert b.claim("r1", "B") is None  # the beat restarted B's watch
    clock.now += 30
    taken = b.claim("r1", "B")
    assert taken is not None and taken.owner == "B" and taken.takeovers == 1
    assert not a.checkpoint("r1", "A", mine, {"key": None}, 1, True)
    assert a.heartbeat("r1", WorkerRecord("A"), [mine]) == [mine]
    assert b.checkpoint("r1", "B", taken, {"key": None}, 1, True)
    (unit,) = b.units("r1")
    assert unit.done and unit.owners == ["A", "B"]


def test_only_one_worker_wins_begin_finish_and_restore_records(
    stack: Stack, tmp_path: Path
) -> None:
    for backend in (DynamoState(stack.ddb, state_table(stack)), FileState(tmp_path)):
        run = RunRecord("r2", "reindex", [{"name": "t"}], {"t": 1}, {"t": 0}, {}, "test", 0.0)
        backend.create_run(run, [UnitRecord("t", 0, 1)])
        assert backend.put_restore("r2", "idx", {"refresh_interval": "1s"})
        assert not backend.put_restore("r2", "idx", {"refresh_interval": "-1"})
        assert backend.restores("r2") == {"idx": {"refresh_interval": "1s"}}
        other = (
            DynamoState(stack.ddb, backend.table)
            if isinstance(backend, DynamoState)
            else FileState(tmp_path)
        )
        assert backend.begin_finish("r2", "A")
        assert not other.begin_finish("r2", "B")
        backend.close()
        other.close()


# --- many worker processes -----------------------------------------------------------------------


def test_four_processes_index_every_document_once_and_tune_settings_once(
    any_stack: Stack, tmp_path: Path
) -> None:
    stack = any_stack
    table, items = seed(stack, "four", 400)
    state = state_table(stack)
    done = run_cli(
        stack,
        tmp_path,
        "reindex",
        table,
        "--state-table",
        state,
        "--processes",
        "4",
        "--segments",
        "16",
        *FAST,
        "--json",
        timeout=150,
    )
    summary = json_of(done)
    assert_exact(stack, items)
    assert summary["tables"][0]["scanned"] == 400 and summary["tables"][0]["indexed"] == 400
    run = summary["run"]
    assert run["status"] == "done" and run["units"] == {
        "total": 16,
        "done": 16,
        "claimed": 0,
        "free": 0,
    }
    # Every worker that took part finished; a spawned one that started after its siblings had
    # done every unit (a loaded machine, 400 items) took no part and left quietly.
    workers = run["workers"]
    assert 1 <= len(workers) <= 4 and all(w["finished"] for w in workers)
    assert sum(w["indexed"] for w in workers) == 400 and "Error" not in done.stderr
    # the one-time steps: each created index tuned once (one restore record each, first writer
    # wins), restored once by the finisher, none left pending
    indices = sorted({f"{stack.prefix}a", f"{stack.prefix}b"})
    assert sorted(run["result"]["restored_settings"]) == indices
    backend = DynamoState(stack.ddb, state)
    assert backend.restores(summary["run_id"]) == {}
    for index in indices:
        assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
    status = json_of(
        run_cli(stack, tmp_path, "status", summary["run_id"], "--state-table", state, "--json")
    )
    assert status["status"] == "done" and status["indexed"] == 400


def test_a_spawned_worker_that_finds_its_run_done_leaves_quietly(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--processes N` starts N interpreters; on a busy machine the first may do every unit
    before the last has imported. That one is not an error; joining a done run still is."""
    from ddb2es_cli.cli.common import NOISY_LOGGERS
    from ddb2es_cli.scale import StateOptions, _child

    table, items = seed(stack, "late", 40)
    state = StateOptions(table=state_table(stack))
    backend = state.open(stack.ddb)
    settings = stack.settings(table)
    run = create_run(backend, stack.ddb, list(settings.tables), options(tmp_path), units=2)
    work(stack.ddb, stack.es, settings, backend, run.run_id, options(tmp_path))
    assert backend.load_run(run.run_id).status == "done"
    capsys.readouterr()
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    try:
        _child(settings, state, run.run_id, options(tmp_path))  # returns: exit status 0
    finally:  # the child quietens the client loggers for its process, not for later tests
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match="is done: nothing left to do"):
        work(stack.ddb, stack.es, settings, backend, run.run_id, options(tmp_path))
    assert len(run_status(backend, run.run_id)["workers"]) == 1
    assert_exact(stack, items)


def test_file_backend_with_two_processes_on_one_machine(stack: Stack, tmp_path: Path) -> None:
    table, items = seed(stack, "files", 200)
    summary = json_of(
        run_cli(
            stack,
            tmp_path,
            "reindex",
            table,
            "--processes",
            "2",
            "--segments",
            "8",
            *FAST,
            "--json",
        )
    )
    assert_exact(stack, items)
    assert summary["run"]["status"] == "done" and summary["tables"][0]["indexed"] == 200
    assert (tmp_path / ".ddb2es" / "runs" / summary["run_id"] / "run.json").is_file()
    listed = json_of(run_cli(stack, tmp_path, "status", "--json"))
    assert [r["run_id"] for r in listed["runs"]] == [summary["run_id"]]


def test_kill_9_of_a_worker_mid_unit_another_takes_it_over(stack: Stack, tmp_path: Path) -> None:
    table, items = seed(stack, "kill", 300)
    state = state_table(stack)
    backend = DynamoState(stack.ddb, state, lease_seconds=2.0)
    settings = stack.settings(table)
    run = create_run(backend, stack.ddb, list(settings.tables), options(tmp_path), units=8)
    victim = doc_id(stack, items[123])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.scale_worker",
            stack.dynamodb_url,
            stack.es_url,
            stack.prefix,
            state,
            run.run_id,
            victim,
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, **stack.cli_env()},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "held"  # mid-unit: one document unsent
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    owned = [u for u in backend.units(run.run_id) if u.owner and not u.done]
    assert owned  # the dead worker still owns the unit of the held document
    result = work(stack.ddb, stack.es, settings, backend, run.run_id, options(tmp_path))
    assert result.finished_run
    assert_exact(stack, items)
    status = run_status(backend, run.run_id)
    assert status["status"] == "done" and status["takeovers"] >= 1
    taken = {(u["table"], u["unit"]) for u in status["takeover_units"]}
    assert {(u.table, u.number) for u in owned} <= taken
    shown = run_cli(stack, tmp_path, "status", run.run_id, "--state-table", state)
    assert shown.returncode == 0 and "taken over" in shown.stdout


def test_two_runs_of_different_tables_run_side_by_side(stack: Stack, tmp_path: Path) -> None:
    first, first_items = seed(stack, "one", 150, key_prefix="x")
    second, second_items = seed(stack, "two", 150, key_prefix="y")
    state = state_table(stack)
    line = ("--state-table", state, "--processes", "2", "--segments", "6", *FAST, "--json")
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def go(folder: str, table: str) -> None:
        runs[table] = run_cli(stack, tmp_path / folder, "reindex", table, *line)

    threads = [threading.Thread(target=go, args=(f, t)) for f, t in (("1", first), ("2", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    one, two = json_of(runs[first]), json_of(runs[second])
    assert one["run_id"] != two["run_id"]
    assert one["tables"][0]["scanned"] == 150 and two["tables"][0]["scanned"] == 150
    assert_exact(stack, first_items + second_items)


def test_a_second_run_of_the_same_tables_is_refused(stack: Stack, tmp_path: Path) -> None:
    table, _items = seed(stack, "same", 20)
    state = state_table(stack)
    lock = RunLock(stack.es, stack.prefix.rstrip("-_."), [table], "reindex", token="r-other")
    lock.acquire()
    try:
        refused = run_cli(
            stack, tmp_path, "reindex", table, "--state-table", state, "--processes", "2"
        )
        assert refused.returncode == 1
        assert "locked" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    finally:
        lock.release()


# --- bad input -----------------------------------------------------------------------------------


def test_unknown_run_id_is_one_line_exit_2(stack: Stack, tmp_path: Path) -> None:
    state = state_table(stack)
    for args in (
        ("reindex", "--join", "r-nope", "--state-table", state),
        ("status", "r-nope", "--state-table", state),
        ("reindex", "--join", "r-nope"),
    ):
        done = run_cli(stack, tmp_path, *args)
        assert done.returncode == 2, done.stderr
        assert "unknown run id r-nope" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_missing_state_table_and_wrong_key_schema_are_exit_2(stack: Stack, tmp_path: Path) -> None:
    table, _ = seed(stack, "bad", 5)
    missing = run_cli(
        stack, tmp_path, "reindex", table, "--state-table", stack.table_name("nothere")
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "state init" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    wrong = stack.create_table("wrongkeys", hash_key="id")
    for args in (("reindex", table, "--state-table", wrong), ("status", "--state-table", wrong)):
        done = run_cli(stack, tmp_path, *args)
        assert done.returncode == 2 and "wrong key schema" in done.stderr, done.stderr
    assert not stack.indices()  # nothing was written


def test_state_init_creates_once_and_names_the_iam_actions(stack: Stack, tmp_path: Path) -> None:
    name = stack.table_name("newstate")
    first = json_of(run_cli(stack, tmp_path, "state", "init", "--table", name, "--json"))
    again = json_of(run_cli(stack, tmp_path, "state", "init", "--table", name, "--json"))
    assert first["created"] and not again["created"]
    assert "dynamodb:UpdateItem" in first["iam_actions"]
    assert first["iam_actions_init"] == ["dynamodb:CreateTable"]


def test_state_table_deleted_mid_run_stops_with_one_line(stack: Stack, tmp_path: Path) -> None:
    table, items = seed(stack, "gone", 120)
    state = state_table(stack)
    backend = DynamoState(stack.ddb, state, lease_seconds=2.0)
    settings = stack.settings(table)
    run = create_run(backend, stack.ddb, list(settings.tables), options(tmp_path), units=4)
    held = HoldOne(stack.es, doc_id(stack, items[50]))
    deleted = threading.Event()
    held.released = deleted.is_set
    outcome: dict[str, Any] = {}

    def go() -> None:
        try:
            work(stack.ddb, held, settings, backend, run.run_id, options(tmp_path))
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    assert held.held_event.wait(120)
    stack.ddb.delete_table(TableName=state)
    wait_for(lambda: state not in stack.ddb.list_tables()["TableNames"], "the table to go")
    deleted.set()
    thread.join(timeout=120)
    error = outcome.get("error")
    assert isinstance(error, StateLost), error
    assert "does not exist" in str(error) and "\n" not in str(error)
    assert error.exit_status == 1


def test_scaled_runs_refuse_resume(stack: Stack, tmp_path: Path) -> None:
    done = run_cli(stack, tmp_path, "reindex", "sometable", "--processes", "2", "--resume")
    assert done.returncode == 2 and "--join" in done.stderr


def test_config_state_section_is_validated(tmp_path: Path) -> None:
    from ddb2es_cli.config import load_settings

    path = tmp_path / "c.toml"
    path.write_text('[state]\ntable = "ddb2es-state"\nlease_seconds = 10\n')
    settings = load_settings(path, {})
    assert settings.state_table == "ddb2es-state" and settings.state_lease_seconds == 10
    path.write_text('[state]\ntabel = "x"\n')
    with pytest.raises(ConfigError):
        load_settings(path, {})
    assert json.dumps(settings.state_table)


def test_a_reader_other_than_scan_plugs_into_work_units(stack: Stack, tmp_path: Path) -> None:
    """An export-like reader: pages with their own positions ({"line": N}), resumed from them."""
    import time as _time
    from collections.abc import Iterator

    from ddb2es_cli.source import Page, SegmentTask

    table, items = seed(stack, "export", 60)
    backend = FileState(tmp_path / "state", lease_seconds=2.0)
    settings = stack.settings(table)
    run = create_run(backend, stack.ddb, list(settings.tables), options(tmp_path), units=3)
    started: list[dict[str, Any] | None] = []

    def factory(_client: Any, _opts: ReindexOptions, _limiter: Any) -> Any:
        def read(task: SegmentTask, stop: threading.Event) -> Iterator[Page]:
            started.append(task.position)
            mine = [it for i, it in enumerate(items) if i % task.total_segments == task.segment]
            for line in range(0, len(mine), 5):
                chunk = mine[line : line + 5]
                last = line + 5 >= len(mine)
                yield Page(
                    task.table,
                    task.segment,
                    chunk,
                    None,
                    int(_time.time() * 1000),
                    0.0,
                    len(chunk),
                    done=last,
                    position={"line": line + 5},
                )

        return read

    result = work(
        stack.ddb, stack.es, settings, backend, run.run_id, options(tmp_path), reader=factory
    )
    assert result.finished_run and started == [None, None, None]
    assert_exact(stack, items)
    assert all(u.done and u.position == {"line": 20} for u in backend.units(run.run_id))


def test_reload_blue_green_spreads_its_load_over_worker_processes(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plan, verification and swap once in the reload; the load by 2 worker processes of a run
    that shares the reload's run lock (which the reload keeps until the swap)."""
    from ddb2es_cli.reload import ReloadOptions, run_reload
    from ddb2es_cli.scale import StateOptions, scaled_loader
    from ddb2es_cli.state import new_run_id
    from tests.test_reload import ENGINE, alias_targets, streams_client

    monkeypatch.chdir(tmp_path)
    table, _items = seed(stack, "reload", 120)
    settings = stack.settings(table)
    state = StateOptions(table=state_table(stack), lease_seconds=5.0)
    backend = state.open(stack.ddb)
    run_id = new_run_id()
    opts = ReloadOptions(
        reindex=options(tmp_path),
        marker_wait=0.5,
        run_token=run_id,
        loader=scaled_loader(backend, state, 2, run_id),
    )
    summary = run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), opts
    )
    assert summary.verified and sorted(summary.swapped) == [f"{stack.prefix}a", f"{stack.prefix}b"]
    status = run_status(backend, run_id)
    assert status["status"] == "done" and status["command"] == "reload"
    # The load was the workers': their counts add up to every item, none by the reload's own
    # process. Two were started; on 120 items the second may find nothing left to claim.
    workers = status["workers"]
    assert 1 <= len(workers) <= 2 and all(w["pid"] != os.getpid() for w in workers)
    assert status["indexed"] == 120 == sum(w["indexed"] for w in workers)
    for alias in alias_targets(stack):
        assert stack.es.count(index=alias)["count"] == 60
