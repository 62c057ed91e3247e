"""Side by side on one table: W, then reindex with 250-item pages, then with 1 MB pages.

    .venv/bin/python bench/page_size.py [TABLE]

Uses bench/run.py's data (run `make bench` once first) and its phases; prints rate, client CPU
per item and peak RSS of each. See docs/benchmarks.md, "Page size".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

from ddb2es_cli.config import DEFAULT_PAGE_LIMIT
from ddb2es_cli.sink import BulkOptions


def measure_with_pages(setup: bench.Setup, es_url: str, *, pages: int) -> bench.Phase:
    phase = bench.measure_reindex(
        setup, es_url, small=False, extra_args=["--page-size", str(pages)]
    )
    phase.name = f"T, --page-size {pages}"
    return phase


def main(table: str) -> None:
    with bench.dynamodb_local(bench.WORK_DIR / "dynamodb-pages") as ddb:
        setup = bench.Setup(
            dynamodb_url=ddb.url,
            full=[table],
            small=[table],
            segments=8,
            chunk_size=BulkOptions().chunk_size,
            page_limit=DEFAULT_PAGE_LIMIT,
        )
        runner = bench.Runner(setup, ddb)
        actions = bench.prepare_actions(setup)
        phases = [runner.with_osmem(bench.measure_bulk, actions)]
        del actions
        for pages in (DEFAULT_PAGE_LIMIT, 0):
            phases.append(runner.with_osmem(measure_with_pages, pages=pages))
    for p in phases:
        rss = f"{p.peak_rss_mb:.0f} MB" if p.peak_rss_mb is not None else "-"
        print(
            f"{p.name:<22} {p.items:>7} items {p.seconds:7.1f} s {p.rate:6.0f}/s  "
            f"CPU {p.cpu_us_per_item:4.0f} us/item  peak RSS {rss}  others {p.other_cores:.2f}"
        )


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(__doc__)
    main(sys.argv[1] if len(sys.argv) > 1 else "bench-200000-700b-orders")
