"""ddb2es benchmark: scan, bulk, end-to-end reindex, a naive copy and client CPU, in one run.

Run with `make bench` (`.venv/bin/python bench/run.py`), or `python bench/run.py --quick` to try
it out. The data (3 tables seeded by `ddb2es_cli.seed`, about 700-byte items with every attribute
type) is loaded once into DynamoDB Local kept on disk in bench/data/dynamodb; later runs find it
and skip the load. Every phase that writes gets a fresh osmem server (in memory, never frees any).
See docs/benchmarks.md for what each figure means and the targets.

Phases, all on the same data:
  W         raw bulk rate: documents transformed beforehand, then only sent with BulkWriter,
            with the index creation, settings and final refresh any load has (the note gives
            the sending alone)
  R fast    raw scan rate, same tasks, pages and fast decode as reindex; items read and dropped
  R plain   the same scan with botocore's own response parsing
  R 1MB     R fast with DynamoDB's 1 MB pages (what reindex's smaller pages cost)
  T         `python -m ddb2es_cli reindex` end to end in a child process (CPU, peak RSS)
  T small   the same on a small seeded set: peak RSS growth from small to full
  baseline  a straightforward client in a child process (bench/straightforward.py)
  naive     one scan thread, one index request per item, on the first items of one table
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import gc
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from small_items import load_small_table
from straightforward import key_names, plain_action

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ddb2es_cli
from ddb2es_cli.clients import make_dynamodb_client, make_search_client
from ddb2es_cli.config import DynamoSettings, SearchSettings, TableSettings
from ddb2es_cli.local import (
    ServerProcess,
    ensure_dynamodb_local,
    start_dynamodb,
    start_search,
    stop,
)
from ddb2es_cli.ownership_marks import create_owned_index
from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.seed import seed
from ddb2es_cli.sink import (
    BULK_LOAD_SETTINGS,
    Action,
    BulkOptions,
    BulkWriter,
    apply_index_settings,
    current_load_settings,
    index_action,
)
from ddb2es_cli.source import SegmentTask, describe_table, install_fast_decode, scan_pages
from ddb2es_cli.transform import DEFAULT_OVERLAP_MS, scan_version, to_document
from tests.servers import free_port, start_elasticsearch

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
DB_PATH = DATA_DIR / "dynamodb"
WORK_DIR = DATA_DIR / "work"
ITEM_BYTES = 700
FULL_ITEMS = 200_000
QUICK_ITEMS = 20_000
SMALL_ITEMS = 20_000  # memory: peak RSS of reindex on this many items vs the full set
NAIVE_SAMPLE = 5_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
P = ParamSpec("P")

# Targets (docs/benchmarks.md).
TARGET_T_VS_MIN_RW = 0.8
TARGET_CPU_RATIO = 1 / 3  # issue 14 (issue 3 asked for 0.5)
TARGET_MEMORY_GROWTH_MB = 40.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- what the phases share and produce -----------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """DynamoDB Local's URL, the two data sets (table names), scan segments, bulk chunk size."""

    dynamodb_url: str
    full: list[str]
    small: list[str]
    segments: int  # R's threads and the baseline's segments: reindex's default unless given
    chunk_size: int
    page_limit: int | None  # reindex's default: R reads the pages T reads
    t_segments: int | None = None  # --segments for T; None: each T's code uses its own default

    def scan_tasks(self) -> list[SegmentTask]:
        """The full set's tasks as `reindex` orders them (segment-major, tables interleaved)."""
        n = self.segments
        tasks = [SegmentTask(table, segment, n) for table in self.full for segment in range(n)]
        return sorted(tasks, key=lambda t: (t.segment, t.table))


@dataclass
class Phase:
    """One measurement. CPU is this process's, or the child's for phases run `in_child`."""

    name: str
    items: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float | None = None
    in_child: bool = False
    other_cores: float = 0.0  # CPU other processes used meanwhile (the machine may be shared)
    server_cores: float = 0.0  # CPU DynamoDB Local and the search server used meanwhile
    note: str = ""
    command: str = ""  # the child's command line
    runs: list[float] = field(default_factory=list)  # items/s of every attempt (best is kept)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_item(self) -> float:
        return self.cpu_seconds / self.items * 1e6 if self.items else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["items_per_s"] = round(self.rate, 1)
        data["cpu_us_per_item"] = round(self.cpu_us_per_item, 1)
        return data


