"""Helpers of the scale-out tests: seeded tables, state tables, CLI lines, exact-index checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ddb2es_cli.transform import TableShape, to_document
from tests.conftest import Stack
from tests.faults import HoldDocument

TYPES = ("a", "b")


def seed(
    stack: Stack, name: str, n: int, key_prefix: str = "k"
) -> tuple[str, list[dict[str, Any]]]:
    table = stack.create_table(name)
    items = [
        {"pk": {"S": f"{key_prefix}{i:05d}"}, "TYPE": {"S": TYPES[i % 2]}, "v": {"N": str(i)}}
        for i in range(n)
    ]
    stack.put_items(table, items)
    return table, items


def doc_id(stack: Stack, item: dict[str, Any]) -> str:
    return to_document(item, TableShape("pk", index_prefix=stack.prefix)).id


def assert_exact(stack: Stack, items: list[dict[str, Any]]) -> None:
    """Every item is in the index exactly once: the counts add up and every id is there."""
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    by_index: dict[str, list[str]] = {}
    for item in items:
        doc = to_document(item, TableShape("pk", index_prefix=stack.prefix))
        by_index.setdefault(doc.index, []).append(doc.id)
    for index, ids in by_index.items():
        assert stack.es.count(index=index)["count"] == len(ids), index
        found = stack.es.mget(index=index, body={"ids": ids})
        body = getattr(found, "body", found)
        assert all(d.get("found") for d in body["docs"]), index


def state_table(stack: Stack, name: str = "state") -> str:
    """A state table of this test (the stack's prefix: cleaned up with the test)."""
    from ddb2es_cli.state.dynamo import DynamoState

    full = stack.table_name(name)
    DynamoState(stack.ddb, full).init()
    return full


def cli_line(stack: Stack, tmp_path: Path, *args: str) -> list[str]:
    config = str(stack.config_file(tmp_path, *[]))
    return [sys.executable, "-m", "ddb2es_cli", "--config", config, "--quiet", *args]


def run_cli(
    stack: Stack, tmp_path: Path, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**_base_env(), **stack.cli_env()}
    try:
        return subprocess.run(
            cli_line(stack, tmp_path, *args),
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"ddb2es {' '.join(args)} hung; stderr: {exc.stderr!r}") from None


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2ES_"))}


def json_of(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class HoldOne(HoldDocument):
    """HoldDocument whose `index` is the client's method again (the run lock writes with it)."""

    def __init__(self, client: Any, doc_id: str) -> None:
        super().__init__(client, doc_id)
        del self.index

    def _holds(self, action: dict[str, Any]) -> bool:
        return bool(next(iter(action.values()))["_id"] == self.doc_id)
