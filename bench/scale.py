"""Scale-out benchmark: one reindex run spread over 1 and 2 worker processes, side by side.

Run with `make bench-scale` (`.venv/bin/python bench/scale.py`). In one run, on the same seeded
tables (DynamoDB Local in memory), for each local engine (osmem, noida-db) with a fresh server per
variant:
  plain       `ddb2es reindex TABLES` (one process, file state: the reference)
  p1          `ddb2es reindex TABLES --processes 1 --state-table S` (supervisor + 1 worker)
  p2          the same with `--processes 2`
Wall time, items/s and client CPU per item (the CLI process and its workers, from
RUSAGE_CHILDREN). Then, in this process, one worker of a run counts the capacity units its
state-table calls consumed (ReturnConsumedCapacity on every state-table request), per unit.

The machine's 2 cores are shared by the servers and the workers: say so when reading p2.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddb2es_cli.clients import make_dynamodb_client, make_search_client
from ddb2es_cli.config import DynamoSettings, SearchSettings, Settings, TableSettings
from ddb2es_cli.local import ServerProcess, start_dynamodb, start_search, stop
from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.scale import create_run, work
from ddb2es_cli.seed import seed
from ddb2es_cli.state.dynamo import DynamoState

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import free_port, start_elasticsearch

ENV = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
STATE_TABLE = "ddb2es-bench-state"


def log(message: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figure:
    engine: str
    variant: str
    items: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.items / self.wall_s

    @property
    def cpu_us_per_item(self) -> float:
        return self.cpu_s / self.items * 1e6


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def search_server(engine: str, work_dir: Path) -> Iterator[str]:
    port = free_port()
    state = Path(tempfile.mkdtemp(dir=work_dir))
    server: ServerProcess
    if engine == "opensearch":
        server = start_search(port, state)
    else:
        server = start_elasticsearch(port, state, state / "data")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


def run_cli(dynamodb_url: str, es_url: str, work_dir: Path, args: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2ES_"))}
    env.update(ENV, DDB2ES_DYNAMODB_ENDPOINT=dynamodb_url, DDB2ES_ES_URL=es_url)
    line = [sys.executable, "-m", "ddb2es_cli", "--quiet", "--json", *args]
    done = subprocess.run(line, capture_output=True, text=True, env=env, cwd=work_dir)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(
    engine: str, variant: str, dynamodb_url: str, work_dir: Path, tables: list[str], items: int
) -> Figure:
    extra = {
        "plain": [],
        "p1": ["--processes", "1", "--state-table", STATE_TABLE],
        "p2": ["--processes", "2", "--state-table", STATE_TABLE],
    }[variant]
    with search_server(engine, work_dir) as es_url:
        cpu, started = children_cpu(), time.perf_counter()
        run_cli(dynamodb_url, es_url, work_dir, ["reindex", *tables, *extra])
        figure = Figure(engine, variant, items, time.perf_counter() - started, children_cpu() - cpu)
    log(
        f"{engine:13} {variant:5} {figure.rate:8.0f} items/s  "
        f"{figure.cpu_us_per_item:5.0f} us CPU/item"
    )
    return figure


class CapacityCounter:
    """Adds ReturnConsumedCapacity to every call of a client and sums what DynamoDB charged."""

    def __init__(self, client: Any) -> None:
        self.read = self.write = 0.0
        self.calls: dict[str, int] = {}
        client.meta.events.register("provide-client-params.dynamodb.*", self._ask)
        client.meta.events.register("after-call.dynamodb.*", self._count)

    def _ask(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "TOTAL"

    def _count(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[model.name] = self.calls.get(model.name, 0) + 1
        units = float(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
        if model.name in ("Query", "GetItem", "Scan", "BatchGetItem"):
            self.read += units
        else:
            self.write += units


def state_units(dynamodb_url: str, work_dir: Path, tables: list[str], segments: int) -> str:
    """One worker of a run in this process; the state table's capacity units per work unit."""
    os.environ.update(ENV)
    dynamo = DynamoSettings(endpoint=dynamodb_url, region="us-east-1")
    ddb = make_dynamodb_client(dynamo)
    state_client = make_dynamodb_client(dynamo)
    counter = CapacityCounter(state_client)
    with search_server("opensearch", work_dir) as es_url:
        search = SearchSettings(url=es_url)
        settings = Settings(dynamodb=dynamo, search=search)
        es, _ = make_search_client(search, "us-east-1")
        backend = DynamoState(state_client, STATE_TABLE)
        options = ReindexOptions(failures_path=work_dir / "failures.ndjson", segments=segments)
        run = create_run(backend, ddb, [TableSettings(t) for t in tables], options, segments)
        work(ddb, es, settings, backend, run.run_id, options)
    units = sum(run.units.values())
    calls = ", ".join(f"{name} {n / units:.1f}" for name, n in sorted(counter.calls.items()))
    return (
        f"{units} units: {counter.read / units:.2f} RCU and {counter.write / units:.2f} WCU "
        f"per unit (calls per unit: {calls})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--engines", default="opensearch,elasticsearch")
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="ddb2es-bench-scale-"))
    dynamodb = start_dynamodb(free_port(), work_dir)
    try:
        dynamodb_url = f"http://127.0.0.1:{dynamodb.port}"
        os.environ.update(ENV)
        ddb = make_dynamodb_client(DynamoSettings(endpoint=dynamodb_url, region="us-east-1"))
        log(f"seeding {args.items} items")
        tables = [t.name for t in seed(ddb, items=args.items, item_bytes=700)]
        DynamoState(ddb, STATE_TABLE).init()
        figures = [
            measure(engine, variant, dynamodb_url, work_dir, tables, args.items)
            for engine in args.engines.split(",")
            for variant in ("plain", "p1", "p2")
        ]
        units = state_units(dynamodb_url, work_dir, tables, args.segments)
    finally:
        stop(dynamodb)
    print(f"\n{args.items} rich items (~700 B) in {len(tables)} tables; {os.cpu_count()} cores\n")
    print("| engine | run | items/s | client CPU us/item | vs plain (time) |")
    print("|---|---|---|---|---|")
    plain = {f.engine: f for f in figures if f.variant == "plain"}
    for f in figures:
        ratio = plain[f.engine].wall_s / f.wall_s
        print(
            f"| {f.engine} | {f.variant} | {f.rate:.0f} | {f.cpu_us_per_item:.0f} | {ratio:.2f}x |"
        )
    print(f"\nstate table: {units}")


if __name__ == "__main__":
    main()
