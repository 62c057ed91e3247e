"""The stream handler and the local runner, against DynamoDB Local's real streams and osmem."""

from __future__ import annotations

import base64
import json
import random
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddb2es_cli.clients import make_dynamodb_client
from ddb2es_cli.config import DynamoSettings
from ddb2es_cli.stream import (
    StreamConfig,
    apply_batch,
    batch_item_failures,
    lambda_handler,
)
from ddb2es_cli.stream_runner import StreamOptions, run_stream
from ddb2es_cli.transform import TableShape, to_document
from tests.conftest import Stack
from tests.test_reindex import raw_source

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-01-01T00:00:00.000"


def record(
    event: str,
    keys: dict[str, Any],
    seq: int,
    seconds: int,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    table: str = "t",
) -> dict[str, Any]:
    """A record as Lambda delivers it (JSON: binary as base64 text, time as epoch seconds)."""
    data: dict[str, Any] = {
        "ApproximateCreationDateTime": seconds,
        "Keys": keys,
        "SequenceNumber": str(seq),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        data["NewImage"] = new
    if old is not None:
        data["OldImage"] = old
    return {"eventName": event, "dynamodb": data, "eventSourceARN": ARN.format(table=table)}


def config(stack: Stack) -> StreamConfig:
    return StreamConfig(index_prefix=stack.prefix)


def source(stack: Stack, index: str, doc_id: str) -> dict[str, Any] | None:
    found = stack.es.mget(index=f"{stack.prefix}{index}", body={"ids": [doc_id]})["docs"][0]
    return found["_source"] if found.get("found") else None


def item(pk: str, kind: str = "Order", **attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "TYPE": {"S": kind}, **attrs}


KEY = {"pk": {"S": "a"}}
ID = '{"pk":"a"}'


# --- the handler on its own --------------------------------------------------------------------


def test_insert_modify_remove_and_batches_collapse(stack: Stack) -> None:
    records = [
        record("INSERT", KEY, 1, 1000, new=item("a", n={"N": "1"})),
        record("MODIFY", KEY, 2, 1000, new=item("a", n={"N": "2"}), old=item("a", n={"N": "1"})),
    ]
    result = apply_batch(stack.es, records, config(stack))
    assert result.first_failed is None and result.indexed == 1  # collapsed to the last write
    assert source(stack, "order", ID) == {"pk": "a", "TYPE": "Order", "n": 2}
    result = apply_batch(stack.es, [record("REMOVE", KEY, 3, 1001, old=item("a"))], config(stack))
    assert result.deleted == 1
    assert source(stack, "order", ID) is None


def test_redelivered_and_older_batches_never_overwrite_newer_state(stack: Stack) -> None:
    older = [record("INSERT", KEY, 1, 1000, new=item("a", v={"S": "old"}))]
    newer = [
        record(
            "MODIFY",
            KEY,
            2,
            2000,
            new=item("a", v={"S": "new"}),
            old=older[0]["dynamodb"]["NewImage"],
        )
    ]
    apply_batch(stack.es, newer, config(stack))
    again = apply_batch(stack.es, newer, config(stack))  # the same batch delivered twice
    late = apply_batch(stack.es, older, config(stack))  # an older batch after a newer one
    assert again.first_failed is None and late.first_failed is None
    assert late.conflicts == 1
    assert source(stack, "order", ID) == {"pk": "a", "TYPE": "Order", "v": "new"}
    # A delete that is older than the document does not remove it either.
    stale_delete = apply_batch(
        stack.es, [record("REMOVE", KEY, 0, 500, old=item("a"))], config(stack)
    )
    assert stale_delete.conflicts == 1
    assert source(stack, "order", ID) is not None


def test_type_change_moves_the_document(stack: Stack) -> None:
    apply_batch(stack.es, [record("INSERT", KEY, 1, 1000, new=item("a", "Order"))], config(stack))
    moved = record("MODIFY", KEY, 2, 1001, new=item("a", "Invoice"), old=item("a", "Order"))
    result = apply_batch(stack.es, [moved], config(stack))
    assert result.first_failed is None and result.indexed == 1 and result.deleted == 1
    assert source(stack, "order", ID) is None
    assert source(stack, "invoice", ID) == {"pk": "a", "TYPE": "Invoice"}


def test_binary_sets_and_exact_numbers_from_lambda_json(stack: Stack) -> None:
    b64 = base64.b64encode(b"\x00\xff").decode()
    new = item(
        "a",
        b={"B": b64},
        bs={"BS": [b64, "AQ=="]},
        ns={"NS": ["10", "9"]},
        ss={"SS": ["z", "y"]},
        big={"N": "1234567890123456789012345678.0123456789"},
    )
    apply_batch(stack.es, [record("INSERT", KEY, 1, 1000, new=new)], config(stack))
    stored = raw_source(stack.es_url, f"{stack.prefix}order", ID)
    assert stored["b"] == "AP8=" and stored["bs"] == ["AP8=", "AQ=="]
    assert stored["ns"] == [9, 10] and stored["ss"] == ["y", "z"]
    assert stored["big"] == Decimal("1234567890123456789012345678.0123456789")


def test_ids_over_512_bytes_use_the_hash_fallback(stack: Stack) -> None:
    long_key = {"pk": {"S": "x" * 600}}
    apply_batch(stack.es, [record("INSERT", long_key, 1, 1000, new=item("x" * 600))], config(stack))
    doc = to_document(item("x" * 600), TableShape("pk", index_prefix=stack.prefix))
    assert doc.id.startswith("sha256:")
    assert source(stack, "order", doc.id) is not None
    apply_batch(stack.es, [record("REMOVE", long_key, 2, 1001, old=item("x" * 600))], config(stack))
    assert source(stack, "order", doc.id) is None


class PartlyFailing:
    """The real client, but the bulk answer fails the documents whose id contains 'bad'."""

    def __init__(self, client: Any, status: int = 400) -> None:
        self._client = client
        self.status = status
        self.bulk_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.bulk_calls += 1
        response = self._client.bulk(*args, **kwargs)
        for entry in response["items"]:
            op = next(iter(entry.values()))
            if "bad" in op["_id"]:
                op["status"] = self.status
                op["error"] = {"type": "mapper_parsing_exception", "reason": "injected"}
                response["errors"] = True
        return response


PARTLY = [
    record("INSERT", {"pk": {"S": "ok1"}}, 10, 1000, new=item("ok1")),
    record("INSERT", {"pk": {"S": "bad1"}}, 11, 1000, new=item("bad1")),
    record("INSERT", {"pk": {"S": "ok2"}}, 12, 1000, new=item("ok2")),
    record("INSERT", {"pk": {"S": "bad2"}}, 13, 1000, new=item("bad2")),
]


def test_a_refused_document_is_a_permanent_failure_passed_over(stack: Stack) -> None:
    result = apply_batch(PartlyFailing(stack.es), PARTLY, config(stack))
    assert batch_item_failures(PARTLY, result) == {"batchItemFailures": []}
    assert {f.keys["pk"] for f in result.failed} == {"bad1", "bad2"}
    assert all(f.index == f"{stack.prefix}order" for f in result.failed)
    assert source(stack, "order", '{"pk":"ok2"}') is not None


def test_an_overloaded_document_names_the_first_record_to_retry(stack: Stack) -> None:
    result = apply_batch(PartlyFailing(stack.es, 502), PARTLY, config(stack))
    assert batch_item_failures(PARTLY, result) == {"batchItemFailures": [{"itemIdentifier": "11"}]}
    assert result.failed == [] and {f.keys["pk"] for f in result.retryable} == {"bad1", "bad2"}
    ok = apply_batch(stack.es, PARTLY[:1], config(stack))
    assert batch_item_failures(PARTLY[:1], ok) == {"batchItemFailures": []}


def test_invalid_type_is_a_permanent_failure_not_a_crash(stack: Stack) -> None:
    records = [record("INSERT", KEY, 5, 1000, new=item("a", "bad/type"))]
    result = apply_batch(stack.es, records, config(stack))
    assert batch_item_failures(records, result) == {"batchItemFailures": []}
    assert result.failed[0].reason.startswith("invalid_index_name")


def test_one_bulk_request_per_batch_split_only_by_size(stack: Stack) -> None:
    records = [
        record("INSERT", {"pk": {"S": f"k{i}"}}, i, 1000, new=item(f"k{i}", pad={"S": "p" * 1000}))
        for i in range(200)
    ]
    es = PartlyFailing(stack.es)
    apply_batch(es, records, config(stack))
    assert es.bulk_calls == 1
    small = StreamConfig(index_prefix=stack.prefix, max_bulk_bytes=50_000)
    es = PartlyFailing(stack.es)
    result = apply_batch(es, records, small)
    assert es.bulk_calls >= 4 and result.indexed == 200


def test_lambda_handler_reads_its_environment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ddb2es_cli.stream as stream_module

    monkeypatch.setattr(stream_module, "_CLIENT", None)
    monkeypatch.setenv("DDB2ES_ES_URL", stack.es_url)
    monkeypatch.setenv("DDB2ES_ES_AUTH", "none")
    monkeypatch.setenv("DDB2ES_INDEX_PREFIX", stack.prefix)
    monkeypatch.setenv("DDB2ES_TYPE_ATTRIBUTE", "kind")
    event = {
        "Records": [record("INSERT", KEY, 1, 1000, new={"pk": {"S": "a"}, "kind": {"S": "Thing"}})]
    }
    assert lambda_handler(event, None) == {"batchItemFailures": []}
    assert source(stack, "thing", ID) == {"pk": "a", "kind": "Thing"}


def test_handler_module_imports_no_cli_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ddb2es_cli.stream; "
        "print([m for m in ('click', 'rich', 'tqdm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the runner on real streams -----------------------------------------------------------------


def streams_client_for(stack: Stack) -> Any:
    return make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )


