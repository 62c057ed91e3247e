"""Late snapshot writes (docs/spec.md, "Late writes"): a scan page's write that could not be sent
for longer than a delete's tombstone lives must be re-read, never resurrect the deleted item."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ddb2es_cli.clients import make_dynamodb_client
from ddb2es_cli.config import DynamoSettings
from ddb2es_cli.reindex import ReindexOptions, ReindexSummary, run_reindex
from ddb2es_cli.sink import BulkOptions, parse_time_ms
from ddb2es_cli.stream import StreamConfig, apply_batch
from ddb2es_cli.transform import TableShape, to_document
from tests.conftest import Stack, wait_for
from tests.faults import HoldDocument

GC_DELETES = "1s"


def remove_records(stack: Stack, table: str) -> list[dict[str, Any]]:
    """The REMOVE records of the table's stream, read from the start of its shards."""
    streams = make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )
    arn = stack.ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    found: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            found += [r for r in page["Records"] if r["eventName"] == "REMOVE"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return found


def test_a_write_held_past_the_tombstone_does_not_resurrect_a_deleted_item(
    any_stack: Stack, tmp_path: Path
) -> None:
    stack = any_stack
    table = stack.create_table("late", stream=True)
    items = [
        {"pk": {"S": f"key-{n:03d}"}, "TYPE": {"S": "x"}, "n": {"N": str(n)}} for n in range(30)
    ]
    stack.put_items(table, items)
    index = f"{stack.prefix}x"
    # Tombstones of this index live one second (osmem honours it; noida-db keeps none at all).
    stack.es.indices.create(index=index, body={"settings": {"index": {"gc_deletes": GC_DELETES}}})
    victim = to_document(items[7], TableShape("pk", index_prefix=stack.prefix)).id
    es = HoldDocument(stack.es, victim)
    settings = stack.settings(table)
    outcome: dict[str, Any] = {}

    def reindex() -> None:
        try:
            outcome["summary"] = run_reindex(
                stack.ddb,
                es,
                settings,
                list(settings.tables),
                ReindexOptions(
                    segments=2,
                    failures_path=tmp_path / "failures.ndjson",
                    state_path=tmp_path / "state.json",
                    bulk=BulkOptions(chunk_size=5, initial_backoff=0.05, max_backoff=0.2),
                ),
            )
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=reindex)
    worker.start()
    wait_for(lambda: es.held_event.is_set() or not worker.is_alive(), "the victim's first 429")
    assert "error" not in outcome, outcome.get("error")
    stack.ddb.delete_item(TableName=table, Key={"pk": items[7]["pk"]})
    wait_for(lambda: remove_records(stack, table), "the REMOVE record")
    result = apply_batch(
        stack.es, remove_records(stack, table), StreamConfig(index_prefix=stack.prefix)
    )
    assert result.first_failed is None
    deleted = time.monotonic()
    # The engine may forget the delete once its tombstone expired: only then let the write through.
    tombstone_s = (parse_time_ms(GC_DELETES) or 0) / 1000
    es.released = lambda: time.monotonic() > deleted + 2 * tombstone_s
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    summary: ReindexSummary = outcome["summary"]
    stack.es.indices.refresh(index=index)
    assert not stack.es.exists(index=index, id=victim)
    assert stack.es.count(index=index)["count"] == 29
    assert summary.failures == 0
    assert summary.tables[table].gone == 1


def test_a_repair_write_held_past_the_tombstone_is_not_sent(
    any_stack: Stack, tmp_path: Path
) -> None:
    """A repair reads the item, then the cluster holds its write back; meanwhile the item is
    deleted (and the delete applied). Sent after the tombstone expired, the write would bring the
    item back: it is not sent, and the run reports drift remaining (the next run reads again)."""
    from ddb2es_cli.drift import DriftOptions, run_drift
    from ddb2es_cli.sink import BulkWriter, delete_action
    from ddb2es_cli.transform import stream_version
    from tests.test_drift import key_of, load, make_item

    stack = any_stack
    loaded = load(stack, tmp_path, 20)
    victim = to_document(make_item(5), loaded.shape)
    stack.es.indices.put_settings(index=victim.index, body={"index": {"gc_deletes": GC_DELETES}})
    loaded.delete_from_index(5)  # drift: the repair will want to index it again
    es = HoldDocument(stack.es, victim.id)
    settings = stack.settings(loaded.table)
    outcome: dict[str, Any] = {}

    def repair() -> None:
        try:
            outcome["report"] = run_drift(
                stack.ddb,
                es,
                settings,
                list(settings.tables),
                DriftOptions(full=True, repair=True, refresh=True, seed=1),
            )
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=repair)
    worker.start()
    wait_for(lambda: es.held_event.is_set() or not worker.is_alive(), "the repair's write")
    assert "error" not in outcome, outcome.get("error")
    stack.ddb.delete_item(TableName=loaded.table, Key=key_of(5))
    # The stream handler's delete of it, with the version its stream record would carry.
    delete = delete_action(victim.index, victim.id, stream_version(time.time()))
    assert all(
        r.error is None or r.status == 404 for r in BulkWriter(stack.es).write([(delete, 0)])
    )
    deleted = time.monotonic()
    tombstone_s = (parse_time_ms(GC_DELETES) or 0) / 1000
    es.released = lambda: time.monotonic() > deleted + 2 * tombstone_s
    worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    stack.es.indices.refresh(index=victim.index)
    assert not stack.es.exists(index=victim.index, id=victim.id)
    assert report.repair.held_too_long == 1
    assert report.exit_status == 3  # drift remains: the next run reads the item again
