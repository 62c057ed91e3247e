"""The drift report: what each check found per table and index, and what the repair did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ddb2es_cli.drift.options import CountMode, DriftOptions
from ddb2es_cli.errors import ExitStatus

FindingKind = Literal["missing", "different", "orphan"]
# Why an orphan should not be where it is.
OrphanReason = Literal["", "item_gone", "type_changed", "invalid_index_name", "id_not_canonical"]
SampleMethod = Literal["none", "key-scan", "segments", "full"]
RepairAction = Literal["index", "delete"]
RepairOutcome = Literal[
    "planned",
    "indexed",
    "deleted",
    "newer_write_in_flight",
    "already_gone",
    "held_too_long",
    "failed",
]


@dataclass(frozen=True)
class Finding:
    """One document that is not what the table says: `missing`, `different` or `orphan`."""

    kind: FindingKind
    table: str
    index: str
    id: str
    key_json: str
    reason: str = ""  # orphans: an OrphanReason (or the transform's reason for refusing the item)
    fields: tuple[str, ...] = ()  # `different`: the fields that differ (dotted paths)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "index": self.index, "id": self.id}
        if self.key_json != self.id:
            data["key"] = self.key_json
        if self.reason:
            data["reason"] = self.reason
        if self.kind == "different":
            data["fields"] = list(self.fields)
        return data


@dataclass
class FullCounts:
    missing: int = 0
    different: int = 0
    orphans: int = 0

    @property
    def total(self) -> int:
        return self.missing + self.different + self.orphans


@dataclass
class IndexReport:
    index: str
    table_count: int | None = None  # items of this table for this index (None: estimated)
    index_count: int | None = None  # `_count` (None: not asked)
    exists: bool = True
    shared_with: list[str] = field(default_factory=list)  # other tables of the run feeding it
    maybe_shared_with: list[str] = field(default_factory=list)  # configured, not checked
    expected_count: int | None = None  # table_count summed over the tables sharing the index
    # Documents with the key attributes of the run's tables that feed the index (None: not
    # asked); the count comparison uses it, so documents of other key shapes do not count.
    own_count: int | None = None
    claimed_elsewhere: int = 0  # documents found to be configured tables' outside the run
    comparable: bool = True  # False: other tables of the config feed it too; see not_comparable
    not_comparable: str = ""
    not_comparable_tables: list[str] = field(default_factory=list)  # outside the run
    own_count_after_repair: int | None = None  # recounted after a repair wrote to the index
    discovered: bool = False  # no item maps here now, but the index holds the table's documents
    sampled: int = 0  # sampled items that belong to this index
    missing: int = 0
    different: int = 0
    orphans_checked: int = 0
    orphans: int = 0
    foreign: int = 0
    full: FullCounts | None = None
    examples: list[Finding] = field(default_factory=list)

    @property
    def documents(self) -> int | None:
        """The documents the count comparison counts: the run's key shapes, else all."""
        return self.index_count if self.own_count is None else self.own_count

    @property
    def other_key_documents(self) -> int:
        """Documents without the key attributes of any table of the run that feeds the index."""
        if self.own_count is None or self.index_count is None:
            return 0
        return self.index_count - self.own_count

    @property
    def difference(self) -> int | None:
        return self._difference(self.documents)

    @property
    def difference_after_repair(self) -> int | None:
        if self.own_count_after_repair is None:
            return self.difference
        return self._difference(self.own_count_after_repair)

    def _difference(self, documents: int | None) -> int | None:
        expected = self.table_count if self.expected_count is None else self.expected_count
        if expected is None or documents is None or not self.comparable:
            return None
        return documents - expected

    def wants_example(self, kind: str, limit: int) -> bool:
        """A few examples of each kind of finding (`limit` per kind)."""
        return sum(1 for f in self.examples if f.kind == kind) < limit

    @property
    def sampled_findings(self) -> int:
        return self.missing + self.different + self.orphans

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "exists": self.exists,
            "table_count": self.table_count,
            "index_count": self.index_count,
            "documents": self.documents,
            "difference": self.difference,
            "comparable": self.comparable,
            "not_comparable": self.not_comparable,
            "other_key_documents": self.other_key_documents,
            "claimed_elsewhere": self.claimed_elsewhere,
            "discovered": self.discovered,
            "documents_after_repair": self.own_count_after_repair,
            "shared_with": self.shared_with,
            "maybe_shared_with": self.maybe_shared_with,
            "sampled": self.sampled,
            "missing": self.missing,
            "different": self.different,
            "orphans_checked": self.orphans_checked,
            "orphans": self.orphans,
            "foreign": self.foreign,
            "full": vars(self.full) if self.full is not None else None,
            "examples": [f.as_dict() for f in self.examples],
        }