def run_once(stack: Stack, table: str, tmp_path: Path, **options: Any) -> Any:
    streams = make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )
    values: dict[str, Any] = {
        "until_caught_up": True,
        "state_path": tmp_path / "stream.json",
        "failures_path": tmp_path / "failures.ndjson",
        "poll_interval": 0.05,
    }
    values.update(options)
    settings = stack.settings(table)
    return run_stream(
        stack.ddb, streams, stack.es, settings, list(settings.tables), StreamOptions(**values)
    )


def test_runner_applies_inserts_updates_deletes_and_resumes(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("s", stream=True)
    stack.put_items(
        table, [item(f"k{i}", b={"B": bytes([i])}, ss={"SS": ["x", str(i)]}) for i in range(20)]
    )
    stack.ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "k1"}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "TYPE"},
        ExpressionAttributeValues={":t": {"S": "Invoice"}},
    )
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "k2"}})
    summary = run_once(stack, table, tmp_path)
    assert summary.tables[table].records == 22
    assert summary.failures == 0
    assert source(stack, "order", '{"pk":"k0"}') == {
        "pk": "k0",
        "TYPE": "Order",
        "b": "AA==",
        "ss": ["0", "x"],
    }
    assert source(stack, "order", '{"pk":"k1"}') is None
    assert source(stack, "invoice", '{"pk":"k1"}') is not None
    assert source(stack, "order", '{"pk":"k2"}') is None
    # The next run starts after the checkpoint: only new records are read.
    stack.put_items(table, [item("k99")])
    again = run_once(stack, table, tmp_path)
    assert again.tables[table].records == 1
    assert source(stack, "order", '{"pk":"k99"}') is not None