@dataclass
class ChildRun:
    argv: list[str]
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    stdout: str


# Runs the measured command as its own child and reports that child's wait4 figures. Linux carries
# a parent's RSS high-water mark into a forked child's ru_maxrss, even across exec: started from
# this benchmark directly, every child would show at least the benchmark's own RSS.
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": time.perf_counter() - started, "status": status,
               "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], cwd: Path, pythonpath: str | None = None) -> ChildRun:
    """Run a process to its end: wall time, its own user+sys CPU and peak RSS (wait4).
    `pythonpath`: import ddb2es_cli from there (another commit's exported copy)."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path, usage_path = (cwd / f"child.{n}" for n in ("stdout", "stderr", "json"))
    with out_path.open("wb") as out, err_path.open("wb") as err:
        launcher = [sys.executable, "-c", _LAUNCHER, str(usage_path), *argv]
        env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
        done = subprocess.run(launcher, cwd=cwd, stdout=out, stderr=err, check=False, env=env)
    if not usage_path.is_file():
        raise RuntimeError(f"{argv[:3]}: no usage figures; {err_path.read_text()[-2000:]}")
    usage = json.loads(usage_path.read_text())
    stdout = out_path.read_text()
    if done.returncode not in (0, 4):  # 4: finished, some documents failed (in the note)
        raise RuntimeError(f"{shlex.join(argv[:4])}... exited {done.returncode}: "
                           f"{err_path.read_text()[-2000:]}")  # fmt: skip
    return ChildRun(
        argv=argv,
        returncode=done.returncode,
        seconds=usage["seconds"],
        cpu_seconds=usage["cpu"],
        peak_rss_mb=usage["maxrss_kb"] / 1024,  # KiB on Linux
        stdout=stdout,
    )


class OtherLoad:
    """CPU used by processes other than ours (this one, its child, our servers), in cores.

    Busy time of the whole machine (/proc/stat) minus our own: a shared machine slows every
    figure down, and this says how much it was shared during each phase.
    """

    def __init__(self, own_pids: Sequence[int]) -> None:
        self.own_pids = list(own_pids)
        self.start = self._sample()
        self.servers_start = self._servers()

    def _servers(self) -> float:
        return sum(_process_cpu(pid) for pid in self.own_pids)

    def server_cores(self) -> float:
        """Cores our servers used: with 2 cores, what they leave the client (and each other)."""
        wall = time.perf_counter() - self.start[0]
        return (self._servers() - self.servers_start) / wall if wall > 0 else 0.0

    def _sample(self) -> tuple[float, float, float]:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
        times = os.times()
        own = times.user + times.system + self._servers()
        return time.perf_counter(), busy, own

    def cores(self, child_cpu: float = 0.0) -> float:
        end = self._sample()
        wall, busy, own = (b - a for a, b in zip(self.start, end, strict=True))
        return max(0.0, (busy - own - child_cpu) / wall) if wall > 0 else 0.0


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def run_phase(
    own: Sequence[ServerProcess], measure: Callable[P, Phase], *args: P.args, **kwargs: P.kwargs
) -> Phase:
    """`measure(...)`, plus the CPU that other processes took from the machine meanwhile."""
    load = OtherLoad([server.pid for server in own])
    phase = measure(*args, **kwargs)
    phase.server_cores = load.server_cores()
    phase.other_cores = load.cores(phase.cpu_seconds if phase.in_child else 0.0)
    log(
        f"{phase.name}: {phase.items} items in {phase.seconds:.1f} s ({phase.rate:.0f}/s; "
        f"the servers used {phase.server_cores:.2f} cores, other processes "
        f"{phase.other_cores:.2f})"
    )
    return phase


def best_of(attempts: list[Phase]) -> Phase:
    """The fastest attempt: interference from other work on the machine only ever slows down."""
    best = max(attempts, key=lambda phase: phase.rate)
    best.runs = [round(phase.rate, 1) for phase in attempts]
    return best


@dataclass
class Runner:
    """Runs one measurement against DynamoDB Local; one that writes gets a new osmem."""

    setup: Setup
    ddb: ServerProcess
    engine: str = ""  # what the search server answers as
    engine_kind: str = "opensearch"  # osmem, or "elasticsearch": noida-db

    def in_process(
        self, measure: Callable[Concatenate[Setup, P], Phase], *args: P.args, **kwargs: P.kwargs
    ) -> Phase:
        return run_phase([self.ddb], measure, self.setup, *args, **kwargs)

    def with_osmem(
        self,
        measure: Callable[Concatenate[Setup, str, P], Phase],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Phase:
        with fresh_search_server(WORK_DIR / "search", self.engine_kind) as es:
            self.engine = str(make_search_client(SearchSettings(url=es.url))[1])
            return run_phase([self.ddb, es], measure, self.setup, es.url, *args, **kwargs)


# --- servers and data ----------------------------------------------------------------------------


@contextlib.contextmanager
def dynamodb_local(state_dir: Path) -> Iterator[ServerProcess]:
    server = start_dynamodb(free_port(), state_dir, db_path=DB_PATH)
    try:
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def fresh_search_server(state_dir: Path, kind: str = "opensearch") -> Iterator[ServerProcess]:
    """A new server for one phase: osmem keeps every document in memory and never frees any;
    noida-db (`kind` "elasticsearch") gets a new, empty data folder."""
    if kind == "elasticsearch":
        data = state_dir / "noida-data"
        shutil.rmtree(data, ignore_errors=True)
        server = start_elasticsearch(free_port(), state_dir, data)
    else:
        server = start_search(free_port(), state_dir)
    try:
        yield server
    finally:
        stop(server)
        if kind == "elasticsearch":
            shutil.rmtree(state_dir / "noida-data", ignore_errors=True)


class WithoutStreams:
    """The DynamoDB client as `seed()` sees it, except that the tables it creates get no stream.

    DynamoDB Local with -sharedDb slows writes to stream-enabled tables down as stream records pile
    up in its database file (seen here: 100-270 items/s on a new file, 16/s once about 30k stream
    records were in it, against 110-160/s for a table without a stream on that same file), which
    would make loading 200k items take hours. Only scans read the data here, and they never touch
    streams; the items are exactly those `seed()` writes.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_table(self, **kwargs: Any) -> Any:
        kwargs.pop("StreamSpecification", None)
        return self._client.create_table(**kwargs)


