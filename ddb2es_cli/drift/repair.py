"""drift's repair: a fresh consistent read of every drifted key, a plan of versioned writes and
deletes, the writes (refused ones to the failures file), and a read-back."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from ddb2es_cli.config import Settings
from ddb2es_cli.drift.compare import differing_fields, parse_document
from ddb2es_cli.drift.options import DriftOptions
from ddb2es_cli.drift.report import Finding, RepairResult, RepairStep
from ddb2es_cli.drift.tables import DriftTable, batch_get
from ddb2es_cli.search_json import SearchJson
from ddb2es_cli.sink import (
    Action,
    BulkOptions,
    BulkWriter,
    Failure,
    FailureLog,
    Refreshed,
    delete_action,
    gc_deletes_ms,
    index_action,
)
from ddb2es_cli.transform import Document, TransformError, repair_version, to_document

log = logging.getLogger("ddb2es.drift")

REPAIR_BATCH = 100  # drifted keys re-read and rewritten together


class RepairContext(Protocol):
    """What the repair needs of a drift run."""

    ddb: Any
    es: Any
    settings: Settings
    options: DriftOptions
    tables: list[DriftTable]
    search: SearchJson

    def others(self, index: str, but: DriftTable | None = None) -> list[DriftTable]: ...

    def claimed(
        self, index: str, tables: Sequence[DriftTable], docs: Sequence[tuple[str, str]]
    ) -> set[str]: ...


class _LateRepairs:
    """A repair write is a snapshot write too (docs/spec.md, "Late writes"): one the cluster held
    back past half its index's `index.gc_deletes` could land after a newer delete's tombstone
    expired, so it is not sent; it stays drift, and the next drift run reads the item again."""

    def __init__(self, es: Any) -> None:
        self.es = es
        self.gc_deletes: dict[str, int] = {}

    def read_ms(self, step: RepairStep) -> int | None:
        return step.read_ms if step.action == "index" else None  # deletes cannot resurrect

    def max_age_ms(self, index: str) -> float:
        if index not in self.gc_deletes:
            self.gc_deletes[index] = gc_deletes_ms(self.es, index)
        return self.gc_deletes[index] / 2

    def refresh(self, stale: list[tuple[Action, RepairStep]]) -> list[Refreshed]:
        reason = "held back by the cluster past the late-write limit: not sent"
        return [Refreshed(None, step.read_ms or 0, reason) for _action, step in stale]


class Repairer:
    """Collects drifted keys per table and repairs them in batches: fresh consistent read,
    plan, versioned writes (unless a dry run), read back."""

    def __init__(self, run: RepairContext) -> None:
        self.run = run
        self.result = RepairResult(dry_run=run.options.dry_run)
        self.failures = FailureLog(None if run.options.dry_run else run.options.failures_path)
        # table -> key JSON -> (index, id) -> what was found there
        self.pending: dict[str, dict[str, dict[tuple[str, str], str]]] = {}
        # table -> findings the repair left as they were (failed, 409, not verified, no key)
        self.unresolved: Counter[str] = Counter()
        self.written: set[str] = set()  # indices a write went to (recounted afterwards)

    def add(self, finding: Finding) -> None:
        table = self.pending.setdefault(finding.table, {})
        table.setdefault(finding.key_json, {})[(finding.index, finding.id)] = finding.kind
        if len(table) >= REPAIR_BATCH:
            self.flush(finding.table)

    def finish(self) -> RepairResult:
        try:
            for name in list(self.pending):
                self.flush(name)
        finally:
            self.failures.close()
        if self.failures.count:
            self.result.failures_path = str(self.failures.path)
        return self.result

    def flush(self, name: str) -> None:
        targets = self.pending.pop(name, {})
        if not targets:
            return
        table = next(t for t in self.run.tables if t.name == name)
        steps = self.plan(table, targets)
        self.result.keys += len(targets)
        self.result.planned += len(steps)
        if not self.run.options.dry_run and steps:
            self.execute(steps)
            self.verify(table, steps)
        for step in steps:
            if len(self.result.steps) < self.run.options.listed_steps:
                self.result.steps.append(step)

    def plan(
        self, table: DriftTable, targets: dict[str, dict[tuple[str, str], str]]
    ) -> list[RepairStep]:
        """What to write for each key, from a consistent read made now."""
        # Finding keys are canonical key JSON (the transform's, or re-spelled from the id).
        keys = {text: key for text in targets if (key := table.request_key(text)) is not None}
        for text in [t for t in targets if t not in keys]:
            # Never act on a key that cannot be read back: "not found" would delete it.
            log.warning("%s: cannot repair %s: not a key of this table", table.name, text)
            self.unresolved[table.name] += 1
            del targets[text]
        fresh = {
            text: (item, started)
            for text, item, started in batch_get(
                self.run.ddb, table, list(keys.values()), consistent=True, phase="repair"
            )
        }
        # A consistent read: a short margin, not the scan pages' long overlap (docs/spec.md).
        margin = self.run.settings.repair_margin
        wanted: dict[str, tuple[Document | None, str, int, int]] = {}
        pairs: set[tuple[str, str]] = set()
        for text, places in targets.items():
            item, started = fresh[table.key_text(keys[text])]
            doc, gone_reason = None, "item_gone"
            if item is not None:
                try:
                    doc = to_document(item, table.shape)
                except TransformError as exc:
                    gone_reason = exc.reason
            wanted[text] = (doc, gone_reason, repair_version(started, margin), started)
            pairs |= set(places)
            if doc is not None:
                pairs.add((doc.index, doc.id))
        current = self.run.search.mget(sorted(pairs))
        steps = []
        for text, places in targets.items():
            doc, gone_reason, version, read_ms = wanted[text]
            if doc is not None:
                have = current.get((doc.index, doc.id))
                if have is None or differing_fields(parse_document(doc.source), have):
                    reason = "missing" if have is None else "different"
                    steps.append(
                        RepairStep(
                            "index",
                            table.name,
                            doc.index,
                            doc.id,
                            doc.key_json,
                            version,
                            reason,
                            doc.source,
                            read_ms=read_ms,
                        )
                    )
                else:
                    self.result.already_in_sync += 1
            for index, doc_id in sorted(places):
                if doc is not None and (index, doc_id) == (doc.index, doc.id):
                    continue
                if (index, doc_id) not in current:
                    self.result.already_gone += 1
                    continue
                if self.run.claimed(index, self.run.others(index, but=table), [(doc_id, text)]):
                    # The last safety net: another table has this very document.
                    self.result.other_tables += 1
                    continue
                if doc is None:
                    reason = gone_reason
                elif doc.id == doc_id:
                    reason = "type_changed"
                else:
                    reason = "id_not_canonical"
                steps.append(RepairStep("delete", table.name, index, doc_id, text, version, reason))
        return steps

    def execute(self, steps: list[RepairStep]) -> None:
        actions: list[tuple[Any, RepairStep]] = []
        for step in steps:
            if step.action == "index":
                doc = Document(step.index, step.id, step.source or "{}", step.key_json)
                actions.append((index_action(doc, step.version), step))
            else:
                actions.append((delete_action(step.index, step.id, step.version), step))
        writer = BulkWriter(
            self.run.es, BulkOptions(chunk_size=500), freshener=_LateRepairs(self.run.es)
        )
        for result in writer.write(actions):
            step = result.tag
            if result.reread:
                step.outcome = "held_too_long"  # found again by the next drift run
            elif result.error is None:
                step.outcome = "indexed" if step.action == "index" else "deleted"
            elif result.status == 409:
                step.outcome = "newer_write_in_flight"
            elif result.status == 404 and step.action == "delete":
                step.outcome = "already_gone"
            else:
                step.outcome = "failed"
                step.error = result.error
                key = json.loads(step.key_json)  # as reindex writes keys: ints stay exact
                self.failures.write(
                    Failure(step.table, key, step.index, step.id, f"{result.status} {result.error}")
                )
            self._count(step)

    def _count(self, step: RepairStep) -> None:
        r = self.result
        if step.outcome in ("indexed", "deleted"):
            self.written.add(step.index)
        if step.outcome == "indexed":
            r.indexed += 1
        elif step.outcome == "deleted":
            r.deleted += 1
        elif step.outcome == "newer_write_in_flight":
            r.newer_write_in_flight += 1
            self.unresolved[step.table] += 1
        elif step.outcome == "already_gone":
            r.already_gone += 1
        elif step.outcome == "held_too_long":
            r.held_too_long += 1
            self.unresolved[step.table] += 1
        else:
            r.failed += 1
            self.unresolved[step.table] += 1

    def verify(self, table: DriftTable, steps: list[RepairStep]) -> None:
        """Read back what was written: the document now as planned, or gone."""
        done = [s for s in steps if s.outcome in ("indexed", "deleted", "already_gone")]
        current = self.run.search.mget(sorted({(s.index, s.id) for s in done}))
        for step in done:
            have = current.get((step.index, step.id))
            if step.action == "delete":
                step.verified = have is None
            else:
                expected = parse_document(step.source or "{}")
                step.verified = have is not None and not differing_fields(expected, have)
            if step.verified:
                self.result.verified += 1
            else:
                self.result.not_verified += 1
                self.unresolved[step.table] += 1
                log.warning("%s: not as planned when read back", step.describe())
