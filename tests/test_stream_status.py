"""`ddb2es stream` shows the handler's counters and the lag: status lines, summary and --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.cli.stream import _status_line
from ddb2es_cli.stream_runner import StreamStatus
from tests.conftest import Stack
from tests.test_stream import PartlyFailing, item, run_once


class FirstBulkFails:
    """The real client, but the first bulk request raises (the whole batch is retried)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("injected: the cluster went away")
        return self._client.bulk(*args, **kwargs)


def test_the_runner_counts_what_the_handler_counts_and_the_lag(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = stack.create_table("counted", stream=True)
    stack.put_items(table, [item("ok1"), item("ok2"), item("bad1")])
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "ok2"}})
    seen: list[StreamStatus] = []
    monkeypatch.setattr(stack, "es", PartlyFailing(FirstBulkFails(stack.es)))
    summary = run_once(
        stack, table, tmp_path, status=seen.append, status_interval=0.0, initial_backoff=0.01
    )
    stats = summary.as_dict()["tables"][0]
    assert {k: stats[k] for k in ("records", "indexed", "deleted", "failed", "retried")} == {
        "records": 4,
        "indexed": 1,  # ok1 (ok2 was indexed and deleted in one page: only the delete is sent)
        "deleted": 1,
        "failed": 1,  # bad1, refused by the engine
        # The first bulk request failed: each of the 3 writes was not applied and tried again
        # (ok2's insert is no write of its own: its delete in the same page supersedes it).
        "retried": 3,
    }
    assert stats["conflicts"] == 0
    # DynamoDB Local cuts creation times to the minute: the lag is at least 0, under a few minutes
    assert stats["lag_seconds"] is not None and 0 <= stats["lag_seconds"] < 600
    assert seen, "no status report"
    last = seen[-1]
    assert (last.records, last.indexed, last.deleted, last.failed, last.retried) == (4, 1, 1, 1, 3)
    assert sum(s.applied for s in seen) == 4
    assert any(s.lag_seconds is not None for s in seen)


def test_status_lines_show_the_counters_as_text_and_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = StreamStatus(
        applied=5,
        records=12,
        indexed=9,
        deleted=2,
        conflicts=1,
        failed=1,
        retried=3,
        lag_seconds=4.2,
    )
    _status_line(0.2)(now)
    text = capsys.readouterr().err
    assert "stream: 5 records applied in the last 0.2 s (12 in all), lag 4 s;" in text
    assert "9 indexed, 2 deleted, 1 conflicts, 1 failed, 3 retried" in text
    _status_line(0.2, as_json=True)(now)
    line = json.loads(capsys.readouterr().err)
    assert {k: v for k, v in line.items() if k != "time"} == now.as_dict()


def test_the_json_summary_carries_the_counters_and_the_lag(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("summary", stream=True)
    stack.put_items(table, [item("a"), item("b")])
    config = stack.config_file(tmp_path, table)
    args = ["--config", str(config), "--json", "stream", table, "--until-caught-up"]
    args += ["--state-file", str(tmp_path / "s.json"), "--failures", str(tmp_path / "f.ndjson")]
    result = CliRunner().invoke(cli, args, env=stack.cli_env())
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["tables"]
    assert (row["records"], row["indexed"], row["retried"], row["failed"]) == (2, 2, 0, 0)
    assert isinstance(row["lag_seconds"], float)
