"""The full comparison: every key of both sides spilled to bucket files by a hash of the id, a
digest per bucket in memory; only buckets whose digests differ are read back. Memory is bounded
by one bucket, not by the table."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ddb2es_cli.drift.compare import differing_fields, parse_document, source_hash
from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.counts import count_failure, count_indices
from ddb2es_cli.drift.owners import doc_key
from ddb2es_cli.drift.report import Finding
from ddb2es_cli.drift.scope import index_owners
from ddb2es_cli.drift.tables import DriftTable, batch_get
from ddb2es_cli.transform import TransformError, to_document


def compare_full(run: DriftRun) -> Iterator[tuple[DriftTable, Finding]]:
    """Every key of both sides, bucketed on disk; only differing buckets are read back."""
    directory = Path(tempfile.mkdtemp(prefix="ddb2es-drift-", dir=run.options.work_dir or None))
    try:
        table_side = Buckets(directory / "table", run.options.buckets)
        for position, table in enumerate(run.tables):
            full_table_side(run, position, table, table_side)
        table_side.flush()
        owners = index_owners(run)
        count_indices(run, owners)
        index_side = Buckets(directory / "index", run.options.buckets)
        for index, tables in sorted(owners.items()):
            for doc_id, source in run.search.scroll(index):
                entry = index_entry(run, index, doc_id, source)
                if entry is None:
                    tables[0].report.index(index).foreign += 1
                    continue
                index_side.add(doc_id, index, source_hash(source), entry)
        index_side.flush()
        for bucket in range(run.options.buckets):
            if table_side.digests[bucket] == index_side.digests[bucket]:
                continue
            yield from compare_bucket(run, table_side, index_side, bucket)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def full_table_side(run: DriftRun, position: int, table: DriftTable, side: Buckets) -> None:
    """Scan the table: every item's (id, index, document hash) into the table side's buckets."""
    report = table.report
    report.sample_method = "full"
    counts: Counter[str] = Counter()
    for page in run.scan(table):
        report.add_rcu("full_scan", page.consumed_rcu)
        for item in page.items:
            report.items += 1
            try:
                doc = to_document(item, table.shape)
            except TransformError as exc:
                count_failure(run, table, item, exc)
                continue
            counts[doc.index] += 1
            digest = source_hash(parse_document(doc.source))
            side.add(doc.id, doc.index, digest, [position, doc.key_json])
    for name, number in counts.items():
        report.index(name).table_count = number
    report.notes.append(
        f"the full comparison scans every item: {report.rcu.get('full_scan', 0.0):.1f} RCU consumed"
    )


def index_entry(
    run: DriftRun, index: str, doc_id: str, source: Mapping[str, Any]
) -> list[Any] | None:
    """[position of the first run table whose key the document has, its key JSON]."""
    for position, table in run.run_tables_for(index):
        key = doc_key(table, doc_id, source)
        if key is not None:
            return [position, table.key_text(key)]
    return None


def compare_bucket(
    run: DriftRun, table_side: Buckets, index_side: Buckets, bucket: int
) -> Iterator[tuple[DriftTable, Finding]]:
    """The findings of one bucket whose digests differ: missing, different, orphans (less
    those a configured table outside the run claims)."""
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
            table = run.tables[position]
            if index not in have:
                yield table, Finding("missing", table.name, index, doc_id, text)
            elif have[index][0] != digest:
                yield table, Finding("different", table.name, index, doc_id, text)
        for index, (_, position, text) in sorted(have.items()):
            if index in want:
                continue
            table = run.tables[position]
            moved = any(t[1] == position for t in want.values())
            reason = "type_changed" if moved else "item_gone"
            orphans.append((table, Finding("orphan", table.name, index, doc_id, text, reason)))
    # Configured tables outside the run may own documents in these indices.
    for index in sorted({f.index for _, f in orphans}):
        here = [(f.id, f.key_json) for _, f in orphans if f.index == index]
        others = run.claimed_by(index, run.others(index), here)
        if others:
            run.shared_outside(index, sorted(set(others.values())))
        for table, finding in orphans:
            if finding.index != index:
                continue
            if finding.id in others:
                table.report.index(index).foreign += 1
                table.report.index(index).claimed_elsewhere += 1
            else:
                yield table, finding


def describe_difference(run: DriftRun, table: DriftTable, finding: Finding) -> Finding:
    """The differing fields of a full-comparison finding, from fresh reads of both sides."""
    fields: tuple[str, ...] = ("<changed since the scan>",)
    key = table.request_key(finding.key_json)
    if key is not None:
        got = list(batch_get(run.ddb, table, [key], consistent=True, phase="full_scan"))
        current = run.search.mget([(finding.index, finding.id)])
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


class Buckets:
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
