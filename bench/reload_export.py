"""A blue/green reload from the tables next to one from exports of them, in one run.

    .venv/bin/python bench/reload_export.py [--items 10000] [--engine elasticsearch]

Seeds DynamoDB Local (in memory; the three sample tables, streams on, ~700-byte items), writes a
full export of each table in the real layout (gzip DYNAMODB_JSON, 8 data files, MD5s), starts a
search server, then runs, as an operator would, one after the other on the same data:
  scan    `ddb2es reload T1 T2 T3 --yes`            (plan count, load, verification count: 3 scans)
  export  `ddb2es reload T1 T2 T3 --from-export U1 U2 U3 --yes`
                                                    (counts and load from the exports, then the
                                                     stream replay from the export time)
The exports are taken a minute after the seed, with `version_overlap_ms = 60000` (the least
DynamoDB Local's minute-rounded stream times allow), so the replay applies only what the overlap
window holds (`--no-settle`: export at once, and the replay re-applies every seeded item, the
worst case: the whole table written within the overlap before the export).
Prints wall time, client CPU (the CLI process, RUSAGE_CHILDREN) and the read capacity each took:
the load's from the summary; the plan's and the verification's counting scans are measured with
the same `type_counts` call the reload makes (they read whole items: a projection does not lower
the capacity a Scan consumes). Both runs wait the same marker wait (REBUILD_CHECK_SECONDS + 5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddb2es_cli.clients import make_dynamodb_client
from ddb2es_cli.config import DynamoSettings, Settings, TableSettings
from ddb2es_cli.local import ServerProcess, start_dynamodb, start_search, stop
from ddb2es_cli.reload_plan import type_counts
from ddb2es_cli.seed import seed
from tests.export_fixtures import write_full_export
from tests.servers import free_port, start_elasticsearch

ENV = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
FILES = 8


def log(message: str) -> None:
    print(f"[bench-reload-export {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


OVERLAP_MS = 60_000


def run_cli(
    urls: tuple[str, str], work: Path, args: list[str], profile: Path | None = None
) -> tuple[dict[str, Any], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2ES_"))}
    env.update(ENV, DDB2ES_DYNAMODB_ENDPOINT=urls[0], DDB2ES_ES_URL=urls[1])
    config = work / "ddb2es.toml"
    python = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else [])]
    line = [*python, "-m", "ddb2es_cli", "--config", str(config), "--quiet", "--json", *args]
    cpu = children_cpu()
    done = subprocess.run(line, capture_output=True, text=True, env=env, cwd=work)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result, children_cpu() - cpu


def export_tables(ddb: Any, names: list[str], root: Path) -> list[str]:
    urls = []
    for name in names:
        items: list[dict[str, Any]] = []
        for page in ddb.get_paginator("scan").paginate(TableName=name):
            items.extend(page["Items"])
        files = [items[n::FILES] for n in range(FILES)]
        urls.append(write_full_export(root, name, files, int(time.time() * 1000)).url)
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument(
        "--engine", choices=["opensearch", "elasticsearch"], default="elasticsearch"
    )
    parser.add_argument("--no-settle", action="store_true", help="export right after the seed")
    parser.add_argument("--profile", type=Path, help="cProfile the export reload into this file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ddb2es-bench-reload-export-"))
    servers: list[ServerProcess] = [start_dynamodb(free_port(), work)]
    try:
        port = free_port()
        state = work / "search"
        state.mkdir()
        servers.append(
            start_search(port, state)
            if args.engine == "opensearch"
            else start_elasticsearch(port, state, state / "data")
        )
        urls = (f"http://127.0.0.1:{servers[0].port}", f"http://127.0.0.1:{port}")
        os.environ.update(ENV)
        ddb = make_dynamodb_client(DynamoSettings(endpoint=urls[0], region="us-east-1"))
        log(f"seeding {args.items} items")
        names = [t.name for t in seed(ddb, items=args.items, item_bytes=700)]
        tables = "".join(f'[[tables]]\nname = "{n}"\n\n' for n in names)
        (work / "ddb2es.toml").write_text(
            f"[defaults]\nversion_overlap_ms = {OVERLAP_MS}\n\n{tables}"
        )
        if not args.no_settle:
            log("waiting out the overlap so the seed's writes are older than it")
            # The replay keeps records from its start - 5 s, and a minute more on DynamoDB
            # Local, whose stream times are rounded down to the minute.
            time.sleep((OVERLAP_MS + 5_000 + 2 * 60_000) / 1000)
        exports = export_tables(ddb, names, work / "bucket")
        settings = Settings(tables=[TableSettings(name=n) for n in names])
        _counts, _invalid, count_rcu = type_counts(ddb, settings, list(settings.tables), 8)
        rows = []
        for variant, extra in (
            ("scan", []),
            ("export", [a for url in exports for a in ("--from-export", url)]),
        ):
            log(f"reload ({variant})")
            started = time.perf_counter()
            profile = args.profile if variant == "export" else None
            summary, cpu = run_cli(urls, work, ["reload", *names, *extra, "--yes"], profile)
            wall = time.perf_counter() - started
            load_rcu = sum(t["rcu"] for t in summary["reindex"]["tables"])
            rcu = load_rcu + (2 * count_rcu if variant == "scan" else 0)
            rows.append((variant, wall, cpu, rcu, summary["verified"], summary["replayed_records"]))
    finally:
        for server in servers:
            stop(server)
    print(f"\n{args.items} seeded items (~700 B) in {len(names)} tables, engine {args.engine}\n")
    print(
        "| reload | wall s | client CPU s | RCU (plan + load + verification) | verified |", end=""
    )
    print(" replayed |")
    print("|---|---|---|---|---|---|")
    for variant, wall, cpu, rcu, verified, replayed in rows:
        print(f"| {variant} | {wall:.1f} | {cpu:.2f} | {rcu:.0f} | {verified} | {replayed} |")


if __name__ == "__main__":
    main()