def ensure_dataset(endpoint: str, items: int, kind: str = "rich") -> list[str]:
    """The 3 seeded tables of `items` items (or the one small-item table with `kind` "small");
    loaded only when the marker or the counts differ."""
    ddb = make_dynamodb_client(DynamoSettings(endpoint=endpoint))
    if kind == "small":
        return ensure_small_table(ddb, items)
    prefix = f"bench-{items}-{ITEM_BYTES}b-"
    marker = DATA_DIR / f"seeded-{prefix.rstrip('-')}.json"
    if marker.is_file():
        expected: dict[str, int] = json.loads(marker.read_text())["tables"]
        try:
            found = {name: describe_table(ddb, name).item_count for name in expected}
        except Exception:  # a table is missing: the database folder was removed or replaced
            found = {}
        if found == expected:
            log(f"data set {prefix}*: {items} items already loaded ({marker.name})")
            return list(expected)
    marker.unlink(missing_ok=True)
    log(f"loading {items} items of about {ITEM_BYTES} bytes into {prefix}* (once; minutes)")
    started = time.perf_counter()
    tables = seed(WithoutStreams(ddb), items=items, prefix=prefix, item_bytes=ITEM_BYTES)
    log(f"loaded in {time.perf_counter() - started:.0f} s")
    counts = {t.name: t.items for t in tables}
    info = {"items": items, "item_bytes": ITEM_BYTES, "streams": False, "tables": counts}
    marker.write_text(json.dumps(info))
    return list(counts)


def ensure_small_table(ddb: Any, items: int) -> list[str]:
    """One table of `items` small items (bench/small_items.py), loaded once like the rich set."""
    name = f"bench-small-{items}"
    marker = DATA_DIR / f"seeded-{name}.json"
    if marker.is_file():
        try:
            if describe_table(ddb, name).item_count == items:
                log(f"data set {name}: {items} items already loaded ({marker.name})")
                return [name]
        except Exception:
            pass
    marker.unlink(missing_ok=True)
    log(f"loading {items} small items into {name} (once)")
    started = time.perf_counter()
    load_small_table(ddb, name, items)
    log(f"loaded in {time.perf_counter() - started:.0f} s")
    marker.write_text(json.dumps({"items": items, "kind": "small", "tables": {name: items}}))
    return [name]


# --- measurements --------------------------------------------------------------------------------


