"""Export read rate next to scan rate, for the same items, in one run.

    .venv/bin/python bench/export_read.py [--items 30000] [--workers 8]

Seeds DynamoDB Local (in memory, ddb2es_cli.seed: ~700-byte items with every attribute type),
then reads the same items twice, items dropped as they arrive (no bulk):
  scan    source.scan_pages: parallel segments, fast decode, reindex's page size
  export  export.reader.export_pages over a full export of those items written in the real
          layout (gzip DYNAMODB_JSON, one data file per worker, MD5s checked)
Prints items/s and client CPU per item (this process; DynamoDB Local's own CPU is not counted,
so the scan figure flatters the scan: on AWS the table pays for it in read capacity instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddb2es_cli.clients import make_dynamodb_client
from ddb2es_cli.config import DEFAULT_PAGE_LIMIT, DynamoSettings
from ddb2es_cli.export.location import open_location
from ddb2es_cli.export.manifest import load_export
from ddb2es_cli.export.reader import export_pages, export_tasks
from ddb2es_cli.local import start_dynamodb, stop
from ddb2es_cli.seed import seed
from ddb2es_cli.source import Page, SegmentTask, install_fast_decode, scan_pages
from tests.export_fixtures import write_full_export
from tests.servers import free_port


def measure(name: str, pages: Iterator[Page]) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    items = 0
    for page in pages:
        items += len(page.items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "phase": name,
        "items": items,
        "seconds": round(wall, 3),
        "items_per_s": round(items / wall),
        "cpu_us_per_item": round(cpu / items * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddb2es-export-bench-") as tmp:
        work = Path(tmp)
        server = start_dynamodb(free_port(), work)
        try:
            settings = DynamoSettings(endpoint=server.url, region="us-east-1")
            ddb = make_dynamodb_client(settings)
            print(f"seeding {args.items} items", file=sys.stderr)
            tables = seed(ddb, items=args.items, prefix="bench-export-", item_bytes=700)
            print("seeded; measuring", file=sys.stderr)
            names = [t.name for t in tables]
            # All items of every table, scanned once to write the export from.
            everything: list[dict[str, Any]] = []
            install_fast_decode(ddb)
            results = []
            for name in names:
                tasks = [SegmentTask(name, n, args.workers) for n in range(args.workers)]
                pages = scan_pages(ddb, tasks, workers=args.workers, page_limit=DEFAULT_PAGE_LIMIT)
                everything.extend(item for page in pages for item in page.items)
            # One table stands for all (the export reader does not care about key schemas).
            per_file = -(-len(everything) // args.workers)
            files = [everything[n : n + per_file] for n in range(0, len(everything), per_file)]
            export = write_full_export(work / "bucket", names[0], files, int(time.time() * 1000))
            tasks = [
                SegmentTask(name, n, args.workers) for name in names for n in range(args.workers)
            ]
            results.append(
                measure(
                    "scan",
                    scan_pages(ddb, tasks, workers=args.workers, page_limit=DEFAULT_PAGE_LIMIT),
                )
            )
            loaded = load_export(open_location(export.url, lambda: None))
            results.append(
                measure(
                    "export",
                    export_pages(
                        loaded,
                        export_tasks(loaded, names[0]),
                        workers=args.workers,
                        page_limit=DEFAULT_PAGE_LIMIT,
                    ),
                )
            )
            size = sum(p.stat().st_size for p in export.data_files())
            print(json.dumps({"gzip_bytes": size, "results": results}, indent=1))
        finally:
            stop(server)


if __name__ == "__main__":
    main()
