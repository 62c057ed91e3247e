"""`reload --from-export`: generations loaded from a full export, verified against it exactly,
then brought current by the stream replay from the export's time (real servers)."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.errors import ConfigError, ConnectionFailed
from ddb2es_cli.export.rebuild import ExportSource, export_source
from ddb2es_cli.reload import ReloadOptions, run_reload
from ddb2es_cli.reload_export import check_replayable
from ddb2es_cli.sink import BulkOptions
from tests.conftest import Stack
from tests.export_fixtures import ExportFiles, write_full_export
from tests.test_export import now_ms
from tests.test_reindex import options as reindex_options
from tests.test_reindex import sample_items
from tests.test_reload import (
    ENGINE,
    LosesConnection,
    alias_documents,
    alias_targets,
    run_handler,
    streams_client,
)
from tests.test_reload import (
    state_in_tmp as state_in_tmp,
)
from tests.test_stream import table_documents

HOUR_S = 3600
GENERATION = re.compile(r"-\d{8}t\d{9}z\Z")


def table_items(stack: Stack, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in stack.ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page["Items"])
    return items


def export_now(stack: Stack, table: str, root: Path, files: int = 3) -> ExportFiles:
    """The table as it is now, written as a full export (`files` data files, the second
    empty, as an empty partition gives)."""
    items = table_items(stack, table)
    taken = now_ms()
    parts = [items[n :: files - 1] for n in range(files - 1)]
    return write_full_export(root, table, [parts[0], [], *parts[1:]], taken)


def source_of(export: ExportFiles, table: str) -> ExportSource:
    return export_source(export.url, table, lambda: None, workers=3, page_limit=20)


def reload_from(
    stack: Stack, table: str, export: ExportFiles, tmp_path: Path, **overrides: Any
) -> Any:
    settings = stack.settings(table)
    overrides.setdefault("marker_wait", 0.5)
    es = overrides.pop("es", stack.es)
    overrides.setdefault("reindex", reindex_options(tmp_path, state_path=None))
    opts = ReloadOptions(exports={table: source_of(export, table)}, **overrides)
    return run_reload(
        es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), opts
    )


def count_scans(stack: Stack) -> list[int]:
    """Scan calls of the test's DynamoDB client from now on (a botocore event: the real call)."""
    calls = [0]

    def seen(**_kwargs: Any) -> None:
        calls[0] += 1

    stack.ddb.meta.events.register("before-call.dynamodb.Scan", seen)
    return calls


def change_after_export(stack: Stack, table: str, rng: random.Random, n: int) -> None:
    """Deletes, updates with TYPE changes and inserts, as production does after an export."""
    for i in range(n):
        key = {"pk": {"S": f"key-{rng.randrange(150):05d}"}}
        roll = rng.random()
        if roll < 0.35:
            stack.ddb.delete_item(TableName=table, Key=key)
        elif roll < 0.7:
            stack.ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #t = :t, n = :n",
                ExpressionAttributeNames={"#t": "TYPE"},
                ExpressionAttributeValues={":t": {"S": rng.choice("xyz")}, ":n": {"N": str(i)}},
            )
        else:
            stack.ddb.put_item(
                TableName=table, Item={**key, "TYPE": {"S": rng.choice("xy")}, "n": {"N": str(i)}}
            )