@dataclass
class TableReport:
    table: str
    hash_key: str
    range_key: str | None
    counts_mode: CountMode
    items: int = 0  # exact count, or the estimate (see items_estimated)
    items_estimated: bool = False
    invalid_index_items: int = 0  # items whose type is not a valid index name (never indexed)
    invalid_index_types: dict[str, int] = field(default_factory=dict)
    untransformable: int = 0  # items the transform refused for another reason
    sample_method: SampleMethod = "none"
    sample_requested: int = 0
    sample_drawn: int = 0
    sample_checked: int = 0
    sample_vanished: int = 0  # drawn, then gone before BatchGetItem read them
    sample_invalid: int = 0  # sampled items whose type is not a valid index name
    total_segments: int | None = None  # segment sampling: how finely the table was cut
    segments_scanned: int = 0
    rcu: dict[str, float] = field(default_factory=dict)
    indices: dict[str, IndexReport] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why the table counts as drifted
    # After a repair: the drift that remains (None: no repair wrote anything).
    remaining: list[str] | None = None
    sample_keys: list[str] = field(default_factory=list, repr=False)  # key JSON, rank order

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    def index(self, name: str) -> IndexReport:
        if name not in self.indices:
            self.indices[name] = IndexReport(name, table_count=0 if self.exact else None)
        return self.indices[name]

    @property
    def exact(self) -> bool:
        return self.counts_mode == "exact"

    def add_rcu(self, phase: str, units: float) -> None:
        self.rcu[phase] = self.rcu.get(phase, 0.0) + units

    def record(self, finding: Finding, examples: int, *, full: bool = False) -> None:
        report = self.index(finding.index)
        if full:
            counts = report.full if report.full is not None else FullCounts()
            report.full = counts
            setattr(counts, _plural(finding.kind), getattr(counts, _plural(finding.kind)) + 1)
        else:
            setattr(report, _plural(finding.kind), getattr(report, _plural(finding.kind)) + 1)
        if report.wants_example(finding.kind, examples):
            report.examples.append(finding)

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "hash_key": self.hash_key,
            "range_key": self.range_key,
            "counts": self.counts_mode,
            "items": self.items,
            "items_estimated": self.items_estimated,
            "invalid_index_items": self.invalid_index_items,
            "invalid_index_types": dict(sorted(self.invalid_index_types.items())),
            "untransformable": self.untransformable,
            "sample": {
                "method": self.sample_method,
                "requested": self.sample_requested,
                "drawn": self.sample_drawn,
                "checked": self.sample_checked,
                "vanished": self.sample_vanished,
                "invalid_index_name": self.sample_invalid,
                "total_segments": self.total_segments,
                "segments_scanned": self.segments_scanned,
            },
            "rcu": {phase: round(units, 1) for phase, units in sorted(self.rcu.items())},
            "indices": [self.indices[name].as_dict() for name in sorted(self.indices)],
            "notes": self.notes,
            "drifted": self.drifted,
            "reasons": self.reasons,
            "drift_remains": self.drift_remains,
            "remaining": self.reasons if self.remaining is None else self.remaining,
        }

    @property
    def drift_remains(self) -> bool:
        """Drift found and not repaired (and verified) by this run."""
        return self.drifted if self.remaining is None else bool(self.remaining)