def prepare_actions(setup: Setup) -> list[Action]:
    """The full set as the bulk actions reindex would send (untimed; W sends them)."""
    ddb = make_dynamodb_client(DynamoSettings(endpoint=setup.dynamodb_url))
    install_fast_decode(ddb)
    shapes = {}
    for name in setup.full:
        info = describe_table(ddb, name)
        shapes[name] = TableSettings(name).shape(info.hash_key, info.range_key)
    actions: list[Action] = []
    for page in scan_pages(ddb, setup.scan_tasks(), workers=setup.segments):
        version = scan_version(page.started_ms, DEFAULT_OVERLAP_MS)
        shape = shapes[page.table]
        actions.extend(index_action(to_document(item, shape), version) for item in page.items)
    return actions


def measure_bulk(setup: Setup, es_url: str, actions: list[Action], owned: bool = False) -> Phase:
    """W: the cluster's side of a load of prepared documents, as reindex does it: create the
    indices with the load settings, send the documents with BulkWriter, put the settings back
    and refresh (documents become searchable only then; on noida-db that refresh is about a
    second per 100,000 documents). The note gives the sending alone. `owned`: indices created
    as reindex creates them (the ownership mark in the mapping) instead of plain ones."""
    es, _engine = make_search_client(SearchSettings(url=es_url))
    indices = sorted({action[0]["index"]["_index"] for action in actions})
    writer = BulkWriter(es, BulkOptions(chunk_size=setup.chunk_size))
    failed = 0
    cpu, started = time.process_time(), time.perf_counter()
    before: dict[str, dict[str, Any]] = {}
    for index in indices:
        if owned:
            create_owned_index(es, index, "bench")
        else:
            es.indices.create(index=index)
        before[index] = current_load_settings(es, index)
        apply_index_settings(es, index, BULK_LOAD_SETTINGS)
    sending = time.perf_counter()
    for result in writer.write((action, None) for action in actions):
        failed += not result.ok
    sending = time.perf_counter() - sending
    for index in indices:
        apply_index_settings(es, index, before[index])
    es.indices.refresh(index=",".join(indices))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    note = f"sending alone {sending:.1f} s ({len(actions) / sending:.0f}/s)"
    if failed:
        note += f", {failed} failed"
    return Phase("W bulk", len(actions), seconds, cpu, note=note)


def measure_scan(setup: Setup, *, fast: bool, whole_pages: bool = False) -> Phase:
    """R: the reindex scan of the full set (same tasks, threads, queue, page size); items
    counted, dropped. `whole_pages`: DynamoDB's 1 MB pages instead (what smaller pages cost)."""
    ddb = make_dynamodb_client(DynamoSettings(endpoint=setup.dynamodb_url))
    if fast:
        install_fast_decode(ddb)
    tasks = setup.scan_tasks()
    items = 0
    limit = None if whole_pages else setup.page_limit
    cpu, started = time.process_time(), time.perf_counter()
    for page in scan_pages(ddb, tasks, workers=setup.segments, page_limit=limit):
        items += len(page.items)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    name = "R scan, fast decode" if fast else "R scan, boto3 parsing"
    return Phase("R scan, 1 MB pages" if whole_pages else name, items, seconds, cpu)


def measure_reindex(
    setup: Setup,
    es_url: str,
    *,
    small: bool,
    extra_args: Sequence[str] = (),
    code: str | None = None,
) -> Phase:
    """T: the real CLI in a child process, timed from spawn to exit; `extra_args` go on the
    reindex command line (bench/page_size.py sets --page-size); `code`: a folder holding
    another version's ddb2es_cli (`--before`)."""
    tables = setup.small if small else setup.full
    workdir = WORK_DIR / ("T-small" if small else "T")
    argv = [
        sys.executable, "-m", "ddb2es_cli", "--dynamodb-endpoint", setup.dynamodb_url,
        "--es-url", es_url, "--quiet", "--json", "reindex", *tables,
        *(["--segments", str(setup.t_segments)] if setup.t_segments else []),
        "--chunk-size", str(setup.chunk_size), "--failures", str(workdir / "failures.ndjson"),
        "--state-file", str(workdir / "state.json"), *extra_args,
    ]  # fmt: skip
    child = run_child(argv, workdir, code)
    summary = json.loads(child.stdout)
    scanned = sum(t["scanned"] for t in summary["tables"])
    indexed = sum(t["indexed"] for t in summary["tables"])
    es, _engine = make_search_client(SearchSettings(url=es_url))
    counted = int(es.count(index="*")["count"])
    return Phase(
        ("T reindex, small set" if small else "T reindex") + (" (before)" if code else ""),
        scanned,
        child.seconds,
        child.cpu_seconds,
        child.peak_rss_mb,
        in_child=True,
        note=f"indexed {indexed}, count {counted}, failures {summary['failures']}",
        command=(f"PYTHONPATH={code} " if code else "") + shlex.join(argv),
    )