def test_changes_after_the_export_reach_the_swapped_generation_and_deletes_stay_deleted(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("window", stream=True)
    stack.put_items(table, sample_items(120, types=("x", "y")))
    export = export_now(stack, table, tmp_path / "bucket")
    deleted = [{"pk": {"S": f"key-{i:05d}"}} for i in range(0, 120, 7)]
    for key in deleted:
        stack.ddb.delete_item(TableName=table, Key=key)
    change_after_export(stack, table, random.Random(5), 80)
    scans = count_scans(stack)
    summary = reload_from(stack, table, export, tmp_path)
    assert summary.verified and summary.reindex.failures == 0
    assert scans[0] == 0, "a reload from an export reads no table"
    assert summary.reindex.tables[table].rcu == 0
    assert summary.replayed > 0
    # Each index holds what the export held; the changes since came from the stream.
    assert {v["expected"] for v in summary.verify.values()} != {0}
    assert sorted(summary.swapped) == [f"{stack.prefix}x", f"{stack.prefix}y"]
    assert alias_documents(stack) == table_documents(stack, table)
    assert not [i for i in stack.indices() if i.endswith("-rebuilding")]


def test_a_busy_table_verifies_exactly_while_the_stream_handler_runs(
    stack: Stack, tmp_path: Path
) -> None:
    """Nothing but the load writes a generation before its verification, so it equals the
    export with tolerance 0 while the table takes writes; the markers and the replay come after
    and lose nothing."""
    table = stack.create_table("busy", stream=True)
    stack.put_items(table, sample_items(150, types=("x", "y")))
    settings = stack.settings(table)
    export = export_now(stack, table, tmp_path / "bucket")
    stop = threading.Event()

    def follow() -> None:  # the deployed handler
        run_handler(stack, settings, tmp_path, stop)

    def write() -> None:
        rng = random.Random(11)
        while not stop.is_set():
            change_after_export(stack, table, rng, 10)

    threads = [threading.Thread(target=follow), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    try:
        summary = reload_from(stack, table, export, tmp_path, verify_tolerance=0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert summary.verified
    run_handler(stack, settings, tmp_path)  # what it would have done with the last writes
    assert alias_documents(stack) == table_documents(stack, table)


def test_an_interrupted_load_leaves_no_marker_and_resume_finishes_it(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("resume", stream=True)
    stack.put_items(table, sample_items(300, types=("x", "y")))
    settings = stack.settings(table)
    first = ReloadOptions(reindex=reindex_options(tmp_path, state_path=None), marker_wait=0.2)
    run_reload(  # aliases exist, as in production
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), first
    )
    export = export_now(stack, table, tmp_path / "bucket")
    change_after_export(stack, table, random.Random(2), 40)
    before = alias_targets(stack)
    small = reindex_options(
        tmp_path, state_path=None, page_limit=20, bulk=BulkOptions(chunk_size=20, retry_for=0.2)
    )
    with pytest.raises(ConnectionFailed):
        reload_from(stack, table, export, tmp_path, es=LosesConnection(stack.es, 3), reindex=small)
    # The partial generation serves nobody, and no marker lets the stream handler write it.
    assert alias_targets(stack) == before
    assert [i for i in stack.indices() if GENERATION.search(i) and i not in str(before)]
    summary = reload_from(stack, table, export, tmp_path, reindex=replace(small, resume=True))
    assert summary.verified
    assert summary.reindex is not None and summary.reindex.resumed
    assert alias_documents(stack) == table_documents(stack, table)


def test_exports_whose_changes_cannot_be_replayed_are_refused(stack: Stack, tmp_path: Path) -> None:
    plain = stack.create_table("nostream")
    stack.put_items(plain, sample_items(5))
    export = export_now(stack, plain, tmp_path / "a")
    settings = stack.settings(plain)
    with pytest.raises(ConfigError, match="has no stream"):
        check_replayable(stack.ddb, settings, {plain: source_of(export, plain)}, time.time())

    streamed = stack.create_table("streamed", stream=True)
    stack.put_items(streamed, sample_items(5))
    export = export_now(stack, streamed, tmp_path / "b")
    settings = stack.settings(streamed)
    sources = {streamed: source_of(export, streamed)}
    check_replayable(stack.ddb, settings, sources, time.time())  # fresh: fine
    with pytest.raises(ConfigError, match="too old"):
        check_replayable(stack.ddb, settings, sources, time.time() + 23 * HOUR_S)

    old = write_full_export(tmp_path / "c", streamed, [sample_items(5)], now_ms() - 2 * 3600_000)
    label = stack.ddb.describe_table(TableName=streamed)["Table"].get("LatestStreamLabel")
    if label:  # the stream is younger than that export: its changes are in no stream
        with pytest.raises(ConfigError, match="was enabled at"):
            check_replayable(stack.ddb, settings, {streamed: source_of(old, streamed)}, time.time())


def run_cli(stack: Stack, tmp_path: Path, table: str, *args: str) -> Any:
    config = str(stack.config_file(tmp_path, table))
    return CliRunner().invoke(
        cli, ["--config", config, "--quiet", *args], env=stack.cli_env(), catch_exceptions=False
    )


def test_cli_refusals_are_one_line_with_exit_2(stack: Stack, tmp_path: Path) -> None:
    plain = stack.create_table("cli-nostream")
    stack.put_items(plain, sample_items(5))
    export = export_now(stack, plain, tmp_path / "a")
    result = run_cli(stack, tmp_path, plain, "reload", plain, "--from-export", export.url, "--yes")
    assert result.exit_code == 2, result.output
    assert "has no stream" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    streamed = stack.create_table("cli-streamed", stream=True)
    stack.put_items(streamed, sample_items(5))
    export = export_now(stack, streamed, tmp_path / "b")
    args = ["reload", streamed, "--from-export", export.url, "--yes"]
    result = run_cli(stack, tmp_path, streamed, *args, "--strategy", "delete")
    assert result.exit_code == 2 and "blue-green" in result.stderr
    result = run_cli(stack, tmp_path, streamed, "reload", streamed, "--max-read-mbps", "5")
    assert result.exit_code == 2 and "--from-export only" in result.stderr
    other = export_now(stack, plain, tmp_path / "c")
    result = run_cli(stack, tmp_path, streamed, "reload", streamed, "--from-export", other.url)
    assert result.exit_code == 2 and "which this reload does not name" in result.stderr
    assert not stack.indices(), "a refused reload creates nothing"


def test_cli_dry_run_reads_the_export_and_changes_nothing_then_the_run_swaps(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("cli", stream=True)
    stack.put_items(table, sample_items(40, types=("x", "y")))
    export = export_now(stack, table, tmp_path / "bucket")
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "key-00003"}})
    result = run_cli(
        stack, tmp_path, table, "reload", table, "--from-export", export.url, "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert f"Reads export {export.url} of {table}" in result.output
    assert "20 items" in result.output  # x and y: 20 each in the export
    assert not stack.indices()
    result = run_cli(
        stack, tmp_path, table, "reload", table, "--from-export", export.url, "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    assert alias_documents(stack) == table_documents(stack, table)
