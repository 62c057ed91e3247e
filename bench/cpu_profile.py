"""CPU profile of a real `ddb2es reindex` (all threads) against a local engine.

    .venv/bin/python bench/cpu_profile.py --kind small --engine elasticsearch --items 20000
    .venv/bin/python bench/cpu_profile.py --kind small --engine elasticsearch --items 100000 \\
        --py-spy .venv/bin/py-spy

Uses the benchmark's data sets (loaded once into bench/data) and a fresh search server. Default:
cProfile on every thread (bench/profile_run.py), writes bench/results/profile-<kind>-<engine>.pstats
and prints the top entries. With `--py-spy PATH` (py-spy is not a project dependency: install it
into the venv yourself) the run is sampled instead, only the thread holding the GIL (`--gil`: the
Python CPU, without cProfile's cost per call), and the samples are summed by stage and by line
(bench/results/py-spy-<kind>-<engine>.txt holds the raw stacks). `--code DIR` profiles the
ddb2es_cli in DIR (an exported older commit) instead of this tree's.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from run import (
    BENCH_DIR,
    WORK_DIR,
    dynamodb_local,
    ensure_dataset,
    fresh_search_server,
    log,
)

# Stages of a reindex, by a frame that marks them (first match wins), for the py-spy summary.
STAGES = (
    ("imports (start-up)", "_find_and_load"),
    ("building the clients", "make_search_client"),
    ("building the clients", "make_dynamodb_client"),
    ("scan: JSON decode of Scan pages", "before_parse"),
    ("scan: the rest of botocore's Scan call", "scan_segment"),
    ("transform (to_document)", "to_document"),
    ("bulk: body, send, answer decode (request thread)", "_Request.run"),
    ("bulk: outcomes per document (_answers)", "BulkWriter._answers"),
    ("reindex: per-item actions and tags", "_Run.actions"),
    ("reindex: per-result bookkeeping (record)", "record ("),
    ("bulk writer: chunks, freshness, the rest", "BulkWriter.write"),
)


def summarize_py_spy(raw: Path, top: int = 25) -> str:
    """Shares of the samples per stage and per line (own time), from py-spy's raw output."""
    stages: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    total = 0
    for row in raw.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        stages[next((name for name, mark in STAGES if mark in stack), "other")] += n
        lines[stack.rsplit(";", 1)[-1]] += n
    out = [f"{total} samples (GIL held)", "", "by stage:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in stages.most_common()]
    out += ["", f"top {top} lines by own samples:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in lines.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("rich", "small"), default="rich")
    parser.add_argument("--engine", choices=("opensearch", "elasticsearch"), default="opensearch")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=None, help="default: reindex's own")
    parser.add_argument("--py-spy", default=None, metavar="PATH", help="sample with py-spy")
    parser.add_argument("--code", default=None, metavar="DIR", help="ddb2es_cli from DIR")
    args = parser.parse_args()
    results = BENCH_DIR / "results"
    results.mkdir(parents=True, exist_ok=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": args.code} if args.code else None
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        tables = ensure_dataset(ddb.url, args.items, args.kind)
        with fresh_search_server(WORK_DIR / "search", args.engine) as es:
            workdir = WORK_DIR / "profile"
            workdir.mkdir(parents=True, exist_ok=True)
            reindex = [
                "-m", "ddb2es_cli", "--dynamodb-endpoint", ddb.url, "--es-url", es.url,
                "--quiet", "--json", "reindex", *tables,
                *(["--segments", str(args.segments)] if args.segments else []),
                "--failures", str(workdir / "failures.ndjson"),
                "--state-file", str(workdir / "state.json"),
            ]  # fmt: skip
            if args.py_spy:
                raw = results / f"py-spy-{args.kind}-{args.engine}.txt"
                spy = str(Path(args.py_spy).resolve())  # the child runs in its own folder
                argv = [spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(raw)]
                argv += ["--", sys.executable, *reindex]
            else:
                out = results / f"profile-{args.kind}-{args.engine}.pstats"
                argv = [sys.executable, str(BENCH_DIR / "profile_run.py"), str(out), *reindex]
            started = time.perf_counter()
            subprocess.run(argv, check=True, cwd=workdir, env=env)
            log(f"reindex under the profiler: {time.perf_counter() - started:.1f} s")
    if args.py_spy:
        print(summarize_py_spy(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
