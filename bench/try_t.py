"""Run `ddb2es reindex` (T) alone with different options, alternated: CPU per item of each.

    .venv/bin/python bench/try_t.py --kind small --engine elasticsearch --repeat 3 \\
        -- "" "--segments 2" "--page-size 1000"

Each quoted argument is one variant (reindex options); the variants run one after the other,
`--repeat` rounds, against the same DynamoDB Local, each on a new search server, so machine load
hits every variant alike. Prints user and system CPU per item.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
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
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run each variant with the ddb2es_cli in DIR",
    )
    parser.add_argument("variants", nargs="*", help="reindex options per variant (after --)")
    args = parser.parse_args()
    variants = args.variants or [""]
    codes = [("this", None)] + [tuple(c.split("=", 1)) for c in args.code]
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    cpu: dict[str, list[float]] = {}
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        tables = ensure_dataset(ddb.url, args.items, args.kind)
        workdir = WORK_DIR / "try"
        workdir.mkdir(parents=True, exist_ok=True)
        for _round in range(args.repeat):
            for code_name, code_dir in codes:
                env = dict(os.environ)
                if code_dir:
                    env["PYTHONPATH"] = code_dir
                for variant in variants:
                    with fresh_search_server(WORK_DIR / "search", args.engine) as es:
                        (workdir / "state.json").unlink(missing_ok=True)
                        argv = [
                            sys.executable, "-m", "ddb2es_cli", "--dynamodb-endpoint", ddb.url,
                            "--es-url", es.url, "--quiet", "--json", "reindex", *tables,
                            "--failures", str(workdir / "failures.ndjson"),
                            "--state-file", str(workdir / "state.json"), *shlex.split(variant),
                        ]  # fmt: skip
                        label = f"{code_name} [{variant}]"
                        started = time.perf_counter()
                        child = subprocess.Popen(
                            argv, cwd=workdir, stdout=subprocess.DEVNULL, env=env
                        )
                        _pid, status, usage = os.wait4(child.pid, 0)
                        if os.waitstatus_to_exitcode(status) != 0:
                            raise RuntimeError(f"{label}: reindex failed")
                        wall = time.perf_counter() - started
                        user, system = usage.ru_utime, usage.ru_stime
                        n = args.items
                        cpu.setdefault(label, []).append((user + system) / n * 1e6)
                        log(
                            f"T {label}: {wall:.1f} s, {n / wall:.0f} items/s, user "
                            f"{user / n * 1e6:.0f} + sys {system / n * 1e6:.0f} us per item, "
                            f"peak RSS {usage.ru_maxrss / 1024:.0f} MB"
                        )
    for label, values in cpu.items():
        log(
            f"{label}: CPU per item min {min(values):.0f}, median "
            f"{statistics.median(values):.0f} us ({len(values)} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
