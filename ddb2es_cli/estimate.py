"""What a full scan of tables will cost, before it runs (`reindex --dry-run`, `reload --dry-run`).

Pure arithmetic on the figures DescribeTable gives (ItemCount, TableSizeBytes), so an operator
can size `--max-rcu`, the table's read quota and the time window before starting.

How DynamoDB charges a Scan: it counts the bytes of every item it *reads* (not returns), sums
them per page (request) and rounds that sum up to the next 4 KB; an eventually consistent read
(what ddb2es scans with) costs 0.5 RCU per 4 KB. So a full scan costs 0.5 RCU per 4 KB of the
table, plus less than 0.5 RCU per page for the rounding: `rcu` is the first figure, `rcu_max`
adds the rounding of the pages the scan will make (an upper bound, given the table figures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BYTES_PER_READ_UNIT = 4096
RCU_PER_UNIT = 0.5  # eventually consistent
MAX_PAGE_BYTES = 1024 * 1024  # DynamoDB ends a Scan page at 1 MB read
STALENESS_NOTE = (
    "Item counts and sizes come from DescribeTable, which DynamoDB updates about every 6 hours."
)


@dataclass(frozen=True)
class TableSize:
    """One table as DescribeTable sees it."""

    table: str
    items: int
    size_bytes: int


@dataclass(frozen=True)
class ScanEstimate:
    """The cost of scanning some bytes in some pages, and how long `max_rcu` makes it last."""

    items: int
    size_bytes: int
    pages: int
    rcu: float
    rcu_max: float
    min_duration_s: float | None  # None without --max-rcu: no cap, no floor on the duration

    def as_dict(self) -> dict[str, int | float | None]:
        return {
            "items": self.items,
            "size_bytes": self.size_bytes,
            "pages": self.pages,
            "rcu": self.rcu,
            "rcu_max": self.rcu_max,
            "min_duration_s": self.min_duration_s,
        }


def scan_pages(items: int, size_bytes: int, segments: int, page_limit: int | None) -> int:
    """Pages (Scan requests) a full parallel scan makes, at most.

    A page ends at `page_limit` items or 1 MB read; each segment's last page is partial (and an
    empty segment still answers one empty page), hence the `+ segments`."""
    by_bytes = math.ceil(size_bytes / MAX_PAGE_BYTES)
    by_items = math.ceil(items / page_limit) if page_limit else 0
    return max(by_bytes, by_items) + segments


def scan_rcu(size_bytes: int) -> float:
    """Read capacity of an eventually consistent Scan over `size_bytes`, before page rounding."""
    return RCU_PER_UNIT * math.ceil(size_bytes / BYTES_PER_READ_UNIT)


def estimate_scan(
    items: int,
    size_bytes: int,
    segments: int,
    page_limit: int | None,
    max_rcu: float | None,
) -> ScanEstimate:
    pages = scan_pages(items, size_bytes, segments, page_limit)
    rcu = scan_rcu(size_bytes)
    return ScanEstimate(
        items=items,
        size_bytes=size_bytes,
        pages=pages,
        rcu=rcu,
        rcu_max=rcu + RCU_PER_UNIT * pages,
        min_duration_s=round(rcu / max_rcu, 1) if max_rcu else None,
    )


@dataclass(frozen=True)
class Estimate:
    """Per table and in total; `max_rcu` is the cap the run would use (None: uncapped)."""

    tables: dict[str, ScanEstimate]
    total: ScanEstimate
    max_rcu: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [{"table": name, **e.as_dict()} for name, e in self.tables.items()],
            "total": self.total.as_dict(),
            "max_rcu": self.max_rcu,
            "note": STALENESS_NOTE,
        }

    def lines(self) -> list[str]:
        rows = list(self.tables.items())
        if len(rows) > 1:
            rows.append(("total", self.total))
        return [_line(name, e, self.max_rcu) for name, e in rows] + [STALENESS_NOTE]


def estimate(
    tables: Sequence[TableSize],
    segments: int,
    page_limit: int | None,
    max_rcu: float | None,
) -> Estimate:
    """The estimate of scanning every table once, `segments` segments each."""
    per_table = {
        t.table: estimate_scan(t.items, t.size_bytes, segments, page_limit, max_rcu) for t in tables
    }
    size = sum(e.size_bytes for e in per_table.values())
    rcu = sum(e.rcu for e in per_table.values())
    total = ScanEstimate(
        items=sum(e.items for e in per_table.values()),
        size_bytes=size,
        pages=sum(e.pages for e in per_table.values()),
        rcu=rcu,
        rcu_max=sum(e.rcu_max for e in per_table.values()),
        # One cap covers every table of a run: the total reads at max_rcu per second.
        min_duration_s=round(rcu / max_rcu, 1) if max_rcu else None,
    )
    return Estimate(per_table, total, max_rcu)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def human_number(value: float) -> str:
    """Thousands separated; one decimal only when there is one (RCU come in halves)."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _line(name: str, e: ScanEstimate, max_rcu: float | None) -> str:
    line = (
        f"Estimate {name}: ~{e.items:,} items, {human_bytes(e.size_bytes)}; a full scan reads "
        f"~{human_number(e.rcu)} RCU (at most {human_number(e.rcu_max)} with 4 KB rounding per "
        f"page, {e.pages:,} pages)"
    )
    if max_rcu and e.min_duration_s is not None:
        line += (
            f"; at --max-rcu {human_number(max_rcu)}: at least {human_duration(e.min_duration_s)}"
        )
    return line
