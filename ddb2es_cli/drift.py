"""`drift`: is the index still true to the table? Counts, sampled documents, orphans, a full
comparison, and a repair that makes it so.

Checks, per table and per index of the table:

1. Counts. `counts="exact"` (default): a parallel scan that projects only the key and type
   attributes counts the items of every index, and separately the items whose type is not a valid
   index name. It reads every item, so it consumes read capacity like any scan (a projection saves
   bandwidth, not capacity: DynamoDB charges by item size); the report carries the units used.
   `counts="estimate"`: DescribeTable's ItemCount, which AWS refreshes about every six hours, set
   against the sum of the table's indices. Search side: `_count` per index, after a refresh when
   `refresh` is set (without it, documents written since the last refresh are not counted).
2. Sampled documents: `sample` items drawn uniformly at random, made into documents by the shared
   transform, fetched by id from their index with `_mget`, compared field by field. With exact
   counts the sample costs no extra scan: the count scan keeps the `sample` keys with the smallest
   seeded hash (a bottom-k sample: uniform, and the same whatever order pages arrive in), then
   BatchGetItem reads those items. With estimated counts the table is cut into about one segment
   per 8 items (up to DynamoDB's 1,000,000) and random segments are scanned until enough items
   are in hand; a 16-segment pilot at the finest cut guards against an estimate that is far too
   low (a table that grew since AWS last counted). Segments split the partition-key hash space
   evenly, so every item has the same chance; items sharing a partition key come together.
3. Orphans: `orphans` documents per index drawn by a seeded `random_score` query; their keys come
   from the id (or `_ddb2es_key`) and BatchGetItem (consistent reads) says whether the item is
   gone or now maps to another index. A document whose key attributes are not the table's is
   "foreign" (another table's document in a shared index): counted, never reported or deleted.
4. Full comparison (`full`): every key of both sides. Each side's entries (index, id, hash of the
   canonical document) go to one of `buckets` spill files by a hash of the id, and a digest per
   bucket is kept in memory; only buckets whose digests differ are read back and compared, one at
   a time. Memory is bounded by one bucket, not by the table.

Which indices belong to a table: the default index, every index seen in the count scan (or,
with estimated counts, in the sample; or in the full scan), and every index ddb2es owns under
the table's prefix that holds documents with the table's key attributes although no item maps
to it now (a retired or renamed type; `drift_scope.py`, ownership decided by `is_owned` alone).
Kept blue/green generations without their alias are not live and not checked. Counts, orphan
sampling and the full comparison cover exactly those indices. Several tables may feed one index
(the same type, or items without one in `default`). A document is an orphan only when no
table can claim it: not the checked tables, and not the other tables of the config file whose
prefix fits the index (looked up with consistent reads; their documents count as "foreign"),
and the repair checks this again before any delete. Tables outside the config file cannot be
known. Counts of a shared index are compared with the sum of the tables checked in the same
run, counting only the documents with the key attributes of those tables (`documents`; others
are `other_key_documents`). An index that configured tables outside the run feed too (it is their
default index, it holds documents with their key attributes, or its orphan check found their
items) is "not comparable": its counts are not judged (not drift); name those tables too.

Estimated counts: the documents of the table's indices are set against ItemCount minus the
items whose type is not a valid index name, whose share only the sample knows; its sampling
error (two standard errors) widens the tolerance when the sample drew any.

Numbers: both client libraries parse answers with floats, which would lose digits such as
1234567890123456789.5, so drift sends its few requests (_mget, _search, scroll, _count, _refresh)
through the client's own connection (its auth, TLS and SigV4 signing) and parses the raw bytes
with Decimal. Numbers are equal when their values are (1.50 == 1.5). Elasticsearch and OpenSearch
return `_source` as it was sent; an engine that re-renders it through doubles (the noida-db stand-in
does) shows numbers with more than 15-17 significant digits as different, which they are.

Sampled items are read with consistent reads (an eventually consistent image can be older than
the document the stream already wrote, a false "different").

Repair (`repair`): for every key found drifted, a consistent BatchGetItem (the batched GetItem;
stale scan images are never trusted) gives the truth; the document is written with a repair
version, (read start ms - repair margin) x 1000 with `external_gte` (SPEC section 1; the margin
is 5 s on AWS and 60 s on DynamoDB Local, `repair_margin_ms`), stale copies are deleted with a
versioned delete, and what was written is read back. A 409 means a newer write is in flight:
reported as such, not as repaired. `dry_run` plans the same steps and writes nothing. Afterwards
the indices written are counted again: a run whose repair fixed and read back everything it
found leaves no drift (`drift_remains` false, exit 0).
Drift found by counts alone cannot be repaired by key: run the full comparison to find the keys.
A run on a table that is being written reports writes still on their way through the stream; the
repair leaves those alone (409), and `tolerance` can accept a few.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb2es_cli.clients import aws_error
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.drift_compare import differing_fields, parse_document, source_hash
from ddb2es_cli.drift_repair import Repairer
from ddb2es_cli.drift_report import (
    ITEMS_PER_SEGMENT,
    MAX_RESULT_WINDOW,
    MAX_SEGMENTS,
    PILOT_SEGMENTS,
    DriftError,
    DriftOptions,
    DriftReport,
    Finding,
    FullCounts,
    TableReport,
)
from ddb2es_cli.drift_scope import documents_with_keys, live_indices
from ddb2es_cli.drift_tables import BottomK, DriftTable, batch_get, key_projection, open_table
from ddb2es_cli.errors import ConnectionFailed, Ddb2esError
from ddb2es_cli.reindex import Progress
from ddb2es_cli.search_json import (
    SearchJson,
    _is_connection_error,
)
from ddb2es_cli.source import (
    CapacityLimiter,
    Key,
    SegmentTask,
    TableNotFound,
    install_fast_decode,
    key_for_state,
    scan_pages,
)
from ddb2es_cli.transform import (
    Document,
    TransformError,
    document_id,
    index_name,
    key_from_id,
    to_document,
    type_of,
)

log = logging.getLogger("ddb2es.drift")

# --- the table side: counts and the sample -------------------------------------------------------


class _Run:
    """One drift run; everything happens on the caller's thread (scan threads only scan)."""

    def __init__(
        self,
        ddb: Any,
        es: Any,
        settings: Settings,
        tables: list[DriftTable],
        options: DriftOptions,
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.ddb, self.es, self.settings, self.options = ddb, es, settings, options
        self.tables = tables
        self.seed = seed
        self.progress = progress
        self.search = SearchJson(es, settings.search.safe_url)
        self.limiter = CapacityLimiter(options.max_rcu)
        self.repairer = Repairer(self) if options.repairing else None
        self._others: list[DriftTable] | None = None
        self.index_owners: dict[str, list[DriftTable]] = {}
        self._live: dict[str, dict[str, str]] = {}  # prefix -> owned live indices under it

    # -- who may own a document --

    def candidates(self, index: str) -> list[DriftTable]:
        """Every table that could feed `index`: this run's, then the other configured tables
        whose prefix matches (their documents must never pass for orphans of ours)."""
        if self._others is None:
            self._others = []
            checked = {t.name for t in self.tables}
            for table in self.settings.tables:
                if table.name not in checked:
                    try:
                        self._others.append(open_table(self.ddb, table, self.options))
                    except TableNotFound:
                        log.warning("configured table %s does not exist", table.name)
        return [t for t in (*self.tables, *self._others) if t.could_feed(index)]

    def others(self, index: str, but: DriftTable | None = None) -> list[DriftTable]:
        """The candidates of `index` other than `but` (default: other than this run's)."""
        if but is None:
            return [t for t in self.candidates(index) if t not in self.tables]
        return [t for t in self.candidates(index) if t is not but]

    def claimed(
        self, index: str, tables: Sequence[DriftTable], docs: Sequence[tuple[str, str]]
    ) -> set[str]:
        """Ids of the documents (id, key JSON) for which one of `tables` has an item that
        belongs in `index` under that very id (consistent reads)."""
        return set(self.claimed_by(index, tables, docs))

    def claimed_by(
        self, index: str, tables: Sequence[DriftTable], docs: Sequence[tuple[str, str]]
    ) -> dict[str, str]:
        """`claimed`, with the name of the table that has each document's item."""
        found: dict[str, str] = {}
        for table in tables:
            keys: dict[str, tuple[Key, list[str]]] = {}
            for doc_id, text in docs:
                key = table.request_key(text)
                if key is not None:
                    keys.setdefault(table.key_text(key), (key, []))[1].append(doc_id)
            if not keys:
                continue
            answers = batch_get(
                self.ddb,
                table,
                [key for key, _ in keys.values()],
                consistent=True,
                projection=True,
                phase="orphans",
            )
            for text, item, _ in answers:
                ids = keys[text][1] if text in keys else []
                for i in ids:
                    if i not in found and not _orphan_reason(table, index, i, text, item):
                        found[i] = table.name
        return found

    def shared_outside(self, index: str, names: Sequence[str]) -> None:
        """Configured tables outside the run (`names`) feed `index`: its counts cannot be
        compared in this run (the sample, orphans and the full comparison still can)."""
        for table in self.index_owners.get(index, []):
            report = table.report.index(index)
            known = set(report.not_comparable_tables) | set(names)
            report.not_comparable_tables = sorted(known)
            report.comparable = False
            listed = ", ".join(report.not_comparable_tables)
            run = " ".join([t.name for t in self.tables] + report.not_comparable_tables)
            report.not_comparable = (
                f"also fed by {listed}, not in this run: check them together (ddb2es drift {run})"
            )

    # -- exact counts (and the bottom-k sample) --

    def count_exact(self, table: DriftTable) -> None:
        report = table.report
        sampler = BottomK(self.options.sample, f"{self.seed}:{table.name}")
        expression, names = key_projection(table.shape)
        counts: Counter[str] = Counter()
        for page in self._scan(table, projection=expression, names=names):
            report.add_rcu("count_scan", page.consumed_rcu)
            for item in page.items:
                report.items += 1
                try:
                    text = table.key_text(item)
                    counts[index_name(item, table.shape)] += 1
                except TransformError as exc:
                    self._count_failure(table, item, exc)
                    continue
                sampler.offer(text, key_for_state({k: item[k] for k in table.shape.key_names}))
        for name, number in counts.items():
            report.index(name).table_count = number
        report.notes.append(
            "exact counts scan every item; only the key and type attributes are returned, but "
            "DynamoDB charges read capacity by item size: "
            f"{report.rcu.get('count_scan', 0.0):.1f} RCU consumed"
        )
        report.sample_method = "key-scan"
        report.sample_requested = self.options.sample
        keys = sampler.payloads()
        report.sample_drawn = len(keys)
        fetched = {}
        # Consistent reads: an eventually consistent one can miss a write the index already
        # has, which would show as a false "different".
        for text, item, _ in batch_get(self.ddb, table, keys, consistent=True, phase="sample"):
            if item is None:
                report.sample_vanished += 1
            else:
                fetched[text] = item
        # Keep the sample's order (by rank), which does not depend on DynamoDB's answers.
        report.sample_keys = [table.key_text(k) for k in keys]
        table.sample_items = [fetched[t] for t in report.sample_keys if t in fetched]

    def _count_failure(
        self, table: DriftTable, item: Mapping[str, Any], exc: TransformError
    ) -> None:
        report = table.report
        if exc.reason == "invalid_index_name":
            report.invalid_index_items += 1
            kind = type_of(item, table.shape)
            if kind in report.invalid_index_types or len(report.invalid_index_types) < 20:
                report.invalid_index_types[kind] = report.invalid_index_types.get(kind, 0) + 1
        else:
            report.untransformable += 1

    def _scan(
        self,
        table: DriftTable,
        *,
        projection: str | None = None,
        names: dict[str, str] | None = None,
        tasks: list[SegmentTask] | None = None,
    ) -> Iterator[Any]:
        if tasks is None:
            total = self.options.segments
            tasks = [SegmentTask(table.name, s, total) for s in range(total)]
            if self.progress is not None:
                self.progress.start(table.name, table.info.item_count)
        pages = scan_pages(
            self.ddb,
            tasks,
            workers=self.options.segments,
            limiter=self.limiter,
            projection=projection,
            expression_names=names,
        )
        try:
            for page in pages:
                if self.progress is not None:
                    self.progress.advance(table.name, len(page.items))
                yield page
        finally:
            pages.close()

    # -- estimated counts (and the segment sample) --

    def count_estimate(self, table: DriftTable) -> None:
        report = table.report
        report.items = table.info.item_count
        report.items_estimated = True
        report.notes.append(
            "estimated counts come from DescribeTable's ItemCount, which AWS refreshes about "
            "every six hours: recent writes are not in it"
        )
        self.sample_segments(table)

    def sample_segments(self, table: DriftTable) -> None:
        """Scan random segments of a finely cut table until `sample` items are in hand."""
        report = table.report
        wanted = self.options.sample
        report.sample_method = "segments"
        report.sample_requested = wanted
        if wanted <= 0:
            return
        rng = random.Random(f"{self.seed}:{table.name}:segments")
        pilot = rng.sample(range(MAX_SEGMENTS), PILOT_SEGMENTS)
        found = sum(len(items) for items in self._scan_segments(table, pilot, MAX_SEGMENTS))
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
        order = _segment_order(rng, total)
        scanned = 0
        budget = 20 * math.ceil(wanted / ITEMS_PER_SEGMENT) + 1000
        while len(collected) < wanted and scanned < budget:
            density = len(collected) / scanned if scanned else ITEMS_PER_SEGMENT
            size = math.ceil(1.25 * (wanted - len(collected)) / max(density, 0.05))
            if scanned == 0:  # a small first round measures how full segments really are
                size = min(size, max(4, self.options.segments))
            else:  # at most double: a few empty segments say little about the density
                size = min(size, 2 * scanned)
            batch = [s for _, s in zip(range(min(size, budget - scanned)), order, strict=False)]
            if not batch:
                break
            for items in self._scan_segments(table, batch, total):
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
                order = _segment_order(rng, total)
                collected, scanned = [], 0
        if scanned >= budget and len(collected) < wanted:
            report.notes.append(
                f"sampling stopped after {scanned} segment scans with {len(collected)} items: "
                "the table holds far fewer items than its estimate"
            )
        sampler = BottomK(wanted, f"{self.seed}:{table.name}")
        for item in collected:
            with contextlib.suppress(TransformError):  # a key the transform refuses
                sampler.offer(table.key_text(item), item)
        drawn = sampler.payloads()
        report.sample_keys = [table.key_text(item) for item in drawn]
        report.sample_drawn = len(drawn)
        # Scan images are eventually consistent: read the drawn items again, consistently.
        keys = [key_for_state({k: item[k] for k in table.shape.key_names}) for item in drawn]
        fetched: dict[str, dict[str, Any]] = {}
        for text, fresh, _ in batch_get(self.ddb, table, keys, consistent=True, phase="sample"):
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

    def _scan_segments(
        self, table: DriftTable, segments: list[int], total: int
    ) -> Iterator[list[dict[str, Any]]]:
        tasks = [SegmentTask(table.name, s, total) for s in segments]
        for page in self._scan(table, tasks=tasks):
            table.report.add_rcu("sample", page.consumed_rcu)
            yield page.items

    # -- the search side: counts, sampled documents, orphans --

    def owners(self) -> dict[str, list[DriftTable]]:
        """Every index of the run and the tables that feed it: the default index, the indices
        the items map to, and every owned index under the table's prefix that still holds
        documents with the table's key attributes (a retired or renamed type)."""
        owners: dict[str, list[DriftTable]] = {}
        for table in self.tables:
            default = table.default_index
            if default is not None:
                table.report.index(default)
            self.discover(table)
            for name in table.report.indices:
                owners.setdefault(name, []).append(table)
        self.index_owners = owners
        return owners

    def discover(self, table: DriftTable) -> None:
        prefix = table.shape.index_prefix.lower()
        if prefix not in self._live:
            self._live[prefix] = live_indices(self.search, prefix, self.settings.deployment_name)
        for name in self._live[prefix]:
            if name in table.report.indices:
                continue
            if documents_with_keys(self.search, name, [table.shape.key_names]):
                report = table.report.index(name)
                report.discovered = True
                log.info("drift: %s: %s holds documents of the table", table.name, name)

    def run_tables_for(self, index: str) -> list[tuple[int, DriftTable]]:
        """(position, table) of this run's tables that could feed `index`, those that do first:
        an orphan is charged to the first whose key attributes it has."""
        owners = self.index_owners.get(index, [])
        ranked = sorted(enumerate(self.tables), key=lambda pt: pt[1] not in owners)
        return [(p, t) for p, t in ranked if t.could_feed(index)]

    def count_indices(self, owners: dict[str, list[DriftTable]]) -> None:
        if self.options.refresh:
            self.search.refresh(owners)
        for name, tables in sorted(owners.items()):
            count = self.search.count(name)
            shapes = sorted({t.shape.key_names for t in tables})
            own = documents_with_keys(self.search, name, shapes) if count else 0
            outside = self.others(name)
            # Outside tables that feed it: whose default index it is, or whose key attributes
            # the documents the run's tables cannot have carry.
            feeding = [t.name for t in outside if t.default_index == name]
            if count and own < count:
                feeding += [
                    t.name
                    for t in outside
                    if t.name not in feeding
                    and t.shape.key_names not in shapes
                    and documents_with_keys(self.search, name, [t.shape.key_names])
                ]
            if all(t.report.index(name).discovered for t in tables):
                # No item of the run maps here: an outside table with the same key attributes
                # may be the one that feeds it (ids cannot tell; doctor warns about it).
                feeding += [
                    t.name for t in outside if t.shape.key_names in shapes and t.name not in feeding
                ]
            for table in tables:
                report = table.report.index(name)
                report.exists = count is not None
                report.index_count = count or 0
                report.own_count = own
                report.maybe_shared_with = [t.name for t in outside]
                if len(tables) > 1:
                    report.shared_with = [t.name for t in tables if t is not table]
                    if all(t.report.exact for t in tables):
                        report.expected_count = sum(
                            t.report.index(name).table_count or 0 for t in tables
                        )
            if feeding:
                self.shared_outside(name, feeding)

    def recount(self, indices: set[str]) -> None:
        """After a repair: the documents of the indices it wrote to, refreshed and counted."""
        self.search.refresh(indices)
        for name in sorted(indices):
            tables = self.index_owners.get(name, [])
            shapes = sorted({t.shape.key_names for t in tables})
            if not shapes:
                continue
            own = documents_with_keys(self.search, name, shapes)
            for table in tables:
                table.report.index(name).own_count_after_repair = own

    def check_sample(self, table: DriftTable) -> Iterator[Finding]:
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
        current = self.search.mget(list(expected))
        for pair, doc in expected.items():
            if pair not in current:
                yield Finding("missing", table.name, doc.index, doc.id, doc.key_json)
                continue
            fields = differing_fields(parse_document(doc.source), current[pair])
            if fields:
                yield Finding(
                    "different", table.name, doc.index, doc.id, doc.key_json, fields=tuple(fields)
                )

    def check_orphans(self, index: str, tables: list[DriftTable]) -> Iterator[Finding]:
        """Documents drawn at random from `index` whose item is gone or belongs elsewhere.

        A document belongs to the first table of this run that has its item in this index,
        else to a configured table outside the run that has (foreign, like a document whose
        key fits none of the run's tables); only a document nobody has is an orphan, of the
        first run table whose key attributes it has."""
        size = self.options.orphan_sample
        if size <= 0:
            return
        if size > MAX_RESULT_WINDOW:
            tables[0].report.notes.append(
                f"orphan sample of {index} capped at {MAX_RESULT_WINDOW} documents"
            )
        seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{index}".encode()).digest()[:4], "big")
        docs = self.search.random_docs(index, size, seed % 2**31)
        first_reason: dict[str, tuple[DriftTable, str, str]] = {}  # id -> (table, key JSON, reason)
        unclaimed = dict(docs)
        for _, table in self.run_tables_for(index):
            entries = [
                (doc_id, key)
                for doc_id, source in unclaimed.items()
                if (key := _doc_key(table, doc_id, source)) is not None
            ]
            if not entries:
                continue
            items = {
                text: item
                for text, item, _ in batch_get(
                    self.ddb,
                    table,
                    [key for _, key in entries],
                    consistent=True,
                    projection=True,
                    phase="orphans",
                )
            }
            for doc_id, key in entries:
                text = table.key_text(key)
                reason = _orphan_reason(table, index, doc_id, text, items.get(text))
                if not reason:
                    table.report.index(index).orphans_checked += 1
                    del unclaimed[doc_id]
                elif doc_id not in first_reason:
                    first_reason[doc_id] = (table, text, reason)
        suspects = [
            (doc_id, first_reason[doc_id]) for doc_id in unclaimed if doc_id in first_reason
        ]
        outside = self.claimed_by(index, self.others(index), [(d, s[1]) for d, s in suspects])
        tables[0].report.index(index).foreign += len(unclaimed) - len(suspects) + len(outside)
        if outside:
            tables[0].report.index(index).claimed_elsewhere += len(outside)
            self.shared_outside(index, sorted(set(outside.values())))
        for doc_id, (table, text, reason) in suspects:
            if doc_id not in outside:
                table.report.index(index).orphans_checked += 1
                yield Finding("orphan", table.name, index, doc_id, text, reason)

    # -- full comparison --

    def compare_full(self) -> Iterator[tuple[DriftTable, Finding]]:
        """Every key of both sides, bucketed on disk; only differing buckets are read back."""
        directory = Path(
            tempfile.mkdtemp(prefix="ddb2es-drift-", dir=self.options.work_dir or None)
        )
        try:
            table_side = _Buckets(directory / "table", self.options.buckets)
            for position, table in enumerate(self.tables):
                self._full_table_side(position, table, table_side)
            table_side.flush()
            owners = self.owners()
            self.count_indices(owners)
            index_side = _Buckets(directory / "index", self.options.buckets)
            for index, tables in sorted(owners.items()):
                for doc_id, source in self.search.scroll(index):
                    entry = self._index_entry(index, doc_id, source)
                    if entry is None:
                        tables[0].report.index(index).foreign += 1
                        continue
                    index_side.add(doc_id, index, source_hash(source), entry)
            index_side.flush()
            for bucket in range(self.options.buckets):
                if table_side.digests[bucket] == index_side.digests[bucket]:
                    continue
                yield from self._compare_bucket(table_side, index_side, bucket)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _full_table_side(self, position: int, table: DriftTable, side: _Buckets) -> None:
        report = table.report
        report.sample_method = "full"
        counts: Counter[str] = Counter()
        for page in self._scan(table):
            report.add_rcu("full_scan", page.consumed_rcu)
            for item in page.items:
                report.items += 1
                try:
                    doc = to_document(item, table.shape)
                except TransformError as exc:
                    self._count_failure(table, item, exc)
                    continue
                counts[doc.index] += 1
                digest = source_hash(parse_document(doc.source))
                side.add(doc.id, doc.index, digest, [position, doc.key_json])
        for name, number in counts.items():
            report.index(name).table_count = number
        report.notes.append(
            "the full comparison scans every item: "
            f"{report.rcu.get('full_scan', 0.0):.1f} RCU consumed"
        )

    def _index_entry(self, index: str, doc_id: str, source: Mapping[str, Any]) -> list[Any] | None:
        """[position of the first run table whose key the document has, its key JSON]."""
        for position, table in self.run_tables_for(index):
            key = _doc_key(table, doc_id, source)
            if key is not None:
                return [position, table.key_text(key)]
        return None

    def _compare_bucket(
        self, table_side: _Buckets, index_side: _Buckets, bucket: int
    ) -> Iterator[tuple[DriftTable, Finding]]:
        expected: dict[str, dict[str, tuple[str, int, str]]] = {}
        for doc_id, index, digest, (position, text) in table_side.read(bucket):
            expected.setdefault(doc_id, {})[index] = (digest, position, text)
        actual: dict[str, dict[str, tuple[str, int, str]]] = {}
        for doc_id, index, digest, (position, text) in index_side.read(bucket):
            actual.setdefault(doc_id, {})[index] = (digest, position, text)
        orphans: list[tuple[DriftTable, Finding]] = []
        for doc_id in sorted(set(expected) | set(actual)):
            want = expected.get(doc_id, {})
            have = actual.get(doc_id, {})
            for index, (digest, position, text) in sorted(want.items()):
                table = self.tables[position]
                if index not in have:
                    yield table, Finding("missing", table.name, index, doc_id, text)
                elif have[index][0] != digest:
                    yield table, Finding("different", table.name, index, doc_id, text)
            for index, (_, position, text) in sorted(have.items()):
                if index in want:
                    continue
                table = self.tables[position]
                moved = any(t[1] == position for t in want.values())
                reason = "type_changed" if moved else "item_gone"
                orphans.append((table, Finding("orphan", table.name, index, doc_id, text, reason)))
        # Configured tables outside the run may own documents in these indices.
        for index in sorted({f.index for _, f in orphans}):
            here = [(f.id, f.key_json) for _, f in orphans if f.index == index]
            others = self.claimed_by(index, self.others(index), here)
            if others:
                self.shared_outside(index, sorted(set(others.values())))
            for table, finding in orphans:
                if finding.index != index:
                    continue
                if finding.id in others:
                    table.report.index(index).foreign += 1
                    table.report.index(index).claimed_elsewhere += 1
                else:
                    yield table, finding

    def describe_difference(self, table: DriftTable, finding: Finding) -> Finding:
        """The differing fields of a full-comparison finding, from fresh reads of both sides."""
        fields: tuple[str, ...] = ("<changed since the scan>",)
        key = table.request_key(finding.key_json)
        if key is not None:
            got = list(batch_get(self.ddb, table, [key], consistent=True, phase="full_scan"))
            current = self.search.mget([(finding.index, finding.id)])
            have = current.get((finding.index, finding.id))
            if got and got[0][1] is not None and have is not None:
                try:
                    doc = to_document(got[0][1], table.shape)
                    found = differing_fields(parse_document(doc.source), have)
                    fields = tuple(found) or fields
                except TransformError:
                    pass
        return Finding(
            finding.kind,
            finding.table,
            finding.index,
            finding.id,
            finding.key_json,
            finding.reason,
            fields,
        )


def _segment_order(rng: random.Random, total: int) -> Iterator[int]:
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


def _doc_key(table: DriftTable, doc_id: str, source: Mapping[str, Any]) -> Key | None:
    """The DynamoDB key a document stands for, or None when it is not this table's."""
    try:
        key = key_from_id(doc_id, source)
    except (TransformError, ValueError):
        return None
    return table.request_key_of(key)


def _orphan_reason(
    table: DriftTable, index: str, doc_id: str, key_text: str, item: Mapping[str, Any] | None
) -> str:
    """Why the document should not be in `index`, or "" when it should."""
    if item is None:
        return "item_gone"
    try:
        target = index_name(item, table.shape)
    except TransformError as exc:
        return exc.reason
    if target != index:
        return "type_changed"
    if document_id(key_text) != doc_id:
        return "id_not_canonical"
    return ""


class _Buckets:
    """One side of the full comparison: entries spilled to `count` files by a hash of the id,
    with an order-independent digest per bucket kept in memory."""

    FLUSH_AT = 20_000  # lines buffered in memory over all buckets

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        self.count = count
        self.digests = [0] * count
        self._buffers: dict[int, list[str]] = {}
        self._buffered = 0

    def bucket_of(self, doc_id: str) -> int:
        return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:4], "big") % self.count

    def add(self, doc_id: str, index: str, digest: str, extra: list[Any]) -> None:
        bucket = self.bucket_of(doc_id)
        entry = hashlib.sha256(f"{index}\0{doc_id}\0{digest}".encode()).digest()[:16]
        self.digests[bucket] = (self.digests[bucket] + int.from_bytes(entry, "big")) % 2**128
        line = json.dumps([doc_id, index, digest, extra], ensure_ascii=False)
        self._buffers.setdefault(bucket, []).append(line)
        self._buffered += 1
        if self._buffered >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        for bucket, lines in self._buffers.items():
            with (self.directory / f"{bucket:05d}").open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        self._buffers.clear()
        self._buffered = 0

    def read(self, bucket: int) -> Iterator[list[Any]]:
        path = self.directory / f"{bucket:05d}"
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                entry: list[Any] = json.loads(line)
                yield entry


