"""The embedded local stack: DynamoDB Local and a search server, run as detached processes.

Nothing here is global: every function takes its directories and ports, and what `up` starts is
recorded in a state directory (`<name>.pid`, `.port`, `.log`, `state.json`) so that a later
`down` or `status`, from another process, can find it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ddb2es_cli.errors import LocalStackError
from ddb2es_cli.local_dynamodb import DYNAMODB_LOCAL_VERSION as DYNAMODB_LOCAL_VERSION
from ddb2es_cli.local_dynamodb import default_cache_dir as default_cache_dir
from ddb2es_cli.local_dynamodb import ensure_dynamodb_local as ensure_dynamodb_local
from ddb2es_cli.local_dynamodb import loopback_main
from ddb2es_cli.local_health import HEALTH, dynamodb_answers, root_answers_json

log = logging.getLogger("ddb2es.local")

_START_TIMEOUT = 60.0
_SERVERS = ("dynamodb", "search")


@dataclass(frozen=True)
class ServerProcess:
    """A server we started (or found running): enough to reach it, stop it and read its log."""

    name: str
    pid: int
    port: int
    url: str
    log_path: Path


@dataclass(frozen=True)
class LocalStack:
    """The endpoints of a running local stack, as the other commands take them."""

    dynamodb_endpoint: str
    es_url: str


def default_state_dir() -> Path:
    """Where pid, port and log files go: one per user, so `status` and `down` work from any
    directory (XDG_STATE_HOME, else ~/.local/state; DDB2ES_STATE_DIR overrides)."""
    explicit = os.environ.get("DDB2ES_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ddb2es" / "local"


def is_loopback_endpoint(url: str | None) -> bool:
    """True only for an http(s) URL whose host is a loopback address or `localhost`.

    No DNS lookup: a name that happens to resolve to 127.0.0.1 today is not trusted, and no
    endpoint at all means AWS itself.
    """
    if not url:
        return False
    try:
        host = urllib.parse.urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- starting and stopping one server ------------------------------------------------------------


def start_dynamodb(
    port: int,
    state_dir: Path,
    *,
    db_path: Path | None = None,
    cache_dir: Path | None = None,
) -> ServerProcess:
    """DynamoDB Local in memory, or on disk when db_path is given to keep data.

    Always `-sharedDb`: one database whatever the credentials and region, so the AWS CLI with
    any profile lists the same tables as ddb2es.
    """
    java = shutil.which("java")
    if java is None:
        raise LocalStackError(
            "java not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)"
        )
    emulator = ensure_dynamodb_local(cache_dir)
    # -Xmx512m: left alone the JVM grows to several GB on large scans, at no gain in speed.
    argv = [
        java,
        "-Xmx512m",
        f"-Djava.library.path={emulator / 'DynamoDBLocal_lib'}",
        *loopback_main(emulator, cache_dir or default_cache_dir()),
        "-port",
        str(port),
        "-disableTelemetry",
        "-sharedDb",
    ]
    if db_path is None:
        argv.append("-inMemory")
    else:
        argv += ["-dbPath", str(_make_dir(db_path))]
    # A JVM whose main thread died (bad -dbPath, say) stays up without serving: fail at once.
    return _spawn("dynamodb", argv, port, state_dir, dynamodb_answers, 'in thread "main"')


def start_search(port: int, state_dir: Path) -> ServerProcess:
    """osmem-server, the in-memory OpenSearch-compatible server shipped on PyPI."""
    try:
        import osmem_server
    except ImportError:
        raise LocalStackError(
            "osmem-server is not installed: pip install 'ddb2es[local]'"
        ) from None
    try:
        binary = osmem_server.resolve_binary()
    except osmem_server.OsmemError as exc:
        raise LocalStackError(str(exc)) from None
    argv = [binary, "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"]
    return _spawn("search", argv, port, state_dir, root_answers_json)


def stop(proc: ServerProcess, timeout: float = 10) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; a process already gone is fine."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(proc.pid):
                return
            time.sleep(0.05)
    raise LocalStackError(f"{proc.name} (pid {proc.pid}) did not stop after SIGKILL")


def _spawn(
    name: str,
    argv: Sequence[str],
    port: int,
    state_dir: Path,
    answers: Callable[[str], bool],
    fatal: str | None = None,
) -> ServerProcess:
    """Start detached (own session, output to a log) so the caller may exit and leave it running.

    Waits until `answers(url)`; fails early if the process exits or its log shows `fatal`.
    """
    _check_port_free(port)
    log_path = _make_dir(state_dir) / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            popen = subprocess.Popen(
                argv,
                cwd=state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise LocalStackError(f"could not start {name}: {exc}") from None
    server = ServerProcess(name, popen.pid, port, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        code = popen.poll()
        if code is not None:
            raise LocalStackError(
                f"{name} exited with code {code} while starting: {_log_tail(log_path)}"
            )
        if answers(server.url):
            return server
        failure = _log_line(log_path, fatal) if fatal else None
        if failure:
            _kill(popen)
            raise LocalStackError(f"{name} failed while starting: {failure}")
        time.sleep(0.2)
    _kill(popen)
    raise LocalStackError(
        f"{name} did not answer on port {port} within {_START_TIMEOUT:.0f} s; see {log_path}"
    )


def _kill(popen: subprocess.Popen[bytes]) -> None:
    """Kill a server that failed to start, and reap it."""
    popen.kill()
    popen.wait(timeout=10)


# --- the stack: up, down, status -----------------------------------------------------------------


def up(
    state_dir: Path | None = None,
    *,
    dynamodb_port: int = 8000,
    es_port: int = 9200,
    db_path: Path | None = None,
) -> LocalStack:
    """Start DynamoDB Local and the search server, or reuse those already running from state_dir.

    A server found running keeps its port even if another one is asked for.
    """
    state = state_dir or default_state_dir()
    running = {}
    for server in _recorded(state):
        if _is_running(server):
            running[server.name] = server
        elif _is_ours(server):
            stop(server)  # alive but not answering: replace it rather than orphan it
    wanted = {"dynamodb": dynamodb_port, "search": es_port}
    for name, port in wanted.items():
        if name not in running:
            _check_port_free(port)
    servers = dict(running)
    for name, port in wanted.items():
        if name not in servers:
            if name == "dynamodb":
                servers[name] = start_dynamodb(port, state, db_path=db_path)
            else:
                servers[name] = start_search(port, state)
            _record(state, servers[name])
    return LocalStack(dynamodb_endpoint=servers["dynamodb"].url, es_url=servers["search"].url)


def down(state_dir: Path | None = None) -> list[str]:
    """Stop what `up` started; return the names actually stopped. Nothing running is fine."""
    state = state_dir or default_state_dir()
    stopped = []
    for server in _recorded(state):
        if _is_ours(server):
            stop(server)
            stopped.append(server.name)
        _forget(state, server.name)
    return stopped


def status(state_dir: Path | None = None) -> dict[str, dict[str, object]]:
    """Per server: running (pid alive and port answers), pid, port, url, log (None if unknown)."""
    state = state_dir or default_state_dir()
    recorded = {s.name: s for s in _recorded(state)}
    report: dict[str, dict[str, object]] = {}
    for name in _SERVERS:
        server = recorded.get(name)
        report[name] = {
            "running": server is not None and _is_running(server),
            "pid": server.pid if server else None,
            "port": server.port if server else None,
            "url": server.url if server else None,
            "log": str(server.log_path) if server else None,
        }
    return report


def _make_dir(path: Path) -> Path:
    """Create a directory (and parents) and return it absolute, as servers get it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalStackError(f"cannot create directory {path}: {exc.strerror}") from None
    return path.resolve()


