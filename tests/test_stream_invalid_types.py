"""Invalid TYPE values in the stream (issue 9, item 2), and where permanent failures go.

Against DynamoDB Local's real streams, both search engines, and moto's SQS and S3 for the
Lambda's failure destination.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddb2es_cli.stream import (
    StreamConfig,
    apply_batch,
    batch_item_failures,
    lambda_handler,
    send_failures,
)
from ddb2es_cli.transform import TableShape, TransformError, invalid_index_reason, to_document
from tests.conftest import Stack
from tests.servers import moto_server
from tests.test_stream import ID, KEY, config, item, record, run_once, source

# --- the one index-name check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [".kibana", ".security-7", ".x", "a\x00b", "a\tb", "a\x7fb", "a\x85"]
)
def test_hidden_and_control_character_names_are_invalid(name: str) -> None:
    assert invalid_index_reason(name) is not None
    with pytest.raises(TransformError) as info:
        to_document(item("a", name), TableShape("pk"))
    assert info.value.reason == "invalid_index_name"


def test_the_check_applies_to_the_final_name() -> None:
    # A prefix makes `.kibana` an ordinary name: `app-.kibana` is neither hidden nor a system index.
    doc = to_document(item("a", ".Kibana"), TableShape("pk", index_prefix="app-"))
    assert doc.index == "app-.kibana"


# --- the handler --------------------------------------------------------------------------------


def test_modify_from_an_invalid_type_indexes_the_corrected_item(any_stack: Stack) -> None:
    stack = any_stack
    fixed = record("MODIFY", KEY, 2, 1001, new=item("a", "Order"), old=item("a", "bad name"))
    result = apply_batch(stack.es, [fixed], config(stack))
    assert result.failed == [] and result.first_failed is None
    assert result.indexed == 1
    stack.es.indices.refresh(index=f"{stack.prefix}order")
    assert source(stack, "order", ID) == {"pk": "a", "TYPE": "Order"}


def test_modify_to_an_invalid_type_deletes_the_old_document_and_fails(any_stack: Stack) -> None:
    stack = any_stack
    apply_batch(stack.es, [record("INSERT", KEY, 1, 1000, new=item("a"))], config(stack))
    broken = [record("MODIFY", KEY, 2, 1001, new=item("a", "bad name"), old=item("a"))]
    result = apply_batch(stack.es, broken, config(stack))
    assert result.deleted == 1
    assert [(f.reason.split(":")[0], f.index) for f in result.failed] == [
        ("invalid_index_name", f"{stack.prefix}bad name")
    ]
    assert batch_item_failures(broken, result) == {"batchItemFailures": []}  # passed over
    stack.es.indices.refresh(index=f"{stack.prefix}order")
    assert source(stack, "order", ID) is None


def test_remove_of_an_item_with_an_invalid_type_is_a_no_op(any_stack: Stack) -> None:
    stack = any_stack
    gone = [record("REMOVE", KEY, 3, 1002, old=item("a", "bad name"))]
    result = apply_batch(stack.es, gone, config(stack))
    assert result.failed == [] and result.first_failed is None and result.skipped == 1


def test_hidden_index_names_are_never_written(stack: Stack) -> None:
    hidden = f".{stack.prefix}kibana"
    records = [
        record("INSERT", KEY, 1, 1000, new=item("a", hidden)),
        record("INSERT", {"pk": {"S": "b"}}, 2, 1000, new=item("b", "a\x01b")),
    ]
    result = apply_batch(stack.es, records, StreamConfig())
    assert [f.reason.split(":")[0] for f in result.failed] == ["invalid_index_name"] * 2
    assert not stack.es.indices.exists(index=hidden)


# --- the runner: the failures file ---------------------------------------------------------------


def set_type(stack: Stack, table: str, pk: str, kind: str) -> None:
    stack.ddb.update_item(
        TableName=table,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "TYPE"},
        ExpressionAttributeValues={":t": {"S": kind}},
    )


def test_runner_follows_type_changes_through_invalid_values(
    any_stack: Stack, tmp_path: Path
) -> None:
    stack = any_stack
    table = stack.create_table("badtypes", stream=True)
    stack.put_items(table, [item("fixed", "bad name"), item("broken"), item("gone", "bad name")])
    set_type(stack, table, "fixed", "Order")  # invalid -> valid: indexed
    set_type(stack, table, "broken", "bad name")  # valid -> invalid: old document deleted
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "gone"}})  # never indexed: no-op
    summary = run_once(stack, table, tmp_path)
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    assert source(stack, "order", '{"pk":"fixed"}') == {"pk": "fixed", "TYPE": "Order"}
    assert source(stack, "order", '{"pk":"broken"}') is None
    failures = [
        json.loads(line) for line in (tmp_path / "failures.ndjson").read_text().splitlines()
    ]
    # The two writes of an invalid TYPE (put of "fixed" and "gone") and the change of "broken".
    assert sorted(f["key"]["pk"] for f in failures) == ["broken", "fixed", "gone"]
    assert all("invalid_index_name" in f["reason"] for f in failures)
    assert all(f["index"] == f"{stack.prefix}bad name" for f in failures)
    assert summary.failures == 3
    # Passed over: the checkpoint is past them, a second run reads nothing again.
    again = run_once(stack, table, tmp_path)
    assert again.tables[table].records == 0 and again.failures == 0


# --- the Lambda: the failure destination --------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def aws_client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def failing_batch(stack: Stack) -> tuple[list[dict[str, Any]], Any]:
    records = [
        record("INSERT", {"pk": {"S": "ok"}}, 1, 1000, new=item("ok", secret={"S": "s3cr3t"})),
        record("INSERT", KEY, 2, 1000, new=item("a", "bad name", secret={"S": "s3cr3t"})),
    ]
    return records, apply_batch(stack.es, records, config(stack))


def test_failures_go_to_an_s3_prefix_without_document_bodies(stack: Stack, moto_url: str) -> None:
    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="ddb2es-failures")
    _records, result = failing_batch(stack)
    send_failures(result.failed, "s3://ddb2es-failures/stream/", s3)
    listed = s3.list_objects_v2(Bucket="ddb2es-failures", Prefix="stream/")["Contents"]
    assert len(listed) == 1 and listed[0]["Key"].endswith(".ndjson")
    body = s3.get_object(Bucket="ddb2es-failures", Key=listed[0]["Key"])["Body"].read().decode()
    assert "s3cr3t" not in body
    (line,) = [json.loads(x) for x in body.splitlines()]
    assert line["keys"] == {"pk": "a"} and line["reason"].startswith("invalid_index_name")
    assert line["sequence"] == "2" and line["table"] == "t"


def test_lambda_sends_permanent_failures_to_the_queue_and_passes_over(
    stack: Stack, moto_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ddb2es_cli.stream as stream_module

    sqs = aws_client("sqs", moto_url)
    queue = sqs.create_queue(QueueName=f"{stack.prefix}failures")["QueueUrl"]
    monkeypatch.setattr(stream_module, "_CLIENT", None)
    for name, value in {
        "DDB2ES_ES_URL": stack.es_url,
        "DDB2ES_ES_AUTH": "none",
        "DDB2ES_INDEX_PREFIX": stack.prefix,
        "DDB2ES_FAILURE_DESTINATION": queue,
        "AWS_ENDPOINT_URL_SQS": moto_url,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }.items():
        monkeypatch.setenv(name, value)
    records, _ = failing_batch(stack)
    with caplog.at_level(logging.INFO, logger="ddb2es.stream"):
        assert lambda_handler({"Records": records}) == {"batchItemFailures": []}
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    (sent,) = [json.loads(m["Body"]) for m in messages]
    assert sent["keys"] == {"pk": "a"} and sent["index"] == f"{stack.prefix}bad name"
    assert "s3cr3t" not in json.dumps(sent) and "s3cr3t" not in caplog.text
    assert "failed permanently" in caplog.text
    assert source(stack, "order", '{"pk":"ok"}') is not None


def test_lambda_retries_the_batch_when_the_destination_is_unreachable(
    stack: Stack, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ddb2es_cli.stream as stream_module

    monkeypatch.setattr(stream_module, "_CLIENT", None)
    for name, value in {
        "DDB2ES_ES_URL": stack.es_url,
        "DDB2ES_ES_AUTH": "none",
        "DDB2ES_INDEX_PREFIX": stack.prefix,
        "DDB2ES_FAILURE_DESTINATION": "s3://no-such-bucket-here/x",
        "AWS_ENDPOINT_URL_S3": moto_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }.items():
        monkeypatch.setenv(name, value)
    records, _ = failing_batch(stack)
    # Not recorded anywhere durable: the failed record is retried rather than lost.
    assert lambda_handler({"Records": records}) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
