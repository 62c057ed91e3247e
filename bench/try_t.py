"""Run `ddb2es reindex` (T) alone a few times with different options: user and system CPU per item.

.venv/bin/python bench/try_t.py --kind small --engine elasticsearch -- --segments 2
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from run import WORK_DIR, dynamodb_local, ensure_dataset, fresh_search_server, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("rich", "small"), default="small")
    parser.add_argument(
        "--engine", choices=("opensearch", "elasticsearch"), default="elasticsearch"
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("extra", nargs="*", help="options for reindex (after --)")
    args = parser.parse_args()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        tables = ensure_dataset(ddb.url, args.items, args.kind)
        with fresh_search_server(WORK_DIR / "search", args.engine) as es:
            workdir = WORK_DIR / "try"
            workdir.mkdir(parents=True, exist_ok=True)
            argv = [
                sys.executable, "-m", "ddb2es_cli", "--dynamodb-endpoint", ddb.url,
                "--es-url", es.url, "--quiet", "--json", "reindex", *tables,
                "--failures", str(workdir / "failures.ndjson"),
                "--state-file", str(workdir / "state.json"), *args.extra,
            ]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(argv, check=True, cwd=workdir, stdout=subprocess.DEVNULL, env=os.environ)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
            n = args.items
            log(
                f"T {args.extra}: {time.perf_counter() - started:.1f} s, user {user / n * 1e6:.0f}"
                f" + sys {system / n * 1e6:.0f} us per item; ctx switches "
                f"{after.ru_nvcsw - before.ru_nvcsw} voluntary, "
                f"{after.ru_nivcsw - before.ru_nivcsw} involuntary"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