def _check_port_free(port: int) -> None:
    """Fail before starting anything, with advice, rather than with a server's bind error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers set it: sockets in TIME_WAIT do not count, listeners do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise LocalStackError(
                f"port {port} is already in use: choose another with "
                "--dynamodb-port/--es-port (make demo: DEMO_DYNAMODB_PORT=... DEMO_ES_PORT=...) "
                "or stop what holds it"
            ) from None


def _is_running(server: ServerProcess) -> bool:
    return _is_ours(server) and HEALTH[server.name](server.url)


def _is_ours(server: ServerProcess) -> bool:
    """Alive, and (where /proc tells) still the server we started, not a reused pid."""
    if not _pid_alive(server.pid):
        return False
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True
    return any(str(server.port).encode() in arg for arg in argv)


def _pid_alive(pid: int) -> bool:
    """True for a live process; exited ones (including zombies not yet reaped) are dead."""
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    if stat.rsplit(")", 1)[-1].split()[0] != "Z":
        return True
    # A zombie leader whose other threads are still exiting still holds its sockets.
    with contextlib.suppress(OSError):
        if len(os.listdir(f"/proc/{pid}/task")) > 1:
            return True
    _reap(pid)  # it may have exited since the first try
    return False


def _reap(pid: int) -> bool:
    """Reap the process if it is our own exited child (tests, or `up` in a long-lived process)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def _record(state: Path, server: ServerProcess) -> None:
    (state / f"{server.name}.pid").write_text(f"{server.pid}\n")
    (state / f"{server.name}.port").write_text(f"{server.port}\n")
    _write_summary(state)


def _forget(state: Path, name: str) -> None:
    for suffix in ("pid", "port"):
        (state / f"{name}.{suffix}").unlink(missing_ok=True)
    _write_summary(state)


def _recorded(state: Path) -> list[ServerProcess]:
    """The servers the pid/port files name (those files are the truth; state.json mirrors them)."""
    servers = []
    for name in _SERVERS:
        try:
            pid = int((state / f"{name}.pid").read_text())
            port = int((state / f"{name}.port").read_text())
        except (OSError, ValueError):
            continue
        servers.append(
            ServerProcess(name, pid, port, f"http://127.0.0.1:{port}", state / f"{name}.log")
        )
    return servers


def _write_summary(state: Path) -> None:
    """state.json: one file for people and scripts to read; rewritten on every change."""
    summary = {
        s.name: {"pid": s.pid, "port": s.port, "url": s.url, "log": str(s.log_path)}
        for s in _recorded(state)
    }
    if not summary:
        (state / "state.json").unlink(missing_ok=True)
        return
    (state / "state.json").write_text(json.dumps(summary, indent=2) + "\n")


def _log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log on one line, so the error stays one line for the operator."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(empty log)"


def _log_line(path: Path, marker: str) -> str | None:
    """The first log line containing marker, if any."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return next((line.strip() for line in text.splitlines() if marker in line), None)
