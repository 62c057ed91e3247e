"""Counts: the items of every index from a key-only scan of the table (with the bottom-k sample
on the side), and the documents of every index on the search side."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.sampling import BottomK
from ddb2es_cli.drift.scope import documents_with_keys
from ddb2es_cli.drift.tables import DriftTable, batch_get, key_projection
from ddb2es_cli.source import key_for_state
from ddb2es_cli.transform import TransformError, index_name, type_of


def count_exact(run: DriftRun, table: DriftTable) -> None:
    """Items per index from a key-only scan; the bottom-k sample is kept on the way and its
    items are read again consistently."""
    report = table.report
    sampler = BottomK(run.options.sample, f"{run.seed}:{table.name}")
    expression, names = key_projection(table.shape)
    counts: Counter[str] = Counter()
    for page in run.scan(table, projection=expression, names=names):
        report.add_rcu("count_scan", page.consumed_rcu)
        for item in page.items:
            report.items += 1
            try:
                text = table.key_text(item)
                counts[index_name(item, table.shape)] += 1
            except TransformError as exc:
                count_failure(run, table, item, exc)
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
    report.sample_requested = run.options.sample
    keys = sampler.payloads()
    report.sample_drawn = len(keys)
    fetched = {}
    # Consistent reads: an eventually consistent one can miss a write the index already
    # has, which would show as a false "different".
    for text, item, _ in batch_get(run.ddb, table, keys, consistent=True, phase="sample"):
        if item is None:
            report.sample_vanished += 1
        else:
            fetched[text] = item
    # Keep the sample's order (by rank), which does not depend on DynamoDB's answers.
    report.sample_keys = [table.key_text(k) for k in keys]
    table.sample_items = [fetched[t] for t in report.sample_keys if t in fetched]


def count_failure(
    run: DriftRun, table: DriftTable, item: Mapping[str, Any], exc: TransformError
) -> None:
    """An item the transform refused: an invalid type is counted apart (never indexed)."""
    report = table.report
    if exc.reason == "invalid_index_name":
        report.invalid_index_items += 1
        kind = type_of(item, table.shape)
        if kind in report.invalid_index_types or len(report.invalid_index_types) < 20:
            report.invalid_index_types[kind] = report.invalid_index_types.get(kind, 0) + 1
    else:
        report.untransformable += 1


def count_indices(run: DriftRun, owners: dict[str, list[DriftTable]]) -> None:
    """The search side's counts per index (all documents, and those with the run's key
    attributes), and which indices configured tables outside the run feed too."""
    if run.options.refresh:
        run.search.refresh(owners)
    for name, tables in sorted(owners.items()):
        count = run.search.count(name)
        shapes = sorted({t.shape.key_names for t in tables})
        own = documents_with_keys(run.search, name, shapes) if count else 0
        outside = run.others(name)
        # Outside tables that feed it: whose default index it is, or whose key attributes
        # the documents the run's tables cannot have carry.
        feeding = [t.name for t in outside if t.default_index == name]
        if count and own < count:
            feeding += [
                t.name
                for t in outside
                if t.name not in feeding
                and t.shape.key_names not in shapes
                and documents_with_keys(run.search, name, [t.shape.key_names])
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
            run.shared_outside(name, feeding)


def recount(run: DriftRun, indices: set[str]) -> None:
    """After a repair: the documents of the indices it wrote to, refreshed and counted."""
    run.search.refresh(indices)
    for name in sorted(indices):
        tables = run.index_owners.get(name, [])
        shapes = sorted({t.shape.key_names for t in tables})
        if not shapes:
            continue
        own = documents_with_keys(run.search, name, shapes)
        for table in tables:
            table.report.index(name).own_count_after_repair = own
