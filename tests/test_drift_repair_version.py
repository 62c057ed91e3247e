"""Repair versions that can repair (issue 9.6): a repair reads the item with a consistent read, so
its version trails the read by a short margin, not by the scan pages' five-minute overlap. A
document written by the stream a moment ago is repaired in one run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.clients import make_dynamodb_client
from ddb2es_cli.config import DynamoSettings, Settings, load_settings
from ddb2es_cli.drift import DriftOptions, run_drift
from ddb2es_cli.errors import ExitStatus
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.stream_runner import StreamOptions, run_stream
from tests.conftest import Stack, wait_for


def stream_once(stack: Stack, settings: Settings, tmp_path: Path) -> None:
    streams = make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )
    options = StreamOptions(
        until_caught_up=True,
        state_path=tmp_path / "stream.json",
        failures_path=tmp_path / "stream-failures.ndjson",
        poll_interval=0.05,
    )
    summary = run_stream(stack.ddb, streams, stack.es, settings, list(settings.tables), options)
    assert summary.failures == 0


def set_amount(stack: Stack, table: str, value: str) -> None:
    stack.ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "k1"}},
        UpdateExpression="SET amount = :a",
        ExpressionAttributeValues={":a": {"N": value}},
    )


def stored(stack: Stack, index: str) -> dict[str, Any]:
    found: dict[str, Any] = stack.es.get(index=index, id='{"pk":"k1"}')
    return found


def streamed_then_changed(stack: Stack, tmp_path: Path, settings: Settings) -> tuple[str, int]:
    """k1's document carries a stream version; then the item changes with no consumer running.
    Returns the index and the stream version (microseconds)."""
    table = settings.tables[0].name
    stack.put_items(table, [{"pk": {"S": f"k{i}"}, "TYPE": {"S": "Order"}} for i in range(5)])
    run_reindex(
        stack.ddb,
        stack.es,
        settings,
        list(settings.tables),
        ReindexOptions(segments=2, failures_path=None, state_path=tmp_path / "reindex.json"),
    )
    stream_once(stack, settings, tmp_path)  # the snapshot's own records
    set_amount(stack, table, "1")
    stream_once(stack, settings, tmp_path)
    index = f"{stack.prefix}order"
    doc = stored(stack, index)
    assert doc["_source"]["amount"] == 1
    set_amount(stack, table, "2")  # nobody streams this one: the index is stale now
    return index, int(doc["_version"])


def test_the_repair_margin_follows_the_endpoint_and_the_config(tmp_path: Path) -> None:
    from ddb2es_cli.transform import (
        DEFAULT_REPAIR_MARGIN_MS,
        LOCAL_REPAIR_MARGIN_MS,
        repair_version,
        scan_version,
    )

    aws = Settings(dynamodb=DynamoSettings(region="eu-west-1"))
    assert aws.repair_margin == DEFAULT_REPAIR_MARGIN_MS == 5_000
    for url in ("http://localhost:8000", "http://127.0.0.1:4566", "http://dynamodb:8000"):
        local = Settings(dynamodb=DynamoSettings(endpoint=url))
        assert local.repair_margin == LOCAL_REPAIR_MARGIN_MS == 60_000, url
    vpc = Settings(dynamodb=DynamoSettings(endpoint="https://dynamodb.eu-west-1.amazonaws.com"))
    assert vpc.repair_margin == 5_000
    config = tmp_path / "ddb2es.toml"
    config.write_text("[defaults]\nrepair_margin_ms = 2500\n")
    assert load_settings(config, {"dynamodb_endpoint": "http://localhost:1"}).repair_margin == 2500
    assert repair_version(1_000_000, 5_000) == 995_000_000
    assert scan_version(1_000_000, 300_000) == 700_000_000  # scan pages keep the long overlap


def test_drift_repair_fixes_a_document_the_stream_wrote_a_moment_ago(
    stack: Stack, tmp_path: Path
) -> None:
    """The default margin on DynamoDB Local (60 s: its stream times are cut to the minute)."""
    table = stack.create_table("rv", stream=True)
    settings = stack.settings(table)
    index, version = streamed_then_changed(stack, tmp_path, settings)
    # The stream version is the record's minute; a repair read once that minute is over must win
    # (the old 300 s overlap lost for five minutes).
    wait_for(
        lambda: time.time() * 1_000_000 - 60_000_000 >= version,
        "the stream record's minute to be over",
        timeout=75,
    )
    options = DriftOptions(segments=2, seed=1, sample=100, refresh=True, repair=True)
    report = run_drift(stack.ddb, stack.es, settings, list(settings.tables), options)
    assert report.repair is not None
    assert report.repair.newer_write_in_flight == 0, report.repair.as_dict()["steps"]
    assert report.repair.indexed == 1 and report.repair.verified == 1
    assert report.drifted and not report.drift_remains
    assert report.exit_status == ExitStatus.OK
    assert stored(stack, index)["_source"]["amount"] == 2
    after = run_drift(
        stack.ddb,
        stack.es,
        settings,
        list(settings.tables),
        DriftOptions(segments=2, seed=1, full=True, refresh=True),
    )
    assert not after.drifted, [t.reasons for t in after.tables]


def test_drift_repair_command_with_a_configured_margin_exits_0(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("rvc", stream=True)
    index, version = streamed_then_changed(stack, tmp_path, stack.settings(table))
    config = tmp_path / "ddb2es.toml"
    config.write_text(
        f'[defaults]\nindex_prefix = "{stack.prefix}"\nrepair_margin_ms = 1000\n\n'
        f'[[tables]]\nname = "{table}"\n'
    )
    wait_for(lambda: time.time() * 1_000_000 - 1_000_000 >= version, "one second", timeout=10)
    args = ["--config", str(config), "--json", "drift", table, "--seed", "1", "--refresh"]
    failures = str(tmp_path / "drift-failures.ndjson")
    repaired = CliRunner().invoke(
        cli, [*args, "--repair", "--yes", "--failures", failures], env=stack.cli_env()
    )
    assert repaired.exit_code == 0, repaired.output
    data = json.loads(repaired.stdout)
    assert data["drifted"] is True and data["drift_remains"] is False
    assert data["repair"]["indexed"] == 1 and data["repair"]["newer_write_in_flight"] == 0
    assert stored(stack, index)["_source"]["amount"] == 2
    clean = CliRunner().invoke(cli, [*args, "--full"], env=stack.cli_env())
    assert clean.exit_code == 0, clean.output
