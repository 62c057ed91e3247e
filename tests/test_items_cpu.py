"""Client CPU per item (issue 14): what the per-item work relies on, against the real servers.

No timings: each test checks the mechanism that saves the CPU (what the collector walks, what
the engine sends back), never how long anything took.
"""

from __future__ import annotations

import gc
from pathlib import Path

from ddb2es_cli.reindex import run_reindex
from tests.conftest import Stack
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
