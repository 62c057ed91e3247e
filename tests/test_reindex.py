"""reindex against the real local servers: exact documents, counts, several tables, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from ddb2es_cli.checkpoint import RunState
from ddb2es_cli.cli import cli
from ddb2es_cli.config import DEFAULT_PAGE_LIMIT
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.sink import BulkOptions, current_load_settings
from ddb2es_cli.transform import TableShape, to_document
from tests.conftest import Stack


def sample_items(
    n: int, types: tuple[str, ...] = ("Order", "invoice"), key_prefix: str = "key-"
) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        items.append(
            {
                "pk": {"S": f"{key_prefix}{i:05d}"},
                "TYPE": {"S": types[i % len(types)]},
                "amount": {"N": f"{i}.25"},
                "big": {"N": "1234567890123456789012345678.0123456789"},
                "tiny": {"N": "0.1"},
                "blob": {"B": bytes([i % 256, 0, 255])},
                "flag": {"BOOL": i % 2 == 0},
                "nothing": {"NULL": True},
                "nested": {"M": {"S": {"S": "not a type tag"}, "L": {"L": [{"N": "1"}]}}},
                "list": {"L": [{"S": "a"}, {"S": "b"}]},
                "tags": {"SS": ["z", "a"]},
                "scores": {"NS": ["10", "9", "100"]},
                "blobs": {"BS": [b"\x02", b"\x01"]},
            }
        )
    return items


def options(tmp_path: Path, **overrides: Any) -> ReindexOptions:
    values: dict[str, Any] = {
        "segments": 4,
        "failures_path": tmp_path / "failures.ndjson",
        "state_path": tmp_path / "state.json",
        "bulk": BulkOptions(chunk_size=200, initial_backoff=0.01, max_backoff=0.05),
    }
    values.update(overrides)
    return ReindexOptions(**values)


def raw_source(es_url: str, index: str, doc_id: str) -> dict[str, Any]:
    """The stored _source with exact numbers (the client libraries parse numbers as floats)."""
    quoted = urllib.parse.quote(doc_id, safe="")
    with urllib.request.urlopen(f"{es_url}/{index}/_doc/{quoted}") as resp:
        body = json.loads(resp.read(), parse_float=Decimal)
    return body["_source"]  # type: ignore[no-any-return]


def counts(stack: Stack) -> dict[str, int]:
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    return {name: stack.es.count(index=name)["count"] for name in stack.indices()}


def test_every_attribute_type_arrives_exactly(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("exact")
    items = sample_items(40)
    stack.put_items(table, items)
    settings = stack.settings(table)
    summary = run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path))
    assert summary.failures == 0
    shape = TableShape("pk", index_prefix=stack.prefix)
    for item in items:
        doc = to_document(item, shape)
        expected = json.loads(doc.source, parse_float=Decimal)
        assert raw_source(stack.es_url, doc.index, doc.id) == expected
    assert counts(stack) == {f"{stack.prefix}order": 20, f"{stack.prefix}invoice": 20}


def test_two_tables_share_one_run_and_counts_match(any_stack: Stack, tmp_path: Path) -> None:
    stack = any_stack
    first = stack.create_table("first")
    second = stack.create_table("second", hash_key="device", range_key="ts")
    stack.put_items(first, sample_items(150, types=("a", "b", "c")))
    stack.put_items(
        second,
        [
            {"device": {"S": f"d{i % 7}"}, "ts": {"N": str(i)}, "v": {"N": str(i * 2)}}
            for i in range(120)
        ],
    )
    settings = stack.settings(first, second)
    summary = run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path))
    assert {t: s.scanned for t, s in summary.tables.items()} == {first: 150, second: 120}
    assert counts(stack) == {
        f"{stack.prefix}a": 50,
        f"{stack.prefix}b": 50,
        f"{stack.prefix}c": 50,
        f"{stack.prefix}default": 120,
    }
    assert not (tmp_path / "state.json").exists()  # a finished run leaves no checkpoint


def test_reindex_twice_is_harmless(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("twice")
    stack.put_items(table, sample_items(30))
    settings = stack.settings(table)
    for _ in range(2):
        summary = run_reindex(
            stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path)
        )
        assert summary.failures == 0
    assert sum(counts(stack).values()) == 30


def test_older_version_does_not_overwrite_newer_data(stack: Stack, tmp_path: Path) -> None:
    """A document written by a newer stream record wins over the scan (409 is not a failure)."""
    table = stack.create_table("newer")
    stack.put_items(table, sample_items(10))
    shape = TableShape("pk", index_prefix=stack.prefix)
    doc = to_document(sample_items(1)[0], shape)
    far_future = 10**18
    stack.es.index(
        index=doc.index,
        id=doc.id,
        body={"stream": "newer"},
        version=far_future,
        version_type="external_gte",
    )
    settings = stack.settings(table)
    summary = run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path))
    assert summary.failures == 0
    assert summary.tables[table].conflicts == 1
    assert stack.es.get(index=doc.index, id=doc.id)["_source"] == {"stream": "newer"}


def test_rejected_documents_go_to_the_failures_file_with_exit_4(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("rejects")
    good = sample_items(20)
    bad_type = {"pk": {"S": "bad-type"}, "TYPE": {"S": "no/slashes"}}
    conflicting = {
        "pk": {"S": "bad-mapping"},
        "TYPE": {"S": "Order"},
        "amount": {"S": "not a number"},
    }
    stack.put_items(table, good)
    # Map `amount` as a number first, so the conflicting document is rejected by the engine.
    stack.es.indices.create(
        index=f"{stack.prefix}order",
        body={"mappings": {"properties": {"amount": {"type": "double"}}}},
    )
    metadata_field = {"pk": {"S": "bad-field"}, "_id": {"S": "an attribute named _id"}}
    stack.put_items(table, [bad_type, conflicting, metadata_field])
    failures = tmp_path / "failures.ndjson"
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(stack.config_file(tmp_path, table)),
            "reindex",
            table,
            "--failures",
            str(failures),
            "--state-file",
            str(tmp_path / "s.json"),
            "--segments",
            "2",
        ],
        env=stack.cli_env(),
    )
    assert result.exit_code == 4, result.output
    lines = [json.loads(line) for line in failures.read_text().splitlines()]
    by_key = {json.dumps(line["key"], sort_keys=True): line for line in lines}
    assert len(lines) == 3
    bad = by_key[json.dumps({"pk": "bad-type"}, sort_keys=True)]
    assert bad["reason"].startswith("invalid_index_name")
    assert bad["table"] == table
    mapping = by_key[json.dumps({"pk": "bad-mapping"}, sort_keys=True)]
    assert mapping["index"] == f"{stack.prefix}order"
    assert mapping["id"] == '{"pk":"bad-mapping"}'
    assert "mapper_parsing_exception" in mapping["reason"] or "parse" in mapping["reason"]
    field = by_key[json.dumps({"pk": "bad-field"}, sort_keys=True)]
    assert "metadata field" in field["reason"]


# --- faults ------------------------------------------------------------------------------------


class ThrottlingDynamo:
    """The real client, but every third Scan is throttled (DynamoDB Local never throttles)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.throttled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def scan(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls % 3 == 0:
            self.throttled += 1
            raise ClientError(
                {
                    "Error": {
                        "Code": "ProvisionedThroughputExceededException",
                        "Message": "Rate exceeded",
                    }
                },
                "Scan",
            )
        return self._client.scan(**kwargs)


class RecordingDynamo:
    """The real client; remembers the Limit of every Scan."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.limits: list[int | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def scan(self, **kwargs: Any) -> Any:
        self.limits.append(kwargs.get("Limit"))
        return self._client.scan(**kwargs)


def test_scan_pages_are_small_by_default_so_memory_stays_flat(stack: Stack, tmp_path: Path) -> None:
    """A parsed 1 MB page of rich items is ~17 MB of Python objects and every scan thread reads
    one ahead: pages of DEFAULT_PAGE_LIMIT items keep that bounded (docs/benchmarks.md)."""
    table = stack.create_table("pages")
    stack.put_items(table, sample_items(30, types=("p",)))
    settings = stack.settings(table)
    ddb = RecordingDynamo(stack.ddb)
    run_reindex(ddb, stack.es, settings, list(settings.tables), options(tmp_path, segments=2))
    assert ddb.limits and set(ddb.limits) == {DEFAULT_PAGE_LIMIT}

    whole = RecordingDynamo(stack.ddb)
    unlimited = options(tmp_path, segments=2, page_limit=None)
    run_reindex(whole, stack.es, settings, list(settings.tables), unlimited)
    assert set(whole.limits) == {None}  # DynamoDB's own 1 MB pages, as --page-size 0 asks


class BusySearch:
    """The real client, but bulk answers 429 for a share of calls and of documents."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.item_429s = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls % 3 == 1:
            raise TransportError(429, "es_rejected_execution_exception", {})
        response = self._client.bulk(*args, **kwargs)
        for n, item in enumerate(response["items"]):
            op = next(iter(item.values()))
            if n % 4 == 0 and self.calls < 12:
                # Pretend this one was rejected: it must be resent (re-sending is harmless).
                op["status"] = 429
                op["error"] = {"type": "es_rejected_execution_exception", "reason": "busy"}
                response["errors"] = True
                self.item_429s += 1
        return response


def test_throttled_scans_and_busy_cluster_still_end_complete(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("faults")
    stack.put_items(table, sample_items(300, types=("x",)))
    ddb = ThrottlingDynamo(stack.ddb)
    es = BusySearch(stack.es)
    settings = stack.settings(table)
    summary = run_reindex(
        ddb,
        es,
        settings,
        list(settings.tables),
        options(tmp_path, page_limit=25, fast_decode=False),
    )
    assert ddb.throttled > 0 and es.item_429s > 0
    assert summary.failures == 0
    assert summary.tables[table].scanned == 300
    assert counts(stack) == {f"{stack.prefix}x": 300}


class DyingSearch(BusySearch):
    """Loses the connection on the second bulk request."""

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls >= 2:
            raise OSConnectionError("N/A", "Connection refused", None)
        return self._client.bulk(*args, **kwargs)


def test_connection_lost_longer_than_retry_for_stops_with_exit_1_and_restores_settings(
    stack: Stack, tmp_path: Path
) -> None:
    from ddb2es_cli.errors import ConnectionFailed

    table = stack.create_table("dies")
    stack.put_items(table, sample_items(200, types=("y",)))
    settings = stack.settings(table)
    with pytest.raises(ConnectionFailed) as info:
        run_reindex(
            stack.ddb,
            DyingSearch(stack.es),
            settings,
            list(settings.tables),
            options(tmp_path, page_limit=20, bulk=BulkOptions(chunk_size=20, retry_for=0.2)),
        )
    assert "--resume" in str(info.value)
    index = f"{stack.prefix}y"
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
    state = RunState.load(tmp_path / "state.json")
    assert state is not None and state.unfinished() and not state.pending_restore
    # ... and --resume finishes the job.
    summary = run_reindex(
        stack.ddb,
        stack.es,
        settings,
        list(settings.tables),
        options(tmp_path, page_limit=20, resume=True),
    )
    assert summary.failures == 0
    assert counts(stack) == {index: 200}


def test_settings_left_by_a_dead_run_are_restored_by_the_next(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("dead")
    stack.put_items(table, sample_items(10, types=("z",)))
    index = f"{stack.prefix}z"
    stack.es.indices.create(index=index)
    before = current_load_settings(stack.es, index)
    stack.es.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    dead = RunState(tmp_path / "state.json", pending_restore={index: before})
    dead.save()
    settings = stack.settings(table)
    summary = run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path))
    assert index in summary.restored
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"


def test_bulk_load_settings_are_applied_during_the_load(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("tuned")
    stack.put_items(table, sample_items(60, types=("t",)))
    seen: list[dict[str, Any]] = []

    class Watching(BusySearch):
        def bulk(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(current_load_settings(self._client, f"{stack.prefix}t"))
            return self._client.bulk(*args, **kwargs)

    settings = stack.settings(table)
    run_reindex(stack.ddb, Watching(stack.es), settings, list(settings.tables), options(tmp_path))
    assert seen and all(s["refresh_interval"] == "-1" for s in seen)
    assert all(str(s["number_of_replicas"]) == "0" for s in seen)
    assert current_load_settings(stack.es, f"{stack.prefix}t")["refresh_interval"] != "-1"


def test_dry_run_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("dry")
    stack.put_items(table, sample_items(10))
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(stack.config_file(tmp_path, table)),
            "--json",
            "reindex",
            table,
            "--dry-run",
            "--state-file",
            str(tmp_path / "s.json"),
            "--failures",
            str(tmp_path / "f.ndjson"),
        ],
        env=stack.cli_env(),
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["tables"][0]["table"] == table
    assert plan["tables"][0]["estimated_items"] == 10
    assert stack.indices() == []
    assert not (tmp_path / "s.json").exists()


def wait_for_a_checkpoint(state: Path) -> None:
    """Until the run has saved at least one page's checkpoint: it is mid-way, not finished."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        saved = RunState.load(state) if state.exists() else None
        if saved and any(s.key for segs in saved.tables.values() for s in segs.values()):
            return
        time.sleep(0.02)
    raise AssertionError("the run saved no checkpoint within a minute")


def slow_reindex_command(stack: Stack, tmp_path: Path, table: str, state: Path) -> list[str]:
    """`ddb2es reindex` in small pages and chunks, capped to 20 RCU/s (some 15 s for 3,000
    items whatever the machine), so a test can stop it half-way."""
    config = str(stack.config_file(tmp_path, table))
    return [
        sys.executable,
        "-m",
        "ddb2es_cli",
        "--config",
        config,
        "--quiet",
        "reindex",
        table,
        "--segments",
        "2",
        "--page-size",
        "20",
        "--chunk-size",
        "20",
        "--state-file",
        str(state),
        "--failures",
        str(tmp_path / "f.ndjson"),
        "--max-rcu",
        "20",
    ]


def test_resume_after_kill_9_ends_with_every_document_once(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("killed")
    total = 3000
    stack.put_items(table, sample_items(total, types=("k",)))
    state = tmp_path / "state.json"
    args = slow_reindex_command(stack, tmp_path, table, state)
    env = {**os.environ, **stack.cli_env()}
    proc = subprocess.Popen(args, env=env, cwd=tmp_path)
    wait_for_a_checkpoint(state)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = RunState.load(state)
    assert saved is not None and saved.unfinished(), "killed too late: the run had finished"
    resumed = subprocess.run(
        [*args, "--resume", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["resumed"] is True
    assert summary["tables"][0]["scanned"] < total  # finished segments were not read again
    index = f"{stack.prefix}k"
    assert counts(stack) == {index: total}
    ids = {h["_id"] for h in stack.es.search(index=index, body={"size": 5000})["hits"]["hits"]}
    assert len(ids) == total


def test_doctor_reports_and_fixes_settings_left_by_a_dead_run(stack: Stack, tmp_path: Path) -> None:
    index = f"{stack.prefix}left"
    stack.es.indices.create(index=index)
    before = current_load_settings(stack.es, index)
    stack.es.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    RunState(tmp_path / "reindex-dead.json", pending_restore={index: before}).save()
    args = ["--json", "doctor", "--state-dir", str(tmp_path)]
    found = CliRunner().invoke(cli, args, env=stack.cli_env())
    assert found.exit_code == 1
    check = next(c for c in json.loads(found.output)["checks"] if c["name"] == "bulk-load settings")
    assert index in check["detail"] and not check["ok"]
    fixed = CliRunner().invoke(cli, [*args, "--fix"], env=stack.cli_env())
    check = next(c for c in json.loads(fixed.output)["checks"] if c["name"] == "bulk-load settings")
    assert check["ok"] and index in check["detail"], check
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
    after = json.loads(CliRunner().invoke(cli, args, env=stack.cli_env()).output)
    check = next(c for c in after["checks"] if c["name"] == "bulk-load settings")
    assert check["ok"], check


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_exits_130_saves_state_and_restores_settings(
    stack: Stack, tmp_path: Path, signum: int
) -> None:
    table = stack.create_table("interrupted")
    stack.put_items(table, sample_items(3000, types=("c",)))
    state = tmp_path / "state.json"
    args = slow_reindex_command(stack, tmp_path, table, state)
    proc = subprocess.Popen(
        args,
        env={**os.environ, **stack.cli_env()},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        # A background shell (nohup ... &) starts children with SIGINT ignored: undo that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    index = f"{stack.prefix}c"
    wait_for_a_checkpoint(state)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    saved = RunState.load(state)
    assert saved is not None and saved.unfinished() and not saved.pending_restore
    assert current_load_settings(stack.es, index)["refresh_interval"] != "-1"