def _plural(kind: str) -> str:
    return "orphans" if kind == "orphan" else kind


@dataclass
class RepairStep:
    """One change of a repair plan: `index` a fresh document, or `delete` a stale one."""

    action: RepairAction
    table: str
    index: str
    id: str
    key_json: str
    version: int
    reason: str
    source: str | None = None  # the document (index steps)
    read_ms: int | None = None  # when the consistent read behind it started (index steps)
    outcome: RepairOutcome = "planned"
    error: str | None = None
    verified: bool | None = None

    def describe(self, dry_run: bool = False) -> str:
        where = "into" if self.action == "index" else "from"
        verb = f"Would {self.action}" if dry_run else self.action.capitalize()
        return (
            f"{verb} {self.id} {where} {self.index} "
            f"(version {self.version}, external_gte): {self.reason}"
        )

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "action": self.action,
            "table": self.table,
            "index": self.index,
            "id": self.id,
            "version": self.version,
            "version_type": "external_gte",
            "reason": self.reason,
            "outcome": self.outcome,
        }
        if self.key_json != self.id:
            data["key"] = self.key_json
        if self.source is not None:
            data["document"] = self.source
        if self.error:
            data["error"] = self.error
        if self.verified is not None:
            data["verified"] = self.verified
        return data


@dataclass
class RepairResult:
    dry_run: bool
    keys: int = 0  # drifted keys re-read
    planned: int = 0
    indexed: int = 0
    deleted: int = 0
    newer_write_in_flight: int = 0  # 409: a newer write landed first; left alone
    already_gone: int = 0  # delete found nothing to delete
    held_too_long: int = 0  # not sent: the cluster held it back past the late-write limit
    already_in_sync: int = 0  # the fresh read matches the index now (the write was in flight)
    other_tables: int = 0  # not deleted: another table has an item for the document
    failed: int = 0
    verified: int = 0  # read back after the write and found right
    not_verified: int = 0
    steps: list[RepairStep] = field(default_factory=list)  # the first `listed_steps`
    failures_path: str | None = None  # where the failed writes went, if any failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "keys": self.keys,
            "planned": self.planned,
            "indexed": self.indexed,
            "deleted": self.deleted,
            "newer_write_in_flight": self.newer_write_in_flight,
            "held_too_long": self.held_too_long,
            "already_gone": self.already_gone,
            "already_in_sync": self.already_in_sync,
            "other_tables": self.other_tables,
            "failed": self.failed,
            "verified": self.verified,
            "not_verified": self.not_verified,
            "steps": [s.as_dict() for s in self.steps],
            "steps_listed": len(self.steps),
            "failures_path": self.failures_path,
        }


@dataclass
class DriftReport:
    tables: list[TableReport]
    seed: int
    options: DriftOptions
    repair: RepairResult | None = None
    duration_s: float = 0.0

    @property
    def drifted(self) -> bool:
        """Drift was found (beyond the tolerance); a repair does not change what was found."""
        return any(t.drifted for t in self.tables)

    @property
    def drift_remains(self) -> bool:
        """Drift that this run did not repair and verify: exit 3 (a repair that fixed and read
        back everything it found exits 0)."""
        return any(t.drift_remains for t in self.tables)

    @property
    def exit_status(self) -> ExitStatus:
        return ExitStatus.DIFFERS if self.drift_remains else ExitStatus.OK

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "drifted": self.drifted,
            "drift_remains": self.drift_remains,
            "seed": self.seed,
            "options": {
                "counts": o.counts,
                "sample": o.sample,
                "orphans": o.orphan_sample,
                "full": o.full,
                "refresh": o.refresh,
                "tolerance": o.tolerance,
                "repair": o.repair,
                "dry_run": o.dry_run,
                "segments": o.segments,
            },
            "tables": [t.as_dict() for t in self.tables],
            "repair": self.repair.as_dict() if self.repair is not None else None,
            "duration_s": round(self.duration_s, 2),
        }
