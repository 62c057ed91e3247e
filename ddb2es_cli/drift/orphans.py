"""Orphans: documents drawn at random from an index whose item is gone or belongs elsewhere."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.owners import doc_key, orphan_reason
from ddb2es_cli.drift.report import Finding
from ddb2es_cli.drift.tables import DriftTable, batch_get
from ddb2es_cli.search_json import MAX_RESULT_WINDOW


def check_orphans(run: DriftRun, index: str, tables: list[DriftTable]) -> Iterator[Finding]:
    """Documents drawn at random from `index` whose item is gone or belongs elsewhere.

    A document belongs to the first table of this run that has its item in this index,
    else to a configured table outside the run that has (foreign, like a document whose
    key fits none of the run's tables); only a document nobody has is an orphan, of the
    first run table whose key attributes it has."""
    size = run.options.orphan_sample
    if size <= 0:
        return
    if size > MAX_RESULT_WINDOW:
        tables[0].report.notes.append(
            f"orphan sample of {index} capped at {MAX_RESULT_WINDOW} documents"
        )
    seed = int.from_bytes(hashlib.sha256(f"{run.seed}:{index}".encode()).digest()[:4], "big")
    docs = run.search.random_docs(index, size, seed % 2**31)
    first_reason: dict[str, tuple[DriftTable, str, str]] = {}  # id -> (table, key JSON, reason)
    unclaimed = dict(docs)
    for _, table in run.run_tables_for(index):
        entries = [
            (doc_id, key)
            for doc_id, source in unclaimed.items()
            if (key := doc_key(table, doc_id, source)) is not None
        ]
        if not entries:
            continue
        items = {
            text: item
            for text, item, _ in batch_get(
                run.ddb,
                table,
                [key for _, key in entries],
                consistent=True,
                projection=True,
                phase="orphans",
            )
        }
        for doc_id, key in entries:
            text = table.key_text(key)
            reason = orphan_reason(table, index, doc_id, text, items.get(text))
            if not reason:
                table.report.index(index).orphans_checked += 1
                del unclaimed[doc_id]
            elif doc_id not in first_reason:
                first_reason[doc_id] = (table, text, reason)
    suspects = [(doc_id, first_reason[doc_id]) for doc_id in unclaimed if doc_id in first_reason]
    outside = run.claimed_by(index, run.others(index), [(d, s[1]) for d, s in suspects])
    tables[0].report.index(index).foreign += len(unclaimed) - len(suspects) + len(outside)
    if outside:
        tables[0].report.index(index).claimed_elsewhere += len(outside)
        run.shared_outside(index, sorted(set(outside.values())))
    for doc_id, (table, text, reason) in suspects:
        if doc_id not in outside:
            table.report.index(index).orphans_checked += 1
            yield Finding("orphan", table.name, index, doc_id, text, reason)