# --- evaluation and the entry point ------------------------------------------------------------


def _evaluate(table: TableReport, tolerance: int) -> None:
    """Fill `reasons`: what makes this table count as drifted (beyond `tolerance`)."""
    table.reasons[:] = _reasons(table, tolerance, after_repair=False)


def _reasons(table: TableReport, tolerance: int, *, after_repair: bool) -> list[str]:
    """What makes the table count as drifted; `after_repair`: what the repair left (counts
    taken again where it wrote, findings it could not repair and verify)."""
    reasons: list[str] = []
    for name in sorted(table.indices):
        report = table.indices[name]
        if not report.comparable:
            note = f"{name}: counts not comparable: {report.not_comparable}"
            if note not in table.notes:
                table.notes.append(note)
    if table.exact:
        for name in sorted(table.indices):
            report = table.indices[name]
            difference = report.difference_after_repair if after_repair else report.difference
            if difference is not None and abs(difference) > tolerance:
                expected = (
                    report.table_count if report.expected_count is None else report.expected_count
                )
                documents = (expected or 0) + difference
                shared = report.maybe_shared_with
                reasons.append(
                    f"{name}: {documents} documents for {expected} items "
                    f"({difference:+d})"
                    + (f"; the index may also hold {', '.join(shared)}'s" if shared else "")
                    + ("; no item maps to it now (a retired type?)" if report.discovered else "")
                )
    elif all(r.comparable for r in table.indices.values()):
        # Items of invalid types are never indexed; their number is known only from the
        # sample here, so its sampling error (two standard errors) widens the tolerance.
        documents = 0
        for r in table.indices.values():
            after = r.own_count_after_repair if after_repair else None
            documents += (r.documents or 0) if after is None else after
        drawn = table.sample_checked + table.sample_invalid
        expected, margin = table.items, 0
        if drawn and table.sample_invalid:
            expected = round(table.items * (1 - table.sample_invalid / drawn))
            margin = math.ceil(2 * table.items * math.sqrt(table.sample_invalid) / drawn)
        if abs(documents - expected) > tolerance + margin:
            reasons.append(
                f"{documents} documents in {len(table.indices)} indices for about {expected} "
                f"indexable items ({documents - expected:+d}, estimated)"
            )
    if after_repair:
        return reasons  # the findings were repaired and read back (the caller checks that)
    sampled = sum(r.sampled_findings for r in table.indices.values())
    if sampled > tolerance:
        missing = sum(r.missing for r in table.indices.values())
        different = sum(r.different for r in table.indices.values())
        orphans = sum(r.orphans for r in table.indices.values())
        reasons.append(f"sampled: {missing} missing, {different} different, {orphans} orphans")
    full = [r.full for r in table.indices.values() if r.full is not None]
    if sum(f.total for f in full) > tolerance:
        reasons.append(
            f"full comparison: {sum(f.missing for f in full)} missing, "
            f"{sum(f.different for f in full)} different, {sum(f.orphans for f in full)} orphans"
        )
    return reasons