def measure_straightforward(setup: Setup, es_url: str) -> Phase:
    """The CPU baseline: bench/straightforward.py on the full set, in a process of its own."""
    argv = [
        sys.executable, str(BENCH_DIR / "straightforward.py"),
        "--dynamodb-endpoint", setup.dynamodb_url, "--es-url", es_url,
        "--segments", str(setup.segments), "--chunk-size", str(setup.chunk_size), *setup.full,
    ]  # fmt: skip
    child = run_child(argv, WORK_DIR / "baseline")
    result = json.loads(child.stdout)
    return Phase(
        "baseline client",
        int(result["items"]),
        child.seconds,
        child.cpu_seconds,
        child.peak_rss_mb,
        in_child=True,
        note=f"indexed {result['indexed']}, failed {result['failed']}",
        command=shlex.join(argv),
    )


def measure_naive(setup: Setup, es_url: str, sample: int) -> Phase:
    """One scan thread (boto3 paginator), one `index` request per item, on the first items.

    It reads segment 0 of the same segmentation as the others: a Scan of a whole 67k-item table
    in one segment runs DynamoDB Local (-dbPath, -Xmx512m) out of heap.
    """
    table = setup.full[0]
    ddb = make_dynamodb_client(DynamoSettings(endpoint=setup.dynamodb_url))
    es, _engine = make_search_client(SearchSettings(url=es_url))
    keys = key_names(ddb, table)
    items = 0
    cpu, started = time.process_time(), time.perf_counter()
    pages = ddb.get_paginator("scan").paginate(
        TableName=table, Segment=0, TotalSegments=setup.segments
    )
    for page in pages:
        for item in page["Items"][: sample - items]:
            action = plain_action(item, keys)
            es.index(index=action["_index"], id=action["_id"], body=action["_source"])
            items += 1
        if items >= sample:
            break
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Phase("naive", items, seconds, cpu, note=f"first {sample} items of {table}, segment 0")


