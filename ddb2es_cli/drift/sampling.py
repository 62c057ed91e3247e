"""The sample: bottom-k over the exact count scan (see counts.py), or random segments of a finely
cut table when counts are estimated; and the check of the sampled items against their documents."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import random
from collections.abc import Iterator
from typing import Any

from ddb2es_cli.drift.compare import differing_fields, parse_document
from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.report import Finding
from ddb2es_cli.drift.tables import DriftTable, batch_get
from ddb2es_cli.source import SegmentTask, key_for_state
from ddb2es_cli.transform import Document, TransformError, index_name, to_document

MAX_SEGMENTS = 1_000_000  # DynamoDB's limit for TotalSegments
ITEMS_PER_SEGMENT = 8  # how finely the estimate cuts the table for sampling
PILOT_SEGMENTS = 16  # segments scanned at the finest cut to test the estimate


class BottomK:
    """The `size` keys with the smallest seeded hash: a uniform random sample of everything
    offered, the same whatever order it is offered in."""

    def __init__(self, size: int, salt: str) -> None:
        self.size = size
        self.salt = salt.encode()
        self._heap: list[tuple[int, str, Any]] = []

    def offer(self, key_text: str, payload: Any) -> None:
        if self.size <= 0:
            return
        digest = hashlib.sha256(self.salt + key_text.encode()).digest()
        rank = int.from_bytes(digest[:8], "big")
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, (-rank, key_text, payload))
        elif rank < -self._heap[0][0]:
            heapq.heapreplace(self._heap, (-rank, key_text, payload))

    def payloads(self) -> list[Any]:
        return [payload for _, _, payload in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


def count_estimate(run: DriftRun, table: DriftTable) -> None:
    """ItemCount from DescribeTable as the count, and a segment sample for the documents."""
    report = table.report
    report.items = table.info.item_count
    report.items_estimated = True
    report.notes.append(
        "estimated counts come from DescribeTable's ItemCount, which AWS refreshes about "
        "every six hours: recent writes are not in it"
    )
    sample_segments(run, table)


def sample_segments(run: DriftRun, table: DriftTable) -> None:
    """Scan random segments of a finely cut table until `sample` items are in hand."""
    report = table.report
    wanted = run.options.sample
    report.sample_method = "segments"
    report.sample_requested = wanted
    if wanted <= 0:
        return
    rng = random.Random(f"{run.seed}:{table.name}:segments")
    pilot = rng.sample(range(MAX_SEGMENTS), PILOT_SEGMENTS)
    found = sum(len(items) for items in scan_segments(run, table, pilot, MAX_SEGMENTS))
    # Hits are about Poisson(expected): only far more than the estimate allows overrule it.
    estimate = table.info.item_count
    expected = PILOT_SEGMENTS * estimate / MAX_SEGMENTS
    if found > expected + 3 * math.sqrt(expected) + 2:
        estimate = found * MAX_SEGMENTS // PILOT_SEGMENTS
        report.notes.append(
            f"the item count estimate ({table.info.item_count}) is far too low: "
            f"sampling as for about {estimate} items"
        )
    total = min(MAX_SEGMENTS, max(1, math.ceil(estimate / ITEMS_PER_SEGMENT)))
    collected: list[dict[str, Any]] = []
    replans = 0
    order = segment_order(rng, total)
    scanned = 0
    budget = 20 * math.ceil(wanted / ITEMS_PER_SEGMENT) + 1000
    while len(collected) < wanted and scanned < budget:
        density = len(collected) / scanned if scanned else ITEMS_PER_SEGMENT
        size = math.ceil(1.25 * (wanted - len(collected)) / max(density, 0.05))
        # A small first round measures how full segments really are; later rounds at most
        # double: a few empty segments say little about the density.
        size = min(size, max(4, run.options.segments) if scanned == 0 else 2 * scanned)
        batch = [s for _, s in zip(range(min(size, budget - scanned)), order, strict=False)]
        if not batch:
            break
        for items in scan_segments(run, table, batch, total):
            collected.extend(items)
        first_round = scanned == 0
        scanned += len(batch)
        density = len(collected) / scanned
        too_full = density > 8 * ITEMS_PER_SEGMENT and total < MAX_SEGMENTS
        if first_round and too_full and replans < 2:
            # The estimate was far too low: cut finer and start over.
            replans += 1
            total = min(MAX_SEGMENTS, math.ceil(total * density / ITEMS_PER_SEGMENT))
            report.notes.append(
                f"segments held {density:.0f} items each, not {ITEMS_PER_SEGMENT}: the item "
                f"count estimate is too low; cut the table into {total} segments instead"
            )
            order = segment_order(rng, total)
            collected, scanned = [], 0
    if scanned >= budget and len(collected) < wanted:
        report.notes.append(
            f"sampling stopped after {scanned} segment scans with {len(collected)} items: "
            "the table holds far fewer items than its estimate"
        )
    sampler = BottomK(wanted, f"{run.seed}:{table.name}")
    for item in collected:
        with contextlib.suppress(TransformError):  # a key the transform refuses
            sampler.offer(table.key_text(item), item)
    drawn = sampler.payloads()
    report.sample_keys = [table.key_text(item) for item in drawn]
    report.sample_drawn = len(drawn)
    # Scan images are eventually consistent: read the drawn items again, consistently.
    keys = [key_for_state({k: item[k] for k in table.shape.key_names}) for item in drawn]
    fetched: dict[str, dict[str, Any]] = {}
    for text, fresh, _ in batch_get(run.ddb, table, keys, consistent=True, phase="sample"):
        if fresh is None:
            report.sample_vanished += 1
        else:
            fetched[text] = fresh
    table.sample_items = [fetched[t] for t in report.sample_keys if t in fetched]
    report.total_segments = total
    report.segments_scanned = scanned
    for item in table.sample_items:
        with contextlib.suppress(TransformError):  # counted when the sample is checked
            report.index(index_name(item, table.shape))


def scan_segments(
    run: DriftRun, table: DriftTable, segments: list[int], total: int
) -> Iterator[list[dict[str, Any]]]:
    tasks = [SegmentTask(table.name, s, total) for s in segments]
    for page in run.scan(table, tasks=tasks):
        table.report.add_rcu("sample", page.consumed_rcu)
        yield page.items


def segment_order(rng: random.Random, total: int) -> Iterator[int]:
    """Distinct segments in random order, without listing a million of them up front."""
    if total <= 200_000:
        order = list(range(total))
        rng.shuffle(order)
        yield from order
        return
    seen: set[int] = set()
    while len(seen) < total:
        segment = rng.randrange(total)
        if segment not in seen:
            seen.add(segment)
            yield segment


def check_sample(run: DriftRun, table: DriftTable) -> Iterator[Finding]:
    """The sampled items' documents against the index (`_mget`): missing or different."""
    report = table.report
    expected: dict[tuple[str, str], Document] = {}
    for item in table.sample_items:
        try:
            doc = to_document(item, table.shape)
        except TransformError as exc:
            if exc.reason == "invalid_index_name":
                report.sample_invalid += 1
            elif not report.exact:
                report.untransformable += 1
            continue
        expected[(doc.index, doc.id)] = doc
        report.index(doc.index).sampled += 1
    report.sample_checked = len(expected)
    if not report.exact and report.sample_drawn:
        # No scan counted them: scale the sample's share up to the estimated item count.
        share = report.sample_invalid / report.sample_drawn
        report.invalid_index_items = round(report.items * share)
    current = run.search.mget(list(expected))
    for pair, doc in expected.items():
        if pair not in current:
            yield Finding("missing", table.name, doc.index, doc.id, doc.key_json)
            continue
        fields = differing_fields(parse_document(doc.source), current[pair])
        if fields:
            yield Finding(
                "different", table.name, doc.index, doc.id, doc.key_json, fields=tuple(fields)
            )