def _after_repair(run: _Run, repairer: Repairer) -> None:
    """What drift remains once the repair wrote and read back: counts again where it wrote;
    findings it could not repair and verify (failed, newer write in flight) remain."""
    if repairer.written:
        run.recount(repairer.written)
    for table in run.tables:
        remaining = _reasons(table.report, run.options.tolerance, after_repair=True)
        unresolved = repairer.unresolved[table.name]
        if unresolved > run.options.tolerance:
            remaining.append(f"the repair left {unresolved} findings as they were")
        elif not table.report.reasons and not remaining:
            continue
        table.report.remaining = remaining


def run_drift(
    ddb: Any,
    es: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: DriftOptions,
    progress: Progress | None = None,
) -> DriftReport:
    """Check `tables` against their indices (and repair them when asked); see the module doc."""
    options.validate()
    started = time.monotonic()
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    if options.fast_decode:
        install_fast_decode(ddb)
    try:
        contexts = [open_table(ddb, t, options) for t in tables]
        run = _Run(ddb, es, settings, contexts, options, seed, progress)
        report = DriftReport([t.report for t in contexts], seed, options)
        if options.full:
            _run_full(run)
        else:
            _run_sampled(run)
        if run.repairer is not None:
            report.repair = run.repairer.finish()
            for table in contexts:
                _evaluate(table.report, options.tolerance)
            if not options.dry_run:
                _after_repair(run, run.repairer)
    except Ddb2esError:
        raise
    except (BotoCoreError, ClientError) as exc:  # DynamoDB's failure: name DynamoDB, not search
        raise aws_error(exc, settings.dynamodb) from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise ConnectionFailed(f"cannot reach {settings.search.safe_url}") from exc
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise DriftError(f"drift stopped: {type(exc).__name__}: {text}") from exc
    for table in contexts:
        _evaluate(table.report, options.tolerance)
    report.duration_s = time.monotonic() - started
    return report


def _run_sampled(run: _Run) -> None:
    for table in run.tables:
        log.info("drift: %s: %s counts", table.name, table.report.counts_mode)
        if table.report.exact:
            run.count_exact(table)
        else:
            run.count_estimate(table)
    owners = run.owners()
    run.count_indices(owners)
    for table in run.tables:
        for finding in run.check_sample(table):
            _found(run, table, finding, full=False)
    for index, tables in sorted(owners.items()):
        for finding in run.check_orphans(index, tables):
            table = next(t for t in tables if t.name == finding.table)
            _found(run, table, finding, full=False)


def _run_full(run: _Run) -> None:
    for table, finding in run.compare_full():
        _found(run, table, finding, full=True)
    for table in run.tables:
        for report in table.report.indices.values():
            if report.full is None:
                report.full = FullCounts()


def _found(run: _Run, table: DriftTable, finding: Finding, *, full: bool) -> None:
    report = table.report.index(finding.index)
    if (
        full
        and finding.kind == "different"
        and report.wants_example("different", run.options.examples)
    ):
        # Only digests were compared: read both sides again for the example's fields.
        finding = run.describe_difference(table, finding)
    table.report.record(finding, run.options.examples, full=full)
    if run.repairer is not None:
        run.repairer.add(finding)