# --- machine and summary -------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def first(path: str, prefix: str) -> str:
        found = (line for line in Path(path).read_text().splitlines() if line.startswith(prefix))
        return next(found, ":unknown").split(":", 1)[1].strip()

    jar = ensure_dynamodb_local() / "DynamoDBLocal.jar"
    with zipfile.ZipFile(jar) as archive:
        pom = archive.read("META-INF/maven/com/amazonaws/DynamoDBLocal/pom.properties").decode()
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return {
        "cores": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "memory": first("/proc/meminfo", "MemTotal"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "boto3": version("boto3"),
        "botocore": version("botocore"),
        "opensearch-py": version("opensearch-py"),
        "osmem-server": version("osmem-server"),
        "ddb2es": version("ddb2es"),
        "ddb2es_commit": git_state(),
        "dynamodb_local": first_value(pom, "version="),
        "java": (java.stderr.splitlines() or ["unknown"])[0],
    }


def git_state() -> str:
    """The commit measured, and whether the working tree had changes (the package is shared)."""
    git = ["git", "-C", str(BENCH_DIR.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run([*git, "status", "--porcelain", "--", "ddb2es_cli"],
                             capture_output=True, text=True)  # fmt: skip
    dirty = f" + uncommitted changes in {len(changed.stdout.splitlines())} files"
    return head.stdout.strip() + (dirty if changed.stdout.strip() else "")


def package_digest() -> str:
    """A digest of the package's sources: shows whether they changed while the benchmark ran."""
    digest = hashlib.sha256()
    for path in sorted((BENCH_DIR.parent / "ddb2es_cli").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def first_value(text: str, prefix: str) -> str:
    return next((line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)), "")


def summarize(p: dict[str, Phase]) -> dict[str, Any]:
    """The ratios, and whether the targets were met."""
    r, w, t = p["R fast"], p["W"], p["T"]
    t_vs_min_rw = t.rate / min(r.rate, w.rate)
    cpu_ratio = t.cpu_us_per_item / p["baseline"].cpu_us_per_item
    growth = (t.peak_rss_mb or 0.0) - (p["T small"].peak_rss_mb or 0.0)
    return {
        "T_over_min_R_W": round(t_vs_min_rw, 3),
        "T_over_naive": round(t.rate / p["naive"].rate, 2) if "naive" in p else None,
        "fast_decode_speedup_R": (round(r.rate / p["R plain"].rate, 2) if "R plain" in p else None),
        "cpu_ratio_T_over_baseline": round(cpu_ratio, 3),
        "cpu_ratio_T_before_over_baseline": (
            round(p["T before"].cpu_us_per_item / p["baseline"].cpu_us_per_item, 3)
            if "T before" in p
            else None
        ),
        "memory_growth_mb": round(growth, 1),
        "targets": {
            "T >= 0.8 x min(R, W)": t_vs_min_rw >= TARGET_T_VS_MIN_RW,
            "T CPU/item <= 1/3 x baseline": cpu_ratio <= TARGET_CPU_RATIO,
            f"peak RSS growth {p['T small'].items} -> {t.items} items <= 40 MB": (
                growth <= TARGET_MEMORY_GROWTH_MB
            ),
        },
    }


def print_report(phases: dict[str, Phase], summary: dict[str, Any]) -> None:
    header = (
        f"{'phase':<24}{'items':>8}{'seconds':>9}{'items/s':>9}{'CPU us/item':>13}"
        f"{'peak RSS MB':>13}{'servers':>8}{'others':>8}  note"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for phase in phases.values():
        rss = f"{phase.peak_rss_mb:.0f}" if phase.peak_rss_mb is not None else "-"
        tries = (
            f"attempts {', '.join(f'{r:.0f}' for r in phase.runs)}/s" if len(phase.runs) > 1 else ""
        )
        note = "; ".join(text for text in (phase.note, tries) if text)
        print(
            f"{phase.name:<24}{phase.items:>8}{phase.seconds:>9.1f}{phase.rate:>9.0f}"
            f"{phase.cpu_us_per_item:>13.0f}{rss:>13}{phase.server_cores:>8.2f}"
            f"{phase.other_cores:>8.2f}  {note}"
        )
    print(
        "(servers: cores DynamoDB Local and the search server used during the phase; others:\n"
        " cores that other processes on the machine used)\n"
    )
    for key, value in summary.items():
        if key != "targets":
            print(f"{key:<28}{value}")
    for target, met in summary["targets"].items():
        print(f"target {target:<48}{'met' if met else 'NOT met'}")


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ddb2es benchmark (see docs/benchmarks.md)")
    parser.add_argument("--items", type=int, default=FULL_ITEMS, help="items in the full set")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_ITEMS} items; small set and sample scaled"
    )
    parser.add_argument(
        "--segments", type=int, default=None,
        help="scan segments for R, T and the baseline (default: reindex's own default; T and "
        "T before then run with their code's own default)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="attempts of each rate measurement; the fastest counts (for a busy machine)",
    )  # fmt: skip
    parser.add_argument(
        "--core", action="store_true",
        help="only W, R fast, T, T small and the baseline (skips naive, R plain, R 1 MB pages)",
    )  # fmt: skip
    parser.add_argument(
        "--kind", choices=("rich", "small"), default="rich",
        help="rich: the 3 seed tables (about 70 values per item); small: 12 flat attributes",
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=("opensearch", "elasticsearch"), default="opensearch",
        help="opensearch: osmem-server; elasticsearch: noida-db (Elasticsearch 8 stand-in)",
    )  # fmt: skip
    parser.add_argument(
        "--before", default=None, metavar="DIR",
        help="also run T with the ddb2es_cli found in DIR (e.g. `git archive` of an older "
        "commit), alternated with T: before and after in one run, against one baseline",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=None,
        help="results JSON (default: bench/results/latest.json; quick.json with --quick)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.items = QUICK_ITEMS
    args.small_items = min(SMALL_ITEMS, args.items // 10)
    args.naive_sample = min(NAIVE_SAMPLE, args.items // 10)
    if args.output is None:
        stem = "quick" if args.quick else "latest"
        suffix = "".join(
            f"-{v}" for v, d in ((args.kind, "rich"), (args.engine, "opensearch")) if v != d
        )
        args.output = BENCH_DIR / "results" / f"{stem}{suffix}.json"
    return args


def bulk_and_reindex(
    runner: Runner, repeat: int, before: str | None = None
) -> tuple[Phase, Phase, Phase | None]:
    """W, T (and T of the `before` code), attempts alternated so that all meet the same load
    from other work."""
    log("W: transforming the full set in memory (untimed; also warms DynamoDB Local up)")
    actions = prepare_actions(runner.setup)
    w, t, tb = [], [], []
    for _ in range(repeat):
        w.append(runner.with_osmem(measure_bulk, actions))
        if before:
            tb.append(runner.with_osmem(measure_reindex, small=False, code=before))
        t.append(runner.with_osmem(measure_reindex, small=False))
    return best_of(w), best_of(t), (best_of(tb) if tb else None)


def run_all(
    runner: Runner, repeat: int, naive_sample: int, core: bool = False, before: str | None = None
) -> dict[str, Phase]:
    """Every phase; rates are the best of `repeat` attempts; memory and baseline run once.
    `core`: only W, R fast, T, T small and the baseline (the figures the targets need)."""
    w, t, t_before = bulk_and_reindex(runner, repeat, before)
    gc.collect()
    if core:
        phases = {
            "W": w,
            "R fast": best_of([runner.in_process(measure_scan, fast=True) for _ in range(repeat)]),
            "T": t,
            "T small": runner.with_osmem(measure_reindex, small=True),
            "baseline": runner.with_osmem(measure_straightforward),
        }
        if t_before is not None:
            phases["T before"] = t_before
        return phases
    return {
        "W": w,
        "R fast": best_of([runner.in_process(measure_scan, fast=True) for _ in range(repeat)]),
        "R plain": best_of([runner.in_process(measure_scan, fast=False) for _ in range(repeat)]),
        "R 1MB pages": best_of(
            [runner.in_process(measure_scan, fast=True, whole_pages=True) for _ in range(repeat)]
        ),
        "T": t,
        "T small": runner.with_osmem(measure_reindex, small=True),
        "baseline": runner.with_osmem(measure_straightforward),
        "naive": best_of([runner.with_osmem(measure_naive, naive_sample) for _ in range(repeat)]),
    }


def compile_packages(before: str | None) -> None:
    """Bytecode for the ddb2es_cli every T runs, as an installed tool has it (pip and the Docker
    image compile at install). With PYTHONDONTWRITEBYTECODE set, as on these machines, a
    checkout would otherwise compile each of its modules again in every run, about 0.2 s of
    CPU, while the baseline's libraries come compiled."""
    folders = [Path(ddb2es_cli.__file__).parent]
    if before:
        folders.append(Path(before) / "ddb2es_cli")
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    compile_packages(args.before)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    started, sources = time.strftime("%Y-%m-%dT%H:%M:%S%z"), package_digest()
    with dynamodb_local(WORK_DIR / "dynamodb") as ddb:
        setup = Setup(
            dynamodb_url=ddb.url,
            full=ensure_dataset(ddb.url, args.items, args.kind),
            small=ensure_dataset(ddb.url, args.small_items, args.kind),
            segments=args.segments or ReindexOptions().segments,
            t_segments=args.segments,
            chunk_size=BulkOptions().chunk_size,  # reindex's default, for W, T and the baseline
            page_limit=ReindexOptions().page_limit,
        )
        runner = Runner(setup, ddb, engine_kind=args.engine)
        phases = run_all(runner, args.repeat, args.naive_sample, args.core, args.before)
    summary = summarize(phases)
    if package_digest() != sources:
        log("warning: ddb2es_cli changed while the benchmark ran; figures may mix versions")
    commands = {"bench": shlex.join([sys.executable, *sys.argv])}
    commands.update({key: phase.command for key, phase in phases.items() if phase.command})
    config = {key: value for key, value in asdict(setup).items() if key != "dynamodb_url"}
    config.update(items=args.items, small_items=args.small_items, item_bytes=ITEM_BYTES)
    config.update(naive_sample=args.naive_sample, repeat=args.repeat)
    config.update(kind=args.kind, engine=args.engine, core=args.core, before=args.before)
    results = {
        "started": started,
        "machine": {**machine_info(), "osmem_answers_as": runner.engine},
        "package_sources": {"at_start": sources, "at_end": package_digest()},
        "config": config,
        "commands": commands,
        "phases": {key: phase.as_dict() for key, phase in phases.items()},
        "summary": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_report(phases, summary)
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