def table_documents(stack: Stack, table: str) -> dict[tuple[str, str], Any]:
    shape = TableShape("pk", index_prefix=stack.prefix)
    docs = {}
    for page in stack.ddb.get_paginator("scan").paginate(TableName=table):
        for found in page["Items"]:
            doc = to_document(found, shape)
            docs[(doc.index, doc.id)] = json.loads(doc.source)
    return docs


def index_documents(stack: Stack) -> dict[tuple[str, str], Any]:
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    docs = {}
    for index in stack.indices():
        hits = stack.es.search(index=index, body={"size": 10000})["hits"]["hits"]
        docs.update({(index, h["_id"]): h["_source"] for h in hits})
    return docs


def test_soak_random_writes_while_the_runner_follows_end_with_zero_drift(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("soak", stream=True)
    rng = random.Random(7)
    stop = threading.Event()
    streams = make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )
    settings = stack.settings(table)
    options = StreamOptions(
        state_path=tmp_path / "s.json",
        failures_path=tmp_path / "f.ndjson",
        poll_interval=0.05,
        batch_size=100,
    )
    runner = threading.Thread(
        target=run_stream,
        args=(stack.ddb, streams, stack.es, settings, list(settings.tables), options, stop),
    )
    runner.start()
    try:
        for n in range(2000):
            key = {"pk": {"S": f"k{rng.randrange(150)}"}}
            roll = rng.random()
            if roll < 0.55:
                stack.ddb.put_item(
                    TableName=table,
                    Item={
                        **key,
                        "TYPE": {"S": rng.choice(["Order", "Invoice", "Refund"])},
                        "n": {"N": str(n)},
                        "tags": {"SS": [f"t{rng.randrange(5)}", "all"]},
                    },
                )
            elif roll < 0.8:
                stack.ddb.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET #t = :t, n = :n",
                    ExpressionAttributeNames={"#t": "TYPE"},
                    ExpressionAttributeValues={
                        ":t": {"S": rng.choice(["Order", "Invoice"])},
                        ":n": {"N": str(n)},
                    },
                )
            else:
                stack.ddb.delete_item(TableName=table, Key=key)
    finally:
        stop.set()
        runner.join(timeout=60)
    # Catch up on what was written after the follower stopped, then compare everything.
    run_once(stack, table, tmp_path, state_path=tmp_path / "s.json")
    expected = table_documents(stack, table)
    assert len(expected) > 50
    actual = index_documents(stack)
    assert set(actual) == set(expected), "orphans or missing documents"
    assert actual == expected


