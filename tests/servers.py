"""Test-only helpers for the local servers: a free port, and noida-db as an Elasticsearch 8
stand-in (ddb2es itself only embeds osmem; noida serves the elasticsearch-py path in tests)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from ddb2es_cli import local
from ddb2es_cli.errors import LocalStackError
from ddb2es_cli.local_health import root_answers_json


def free_port() -> int:
    """A port the OS says is free right now (racy, but good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_elasticsearch(port: int, state_dir: Path, data_dir: Path) -> local.ServerProcess:
    """noida-db, an Elasticsearch 8 stand-in (for the elasticsearch-py path); data on disk."""
    try:
        import noida_db
    except ImportError:
        raise LocalStackError("noida-db is not installed: pip install 'ddb2es[local]'") from None
    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.is_file():
        raise LocalStackError(f"noida-db binary not found at {binary}")
    argv = [
        str(binary),
        "start",
        "--only",
        "elasticsearch",
        "--elasticsearch-port",
        str(port),
        "--data-dir",
        str(local._make_dir(data_dir)),
    ]
    return local._spawn("elasticsearch", argv, port, state_dir, root_answers_json)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (S3, SQS, DynamoDB control plane) on a free port; its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
