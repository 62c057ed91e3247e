"""The deployed handler's metrics (EMF on stdout) and JSON log lines, invoked against osmem."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import ddb2es_cli.stream as stream_module
from ddb2es_cli.redaction import _registered, register_secret
from ddb2es_cli.stream import lambda_handler
from tests.conftest import Stack
from tests.test_stream import PartlyFailing, item, record

TABLE = "orders-observed"
LAG = 120  # seconds: the records below were written this long ago
SECRET_VALUE = "private-note-7f3a"  # an attribute value: must never reach a metric or a log line
KEYS = ("ok1", "bad1", "ok2", "bad2")


def records(now: float) -> list[dict[str, Any]]:
    created = int(now) - LAG
    return [
        record(
            "INSERT",
            {"pk": {"S": pk}},
            10 + n,
            created - n,  # the first record is the newest
            new=item(pk, note={"S": SECRET_VALUE}),
            table=TABLE,
        )
        for n, pk in enumerate(KEYS)
    ]


@pytest.fixture
def handler_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("DDB2ES_ES_URL", stack.es_url)
    monkeypatch.setenv("DDB2ES_ES_AUTH", "none")
    monkeypatch.setenv("DDB2ES_INDEX_PREFIX", stack.prefix)
    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("DDB2ES_LOG_LEVEL", "POWERTOOLS_LOG_LEVEL", "DDB2ES_FAILURE_DESTINATION"):
        monkeypatch.delenv(name, raising=False)
    return stack


def invoke(
    es: Any, event: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Run the handler with this client; (answer, the EMF document, the JSON log lines)."""
    monkeypatch.setattr(stream_module, "_CLIENT", es)
    capsys.readouterr()
    answer = lambda_handler(event, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    emf = [line for line in lines if "_aws" in line]
    logs = [line for line in lines if "_aws" not in line]
    assert len(emf) == 1, lines
    assert_no_item_data(emf[0])
    return answer, emf[0], logs


def assert_no_item_data(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    for value in (*KEYS, SECRET_VALUE, "pk", "note"):
        assert value not in text, f"{value!r} leaked into a metric document: {text}"


def values(emf: dict[str, Any]) -> dict[str, Any]:
    """The metric values of an EMF document, after checking its declaration."""
    (declaration,) = emf["_aws"]["CloudWatchMetrics"]
    assert declaration["Namespace"] == "ddb2es"
    assert declaration["Dimensions"] == [["TableName"]]
    assert emf["TableName"] == TABLE
    names = {m["Name"]: m["Unit"] for m in declaration["Metrics"]}
    assert names == {
        "RecordsReceived": "Count",
        "DocumentsIndexed": "Count",
        "DocumentsDeleted": "Count",
        "VersionConflicts": "Count",
        "PermanentFailures": "Count",
        "RetryableFailures": "Count",
        "BulkLatency": "Milliseconds",
        "ReplicationLag": "Milliseconds",
    }
    # Powertools writes each value as a list (EMF allows several per document): one here.
    assert all(len(emf[name]) == 1 for name in names), emf
    return {name: emf[name][0] for name in names}


def outcome(got: dict[str, Any]) -> tuple[Any, ...]:
    return (got["DocumentsIndexed"], got["PermanentFailures"], got["RetryableFailures"])


def batch_line(logs: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [entry for entry in logs if entry.get("kind") == "batch"]
    assert line["service"] == "ddb2es-stream" and line["table"] == TABLE
    return line


def test_a_clean_batch_counts_indexed_deleted_and_the_lag(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = handler_env
    now = time.time()
    batch = records(now)
    ok1 = {"pk": {"S": "ok1"}}
    remove = record("REMOVE", ok1, 20, int(now) - LAG, old=item("ok1"), table=TABLE)
    answer, emf, logs = invoke(stack.es, {"Records": [*batch, remove]}, capsys, monkeypatch)
    assert answer == {"batchItemFailures": []}
    got = values(emf)
    assert {k: v for k, v in got.items() if k not in ("BulkLatency", "ReplicationLag")} == {
        "RecordsReceived": 5,
        "DocumentsIndexed": 3,  # ok1 is indexed and deleted in one batch: only the delete is sent
        "DocumentsDeleted": 1,
        "VersionConflicts": 0,
        "PermanentFailures": 0,
        "RetryableFailures": 0,
    }
    assert got["BulkLatency"] > 0
    # now minus the newest record's creation time (the handler's clock runs on after `now`)
    assert LAG * 1000 <= got["ReplicationLag"] < (LAG + 600) * 1000
    line = batch_line(logs)
    assert line["level"] == "INFO" and line["message"] == "stream batch"
    assert (line["received"], line["indexed"], line["deleted"], line["conflicts"]) == (5, 3, 1, 0)
    assert line["lag_ms"] == got["ReplicationLag"] and line["duration_ms"] >= line["bulk_ms"] > 0
    assert line["first_sequence"] == "10" and line["last_sequence"] == "20"
    assert line["stream"].startswith(f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}/")
    assert SECRET_VALUE not in json.dumps(logs)


def test_an_older_batch_counts_conflicts(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    invoke(handler_env.es, {"Records": records(now)}, capsys, monkeypatch)
    older = {"Records": records(now - 3600)}  # a late batch: a newer write already won
    answer, emf, logs = invoke(handler_env.es, older, capsys, monkeypatch)
    assert answer == {"batchItemFailures": []}
    got = values(emf)
    assert (got["DocumentsIndexed"], got["VersionConflicts"]) == (0, 4)
    assert batch_line(logs)["conflicts"] == 4


def test_permanent_failures_give_one_line_each_and_no_document(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    event = {"Records": records(time.time())}
    answer, emf, logs = invoke(PartlyFailing(handler_env.es), event, capsys, monkeypatch)
    assert answer == {"batchItemFailures": []}  # passed over
    got = values(emf)
    assert outcome(got) == (2, 2, 0)
    failures = [entry for entry in logs if entry.get("kind") == "permanent_failure"]
    assert [(f["keys"], f["level"]) for f in failures] == [
        ({"pk": "bad1"}, "ERROR"),
        ({"pk": "bad2"}, "ERROR"),
    ]
    assert all(f["table"] == TABLE for f in failures)
    assert all(f["index"] == f"{handler_env.prefix}order" for f in failures)
    assert all("injected" in f["reason"] and f["reason"].startswith("400") for f in failures)
    assert SECRET_VALUE not in json.dumps(logs)  # keys, never the document
    assert batch_line(logs)["permanent_failures"] == 2


def test_retryable_failures_are_counted_and_named_for_the_retry(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    event = {"Records": records(time.time())}
    answer, emf, logs = invoke(PartlyFailing(handler_env.es, 503), event, capsys, monkeypatch)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "11"}]}
    got = values(emf)
    assert outcome(got) == (2, 0, 2)
    line = batch_line(logs)
    assert line["level"] == "WARNING" and line["retryable_failures"] == 2
    assert not [entry for entry in logs if entry.get("kind") == "permanent_failure"]


def test_a_failure_destination_that_fails_turns_permanent_into_retryable(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DDB2ES_FAILURE_DESTINATION", "s3://no-such-bucket/failures")
    monkeypatch.setattr(stream_module, "destination_client", lambda _d: None)  # fails at once
    event = {"Records": records(time.time())}
    answer, emf, _logs = invoke(PartlyFailing(handler_env.es), event, capsys, monkeypatch)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "11"}]}
    got = values(emf)
    assert (got["PermanentFailures"], got["RetryableFailures"]) == (0, 2)


def test_the_log_level_comes_from_the_environment_and_lines_are_redacted(
    handler_env: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DDB2ES_LOG_LEVEL", "error")
    register_secret("hunter2-token")
    try:
        es = PartlyFailing(handler_env.es)
        original = es.bulk

        def bulk(*args: Any, **kwargs: Any) -> Any:
            response = original(*args, **kwargs)
            for entry in response["items"]:
                error = next(iter(entry.values())).get("error")
                if error:
                    error["reason"] = "refused with hunter2-token"
            return response

        monkeypatch.setattr(es, "bulk", bulk)
        _answer, emf, logs = invoke(es, {"Records": records(time.time())}, capsys, monkeypatch)
    finally:
        _registered.discard("hunter2-token")
    assert values(emf)["PermanentFailures"] == 2  # metrics do not depend on the log level
    assert {entry["kind"] for entry in logs} == {"permanent_failure"}  # no INFO batch line
    assert "hunter2-token" not in json.dumps(logs) and "***" in logs[0]["reason"]
