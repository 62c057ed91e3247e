"""CPU profile of a real `ddb2es reindex` (all threads) against a local engine.

    .venv/bin/python bench/cpu_profile.py --kind small --engine elasticsearch --items 20000

Uses the benchmark's data sets (loaded once into bench/data) and a fresh search server; writes
bench/results/profile-<kind>-<engine>.pstats and prints the top entries (bench/profile_run.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from run import (
    BENCH_DIR,
    WORK_DIR,
    dynamodb_local,
    ensure_dataset,
    fresh_search_server,
    log,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("rich", "small"), default="rich")
    parser.add_argument("--engine", choices=("opensearch", "elasticsearch"), default="opensearch")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=8)
    args = parser.parse_args()
    out = BENCH_DIR / "results" / f"profile-{args.kind}-{args.engine}.pstats"
    out.parent.mkdir(parents=True, exist_ok=True)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        tables = ensure_dataset(ddb.url, args.items, args.kind)
        with fresh_search_server(WORK_DIR / "search", args.engine) as es:
            workdir = WORK_DIR / "profile"
            workdir.mkdir(parents=True, exist_ok=True)
            argv = [
                sys.executable, str(BENCH_DIR / "profile_run.py"), str(out), "-m", "ddb2es_cli",
                "--dynamodb-endpoint", ddb.url, "--es-url", es.url, "--quiet", "--json",
                "reindex", *tables, "--segments", str(args.segments),
                "--failures", str(workdir / "failures.ndjson"),
                "--state-file", str(workdir / "state.json"),
            ]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(argv, check=True, cwd=workdir)
            log(f"reindex under the profiler: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
