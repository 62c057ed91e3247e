"""Client CPU per item (issue 14): what the per-item work relies on, against the real servers.

No timings: each test checks the mechanism that saves the CPU (what the collector walks, what
the engine sends back), never how long anything took.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ddb2es_cli import fast_decode
from ddb2es_cli.gc_tuning import collector_tuned_for_load
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.segments import default_segments
from ddb2es_cli.sink import BulkOptions, BulkWriter, index_action
from ddb2es_cli.transform import Document
from tests.conftest import Stack
from tests.faults import ClientWrapper
from tests.test_reindex import options, sample_items


class SeesTheCollector:
    """A Progress that notes the collector's settings while the run indexes pages."""

    def __init__(self) -> None:
        self.thresholds: list[tuple[int, int, int]] = []
        self.frozen: list[int] = []

    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        pass

    def advance(self, table: str, items: int) -> None:
        self.thresholds.append(gc.get_threshold())
        self.frozen.append(gc.get_freeze_count())


def test_the_collector_leaves_the_start_up_heap_alone_during_a_load(
    stack: Stack, tmp_path: Path
) -> None:
    """Full collections walked botocore's models and both client libraries again and again
    (about 18 us per small item): during the load they are frozen, young collections rarer;
    afterwards the process's own settings are back."""
    table = stack.create_table("gc")
    stack.put_items(table, sample_items(60))
    settings = stack.settings(table)
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    seen = SeesTheCollector()
    summary = run_reindex(
        stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path), seen
    )
    assert summary.failures == 0 and seen.thresholds
    assert all(t[0] >= 10 * before[0] for t in seen.thresholds)
    assert all(n > frozen_before + 10_000 for n in seen.frozen)  # the start-up heap is frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_a_failed_load_gives_the_collector_back(stack: Stack, tmp_path: Path) -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()

    class Boom(SeesTheCollector):
        def advance(self, table: str, items: int) -> None:
            raise RuntimeError("stop")

    table = stack.create_table("gcfail")
    stack.put_items(table, sample_items(5))
    settings = stack.settings(table)
    try:
        run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path), Boom())
    except Exception as exc:
        assert "stop" in str(exc) or isinstance(exc.__cause__, RuntimeError)
    else:
        raise AssertionError("the run should have stopped")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


class AnswerSizes(ClientWrapper):
    """Notes how many bytes of JSON each bulk answer held, per document."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.per_document: list[float] = []

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        response = self._client.bulk(*args, **kwargs)
        body = getattr(response, "body", response)
        size = len(json.dumps(body, separators=(",", ":")))
        self.per_document.append(size / max(1, len(body["items"])))
        return response


def test_bulk_answers_carry_only_what_the_writer_reads(any_stack: Stack) -> None:
    """The client library decodes every byte of a bulk answer (about 230 bytes per document
    unfiltered: versions, shards, sequence numbers); the writer reads status, id, index and
    error, and outcomes (a conflict, a mapping error) still reach their own document."""
    stack = any_stack
    index = f"{stack.prefix}answers"
    stack.es.indices.create(
        index=index, body={"mappings": {"properties": {"n": {"type": "integer"}}}}
    )
    docs = [Document(index, f'{{"pk":"{n}"}}', f'{{"n":{n}}}', "") for n in range(50)]
    bad = Document(index, '{"pk":"bad"}', '{"n":"not a number"}', "")
    es = AnswerSizes(stack.es)
    writer = BulkWriter(es, BulkOptions(chunk_size=100))
    first = list(writer.write([(index_action(d, 5), d.id) for d in [*docs, bad]]))
    again = list(writer.write([(index_action(docs[0], 4), "older")]))
    assert es.per_document[0] < 120  # the first request: 50 documents indexed, 1 rejected
    assert [r.tag for r in first] == [d.id for d in docs] + [bad.id]
    assert all(r.error is None and r.status in (200, 201) and r.index == index for r in first[:-1])
    assert first[-1].error is not None and first[-1].status == 400
    assert again[0].status == 409 and again[0].ok  # an older version: a conflict, not a failure


def test_a_freeze_made_before_the_load_is_left_in_place() -> None:
    """A program embedding ddb2es may have frozen its own heap (before forking workers): the
    load's end must not unfreeze it."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 1000
        # An unfreeze empties the permanent generation; frozen objects may still die meanwhile
        # (threads left by earlier tests drop theirs), so the count is compared with half of it.
        with collector_tuned_for_load():
            assert gc.get_freeze_count() > frozen // 2
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


class ScanCalls(ClientWrapper):
    """Notes each Scan's page size and segment count."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.calls: list[tuple[Any, Any]] = []

    def scan(self, **kwargs: Any) -> Any:
        self.calls.append((kwargs.get("Limit"), kwargs.get("TotalSegments")))
        return self._client.scan(**kwargs)


def test_a_load_reads_with_two_threads_per_core_in_pages_of_500(
    stack: Stack, tmp_path: Path
) -> None:
    """Each reader thread and each Scan request cost CPU of the one core a load runs on: 8
    threads reading 250-item pages (4 per core here) cost about a quarter more CPU per item than
    4 threads reading 500-item pages, which hold the same items in flight."""
    table = stack.create_table("readers")
    stack.put_items(table, sample_items(20))
    settings = stack.settings(table)
    ddb = ScanCalls(stack.ddb)
    defaults = ReindexOptions(
        failures_path=tmp_path / "failures.ndjson", state_path=tmp_path / "state.json"
    )
    summary = run_reindex(ddb, stack.es, settings, list(settings.tables), defaults)
    assert summary.failures == 0
    cores = os.cpu_count() or 1
    assert {limit for limit, _ in ddb.calls} == {500}
    assert {total for _, total in ddb.calls} == {max(2, 2 * cores)}
    assert max(2, 2 * cores) * 500 == max(4, 4 * cores) * 250  # the same items in flight
    assert default_segments() == max(4, 4 * cores)  # counting scans keep their segments


def test_scan_pages_are_decoded_by_msgspec_into_the_stdlib_s_values(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msgspec decodes a page of small items in about half the stdlib's time; what it refuses
    (an escaped lone surrogate, NaN, a number past a double) goes to the stdlib, so every item
    reads as before, integers of any size included."""
    decoded: list[int] = []
    real_decode = fast_decode._decode

    def counting_decode(body: Any) -> Any:
        decoded.append(len(body))
        return real_decode(body)

    monkeypatch.setattr(fast_decode, "_decode", counting_decode)
    table = stack.create_table("msgspec")
    stack.put_items(table, sample_items(30))
    settings = stack.settings(table)
    summary = run_reindex(stack.ddb, stack.es, settings, list(settings.tables), options(tmp_path))
    assert summary.failures == 0 and summary.tables[table].indexed == 30
    assert decoded  # the Scan pages went through msgspec

    for text in ('{"s":"\\ud83d\\ude00 \\u00e9","n":"1e-130","i":12345678901234567890123}',
                 '{"s":"\\ud800 lone"}', '{"f":NaN}', '{"e":1e400,"x":1.5}'):  # fmt: skip
        assert repr(fast_decode.decode_json(text.encode())) == repr(json.loads(text))
