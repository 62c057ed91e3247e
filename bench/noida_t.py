"""Why noida-db spends more CPU per document during T (reindex) than during W (bulk alone).

    .venv/bin/python bench/noida_t.py --kind small --items 100000 --repeat 2

Variants, alternated in rounds, each on a new noida-db, against one DynamoDB Local:
  W           bench/run.py's W: prepared documents sent with BulkWriter into plain indices
              (index creation, load settings, settings put back and refresh included)
  W owned     the same into indices created as reindex creates them (ownership mark, settings)
  W + scan    W while another process scans the same tables, as T's scan threads do
  T           `ddb2es reindex` end to end (bench/run.py's T)
  T pinned    T with noida-db alone on one core, DynamoDB Local and the client on the other

Prints, per variant, documents/s and the CPU noida-db and DynamoDB Local used per document.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from run import (
    WORK_DIR,
    Setup,
    _process_cpu,
    dynamodb_local,
    ensure_dataset,
    fresh_search_server,
    log,
    measure_bulk,
    measure_reindex,
    measure_scan,
    prepare_actions,
)

from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.sink import Action, BulkOptions

Measure = Callable[[Setup, str, list[Action]], int]  # returns the documents written


def w_plain(setup: Setup, es_url: str, actions: list[Action]) -> int:
    return measure_bulk(setup, es_url, actions).items


def w_owned(setup: Setup, es_url: str, actions: list[Action]) -> int:
    return measure_bulk(setup, es_url, actions, owned=True).items


def w_with_scan(setup: Setup, es_url: str, actions: list[Action]) -> int:
    with scanning(setup):
        return measure_bulk(setup, es_url, actions).items


def t_plain(setup: Setup, es_url: str, actions: list[Action]) -> int:
    return measure_reindex(setup, es_url, small=False).items


def t_pinned(setup: Setup, es_url: str, actions: list[Action]) -> int:
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})  # the reindex child inherits it
    try:
        return measure_reindex(setup, es_url, small=False).items
    finally:
        os.sched_setaffinity(0, mine)


@contextlib.contextmanager
def scanning(setup: Setup) -> Iterator[None]:
    """Another process scanning the full set over and over, as T's scan threads would."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--scan-forever", setup.dynamodb_url, *setup.full],
        cwd=Path(__file__).parent,
    )
    try:
        yield
    finally:
        child.kill()
        child.wait()


VARIANTS: dict[str, Measure] = {
    "W": w_plain,
    "W owned": w_owned,
    "W + scan": w_with_scan,
    "T": t_plain,
    "T pinned": t_pinned,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("rich", "small"), default="small")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS), default=[])
    parser.add_argument("--scan-forever", nargs="+", metavar=("URL", "TABLE"))
    args = parser.parse_args()
    if args.scan_forever:
        return scan_forever(args.scan_forever[0], args.scan_forever[1:])
    names = args.only or list(VARIANTS)
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        setup = Setup(
            dynamodb_url=ddb.url,
            full=ensure_dataset(ddb.url, args.items, args.kind),
            small=[],
            segments=ReindexOptions().segments,
            chunk_size=BulkOptions().chunk_size,
            page_limit=ReindexOptions().page_limit,
        )
        actions = prepare_actions(setup)
        for _round in range(args.repeat):
            for name in names:
                with fresh_search_server(WORK_DIR / "search", "elasticsearch") as es:
                    if name == "T pinned":
                        os.sched_setaffinity(es.pid, {1})
                        os.sched_setaffinity(ddb.pid, {0})
                    noida, dynamo = _process_cpu(es.pid), _process_cpu(ddb.pid)
                    started = time.perf_counter()
                    items = VARIANTS[name](setup, es.url, actions)
                    seconds = time.perf_counter() - started
                    noida = (_process_cpu(es.pid) - noida) / items * 1e6
                    dynamo = (_process_cpu(ddb.pid) - dynamo) / items * 1e6
                    os.sched_setaffinity(ddb.pid, {0, 1})
                figures[name].append((items / seconds, noida, dynamo))
                log(f"{name}: {items / seconds:.0f} docs/s, noida-db {noida:.0f} us/doc, "
                    f"DynamoDB Local {dynamo:.0f} us/doc")  # fmt: skip
    print("| variant | docs/s | noida-db CPU per doc | DynamoDB Local CPU per doc |")
    print("|---|---|---|---|")
    for name, runs in figures.items():
        rates, noida_us, dynamo_us = zip(*runs, strict=True)
        print(
            f"| {name} | {' / '.join(f'{r:.0f}' for r in rates)} "
            f"| {statistics.median(noida_us):.0f} us ({' / '.join(f'{n:.0f}' for n in noida_us)}) "
            f"| {statistics.median(dynamo_us):.0f} us |"
        )
    return 0


def scan_forever(url: str, tables: list[str]) -> int:
    """The scan of `--scan-forever`: R (measure_scan) again and again until killed."""
    setup = Setup(url, tables, [], ReindexOptions().segments, 0, ReindexOptions().page_limit)
    while True:
        measure_scan(setup, fast=True)


if __name__ == "__main__":
    sys.exit(main())