def test_handler_imports_from_the_lambda_modules_alone(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from ddb2es_cli.stream import LAMBDA_MODULES

    package = tmp_path / "ddb2es_cli"
    package.mkdir()
    for module in LAMBDA_MODULES:
        shutil.copy2(Path(__file__).parent.parent / "ddb2es_cli" / module, package / module)
    # The editable install's import hook would quietly find a module missing from the zip in
    # the source tree: every ddb2es_cli module loaded must come from the copy. msgspec is
    # installed here but not in the zip (compiled; the zip carries pure-Python wheels only).
    code = (
        "import sys; sys.modules['msgspec'] = None; "
        "import ddb2es_cli.stream as s, ddb2es_cli.stream_observe; "
        "assert callable(s.lambda_handler); "
        "print('\\n'.join(m.__file__ for n, m in sys.modules.items() "
        "if n.startswith('ddb2es_cli')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"},
    )
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split()
    assert loaded and all(path.startswith(str(package)) for path in loaded), loaded


class ExpiringStreams:
    """The real streams client, but the first GetRecords says the iterator expired."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.expired = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **kwargs: Any) -> Any:
        if self.expired == 0:
            from botocore.exceptions import ClientError

            self.expired += 1
            raise ClientError(
                {"Error": {"Code": "ExpiredIteratorException", "Message": "expired"}},
                "GetRecords",
            )
        return self._client.get_records(**kwargs)


def test_runner_renews_an_expired_iterator(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("expiring", stream=True)
    stack.put_items(table, [item(f"k{i}") for i in range(3)])
    streams = ExpiringStreams(streams_client_for(stack))
    settings = stack.settings(table)
    summary = run_stream(
        stack.ddb,
        streams,
        stack.es,
        settings,
        list(settings.tables),
        StreamOptions(
            until_caught_up=True,
            state_path=tmp_path / "s.json",
            failures_path=tmp_path / "f.ndjson",
            poll_interval=0.05,
        ),
    )
    assert streams.expired == 1 and summary.tables[table].records == 3


def test_config_from_env_accepts_the_original_endpoint_variable() -> None:
    from ddb2es_cli.stream import config_from_env

    search, cfg = config_from_env(
        {
            "ELASTICSEARCH_ENDPOINT": "search-x.eu-west-1.es.amazonaws.com",
            "DDB2ES_INDEX_PREFIX": "app-",
        }
    )
    assert search.url == "https://search-x.eu-west-1.es.amazonaws.com"
    assert search.auth == "aws-sigv4" and cfg.index_prefix == "app-"
    with pytest.raises(ValueError):
        config_from_env({})


def test_writes_reach_a_generation_being_rebuilt_and_never_create_the_marker(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ddb2es_cli.stream_indices as indices_module

    monkeypatch.setattr(indices_module, "REBUILD_CHECK_SECONDS", 3600.0)  # a stale cache
    current, new = f"{stack.prefix}order", f"{stack.prefix}order-gen2"
    stack.es.indices.create(index=current)
    stack.es.indices.create(index=new)
    stack.es.indices.update_aliases(
        body={"actions": [{"add": {"index": new, "alias": current + "-rebuilding"}}]}
    )
    apply_batch(stack.es, [record("INSERT", KEY, 1, 1000, new=item("a"))], config(stack))
    assert stack.es.get(index=new, id=ID)["found"] and stack.es.get(index=current, id=ID)["found"]
    # reload swaps: the marker goes; the handler has not looked again yet.
    stack.es.indices.delete_alias(index=new, name=current + "-rebuilding")
    later = [
        record("INSERT", {"pk": {"S": "b"}}, 2, 1001, new=item("b")),
        record("REMOVE", KEY, 3, 1002, old=item("a")),
    ]
    result = apply_batch(stack.es, later, config(stack))
    assert result.first_failed is None, result.failed
    assert not stack.es.indices.exists(index=current + "-rebuilding")
