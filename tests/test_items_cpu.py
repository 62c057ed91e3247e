"""Client CPU per item (issue 14): what the per-item work relies on, against the real servers.

No timings: each test checks the mechanism that saves the CPU (what the collector walks, what
the engine sends back), never how long anything took.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

from ddb2es_cli.gc_tuning import collector_tuned_for_load
from ddb2es_cli.reindex import run_reindex
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
        with collector_tuned_for_load():
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()
