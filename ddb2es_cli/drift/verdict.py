"""The verdict: what makes a table count as drifted, before and after a repair."""

from __future__ import annotations

import math

from ddb2es_cli.drift.report import TableReport


def evaluate(table: TableReport, tolerance: int) -> None:
    """Fill `reasons`: what makes this table count as drifted (beyond `tolerance`)."""
    table.reasons[:] = reasons(table, tolerance, after_repair=False)


def reasons(table: TableReport, tolerance: int, *, after_repair: bool) -> list[str]:
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
