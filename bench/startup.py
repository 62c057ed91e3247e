"""Start-up cost of the command line (issue 14): `--help`, and the time to the first request.

Every case runs as a fresh process, once per round, the cases interleaved so that the load of a
shared machine falls on all of them alike; medians over the rounds. Next to ddb2es, the floor:
the interpreter alone and the interpreter importing click.

"first request": `ddb2es reindex TABLE` with the DynamoDB endpoint and the search URL both
pointing at a tiny local listener. It notes when the first request arrives and the child's CPU
at that moment (from /proc, in clock ticks: the child is blocked waiting for the answer). It
answers `GET /` as OpenSearch would, so the run builds both clients, and any other request with
a 500, so the run stops there with its usual error: the child's CPU at exit (from wait4) is
its whole start-up, both clients included.

    .venv/bin/python bench/startup.py [--rounds 15]
    git archive 38f23db ddb2es_cli | tar -x -C /tmp/old
    .venv/bin/python bench/startup.py --before /tmp/old   # that commit too, in the same rounds
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
ROOT = json.dumps({"version": {"number": "2.19.0", "distribution": "opensearch"}}).encode()
ERROR = b'{"error": "bench/startup.py answers 500"}'


@dataclass
class FirstRequest:
    """What the listener saw of the current child: when its first request came, and its CPU."""

    pid: int = 0
    at: float | None = None
    cpu: float | None = None
    what: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, pid: int) -> None:
        with self.lock:
            self.pid, self.at, self.cpu, self.what = pid, None, None, ""

    def note(self, what: str) -> None:
        now = time.monotonic()
        with self.lock:
            if self.at is None:
                self.at, self.what = now, what
                self.cpu = _cpu_of(self.pid)


def _cpu_of(pid: int) -> float | None:
    """utime + stime of a running process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _listener(seen: FirstRequest) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            target = self.headers.get("X-Amz-Target")
            seen.note(f"{self.command} {target or self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            # `GET /` says OpenSearch, so the run goes on to build both clients (its whole
            # start-up); its next request gets a 500 and the run stops with its error.
            status, body = (200, ROOT) if self.path == "/" else (500, ERROR)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Sample:
    wall: float  # spawn -> exit, or spawn -> first request
    cpu_exit: float  # user + system CPU of the child, at its exit
    cpu_first: float | None = None  # ... when its first request arrived
    code: int = 0


def run_once(argv: list[str], env: dict[str, str], cwd: str, seen: FirstRequest | None) -> Sample:
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        if seen is not None:
            seen.reset(child.pid)
        _, status, usage = os.wait4(child.pid, 0)
        end = time.monotonic()
        child.returncode = os.waitstatus_to_exitcode(status)
        cpu = usage.ru_utime + usage.ru_stime
        if seen is None:
            return Sample(end - start, cpu, code=child.returncode)
        if seen.at is None:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise SystemExit(f"{argv}: no request reached the listener; stderr: {tail}")
        return Sample(seen.at - start, cpu, seen.cpu, child.returncode)


def cases(python: str, url: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (argv, extra environment)."""
    # The console script a user runs; `python -m ddb2es_cli` when there is none (it also loads
    # runpy). Under PYTHONPATH the script imports the copy there (it comes before the install).
    script = Path(python).parent / "ddb2es"
    module = [str(script)] if script.exists() else [python, "-m", "ddb2es_cli"]
    first_env = {
        "DDB2ES_DYNAMODB_ENDPOINT": url,
        "DDB2ES_ES_URL": url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_REGION": "us-east-1",
    }
    return {
        "python -c pass": ([python, "-c", "pass"], {}),
        "python -c 'import click'": ([python, "-c", "import click"], {}),
        "ddb2es --help": ([*module, "--help"], {}),
        "ddb2es reindex --help": ([*module, "reindex", "--help"], {}),
        "ddb2es reindex TABLE (first request)": (
            [*module, "--quiet", "reindex", "bench-startup-table"],
            first_env,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--before",
        type=Path,
        help="A directory holding an older ddb2es_cli (git archive COMMIT ddb2es_cli | tar -x "
        "-C DIR): its commands run in the same rounds, on PYTHONPATH, as `before`.",
    )
    parser.add_argument("--json", dest="json_path", type=Path, help="Also write the medians here.")
    args = parser.parse_args()

    seen = FirstRequest()
    server = _listener(seen)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    # Bytecode cached, as in any installed copy (pip compiles a wheel's modules): without it
    # (PYTHONDONTWRITEBYTECODE, an editable install) every start compiles each module imported
    # from source again. The first round, not counted, writes the cache.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "DDB2ES_"))
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")
    }
    versions = {"": env}  # label -> environment
    if args.before is not None:
        versions = {"before": {**env, "PYTHONPATH": str(args.before.resolve())}, "after": env}
    # No AWS files or instance metadata: the credential chain stops at the environment.
    with tempfile.TemporaryDirectory() as cwd:  # no ./ddb2es.toml
        for version_env in versions.values():
            version_env.update(
                AWS_CONFIG_FILE=f"{cwd}/no-aws-config",
                AWS_SHARED_CREDENTIALS_FILE=f"{cwd}/no-aws-credentials",
                AWS_EC2_METADATA_DISABLED="true",
            )
        todo: list[tuple[str, list[str], dict[str, str]]] = []
        for name, (argv, extra) in cases(sys.executable, url).items():
            if not name.startswith("ddb2es"):
                todo.append((name, argv, {**env, **extra}))  # the floor: once
                continue
            for label, version_env in versions.items():
                todo.append((f"{name} {label}".strip(), argv, {**version_env, **extra}))
        samples: dict[str, list[Sample]] = {}
        firsts: set[str] = set()
        for round_ in range(args.rounds + 1):
            for name, argv, case_env in todo:
                listening = seen if "first request" in name else None
                sample = run_once(argv, case_env, cwd, listening)
                if round_ == 0:
                    continue  # warm-up: bytecode cache, page cache
                samples.setdefault(name, []).append(sample)
                if listening is not None:
                    firsts.add(seen.what)
        origins = {
            label or "ddb2es_cli": subprocess.run(
                [sys.executable, "-c", "import ddb2es_cli; print(ddb2es_cli.__file__)"],
                env=version_env,
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for label, version_env in versions.items()
        }
    server.shutdown()
    _print(args.rounds, samples, firsts, origins, args.json_path)


def _median(values: list[float | None], scale: Callable[[float], str]) -> str:
    present = [v for v in values if v is not None]
    return scale(statistics.median(present)) if present else "-"


def _print(
    rounds: int,
    samples: dict[str, list[Sample]],
    firsts: set[str],
    origins: dict[str, str],
    json_path: Path | None,
) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    where = "; ".join(f"{label}: {path}" for label, path in origins.items())
    print(f"{where}; medians of {rounds} rounds, times in ms")
    print("| case | wall (to exit, or to first request) | CPU at first request | CPU at exit |")
    print("|---|---|---|---|")
    medians: dict[str, dict[str, float | None]] = {}
    for name, runs in samples.items():
        wall = _median([s.wall for s in runs], ms)
        first = _median([s.cpu_first for s in runs], ms)
        cpu = _median([s.cpu_exit for s in runs], ms)
        print(f"| {name} | {wall} | {first} | {cpu} |")
        cpu_first = [s.cpu_first for s in runs if s.cpu_first is not None]
        medians[name] = {
            "wall": statistics.median(s.wall for s in runs),
            "cpu_exit": statistics.median(s.cpu_exit for s in runs),
            "cpu_first": statistics.median(cpu_first) if cpu_first else None,
        }
    print(
        f"first request seen: {', '.join(sorted(firsts))}; CPU at first request in "
        f"{1000 // TICK} ms ticks (/proc), CPU at exit from wait4"
    )
    if json_path is not None:
        json_path.write_text(json.dumps({"origins": origins, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
