"""Exports as work units of a run of workers: data files claimed like scan segments, a taken-over
file read on from its last acknowledged line."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ddb2es_cli.export.location import open_location
from ddb2es_cli.export.manifest import load_export
from ddb2es_cli.export.reader import export_reader
from ddb2es_cli.source import SegmentTask
from ddb2es_cli.transform import scan_version
from tests.conftest import Stack
from tests.export_fixtures import s3_client, s3_url, upload_tree, write_full_export  # noqa: F401
from tests.scale_fixtures import run_cli
from tests.test_export import all_sources, expected_sources, version_of
from tests.test_reindex import sample_items

HOUR_MS = 3_600_000


def test_an_export_spread_over_two_worker_processes_indexes_every_item_once(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("xscale")
    items = sample_items(90)
    stack.put_items(table, items[:1])  # the table only gives the key schema
    taken = int(time.time() * 1000) - HOUR_MS
    files = [items[:20], [], items[20:50], items[50:70], items[70:]]
    export = write_full_export(tmp_path / "bucket", table, files, taken)
    done = run_cli(
        stack, tmp_path, "reindex", table, "--from-export", export.url, "--processes", "2", "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run"]["status"] == "done"
    assert summary["tables"][0]["scanned"] == 90 and summary["tables"][0]["rcu"] == 0
    stored = all_sources(stack.es_url, stack.prefix)
    assert stored == expected_sources(items, stack.prefix)
    index, doc_id = next(iter(stored))
    assert version_of(stack.es_url, index, doc_id) == scan_version(taken, 300_000)


def test_a_taken_over_data_file_is_read_on_from_its_saved_line(tmp_path: Path) -> None:
    items = sample_items(30)
    export = write_full_export(tmp_path / "bucket", "t-xscale", [items], 1_700_000_000_000)
    read = export_reader(load_export(open_location(export.url, lambda: None)), page_limit=8)
    # What a worker gets when it claims a unit another worker left at line 20.
    task = SegmentTask("t-xscale", 0, 1, None, {"line": 20})
    pages = list(read(task, threading.Event()))
    keys = [item["pk"] for page in pages for item in page.items]
    assert keys == [item["pk"] for item in items[20:]]
    assert [p.position for p in pages] == [{"line": 28}, {"line": 30}]
    assert [p.done for p in pages] == [False, True]


def test_workers_read_an_s3_export_through_the_endpoint_option(
    stack: Stack,
    tmp_path: Path,
    s3_url: str,  # noqa: F811 (the fixture)
) -> None:
    """Spawned workers get `--s3-endpoint` from the command line, not only from the config."""
    table = stack.create_table("xs3")
    items = sample_items(40)
    stack.put_items(table, items[:1])
    taken = int(time.time() * 1000) - HOUR_MS
    export = write_full_export(tmp_path / "bucket", table, [items[:15], items[15:]], taken)
    upload_tree(s3_client(s3_url), "exports", tmp_path / "bucket")
    done = run_cli(
        stack,
        tmp_path,
        "reindex",
        table,
        "--from-export",
        export.s3_url("exports"),
        "--s3-endpoint",
        s3_url,
        "--processes",
        "2",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert all_sources(stack.es_url, stack.prefix) == expected_sources(items, stack.prefix)


def test_reload_from_an_export_over_two_worker_processes(stack: Stack, tmp_path: Path) -> None:
    """The load of `reload --from-export --processes 2` is a run of workers with a unit per data
    file; the reload itself verifies against the export, replays the stream and swaps."""
    from tests.test_reload import alias_documents
    from tests.test_reload_export import export_now
    from tests.test_stream import table_documents

    table = stack.create_table("xreload", stream=True)
    stack.put_items(table, sample_items(80, types=("x", "y")))
    # More data files than a table this size gets units: each file must be a unit.
    export = export_now(stack, table, tmp_path / "bucket", files=20)
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "key-00004"}})
    done = run_cli(
        stack,
        tmp_path,
        "reload",
        table,
        "--from-export",
        export.url,
        "--processes",
        "2",
        "--yes",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["verified"] and summary["reindex"]["tables"][0]["rcu"] == 0
    assert summary["reindex"]["tables"][0]["scanned"] == 80
    assert alias_documents(stack) == table_documents(stack, table)
