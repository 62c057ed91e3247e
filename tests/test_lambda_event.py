"""The Lambda handler's input: anything but a DynamoDB Streams batch is one clear error."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ddb2es_cli.stream import InvalidEvent, config_from_env, lambda_handler, stream_records

GOOD = {
    "eventSource": "aws:dynamodb",
    "eventName": "INSERT",
    "dynamodb": {
        "Keys": {"pk": {"S": "a"}},
        "SequenceNumber": "1",
        "ApproximateCreationDateTime": 1,
    },
}


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({}, "no Records list"),
        ({"Records": "x"}, "no Records list"),
        ([GOOD], "no Records list"),
        ({"Records": [{**GOOD, "eventSource": "aws:sqs"}]}, "'aws:sqs'"),
        ({"Records": [GOOD, {"eventName": "INSERT"}]}, "record 1 of the event lacks dynamodb"),
        (
            {"Records": [{**GOOD, "dynamodb": {"Keys": {}}}]},
            "lacks dynamodb.SequenceNumber, dynamodb.ApproximateCreationDateTime",
        ),
    ],
)
def test_what_is_not_a_streams_batch_names_what_is_missing(event: Any, named: str) -> None:
    with pytest.raises(InvalidEvent, match=named.replace(".", r"\.").replace("(", r"\(")):
        stream_records(event)


def test_a_streams_batch_passes() -> None:
    assert stream_records({"Records": [GOOD]}) == [GOOD]
    assert stream_records({"Records": []}) == []


def test_the_handler_logs_one_clear_error_and_fails_the_invocation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DDB2ES_ES_URL", "http://127.0.0.1:9")  # never contacted
    with caplog.at_level(logging.ERROR, logger="ddb2es.stream"), pytest.raises(InvalidEvent):
        lambda_handler({"Records": [{"eventName": "INSERT"}]})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["ddb2es stream handler: record 0 of the event lacks dynamodb"]


def test_verify_certs_in_the_environment_is_strict() -> None:
    env = {"DDB2ES_ES_URL": "https://search.example"}
    assert config_from_env({**env, "DDB2ES_ES_VERIFY_CERTS": "0"})[0].verify_certs is False
    assert config_from_env(env)[0].verify_certs is True
    with pytest.raises(ValueError, match="DDB2ES_ES_VERIFY_CERTS"):
        config_from_env({**env, "DDB2ES_ES_VERIFY_CERTS": "nope"})
