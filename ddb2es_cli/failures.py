"""The failures file: one NDJSON line per document the engine refused or the transform could
not make, with its key in exact JSON (numbers digit for digit) and the reason. Mode 0600: it holds
customer keys and engine text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from ddb2es_cli.checkpoint import open_private
from ddb2es_cli.transform import SHA_ID_PREFIX


@dataclass(frozen=True)
class Failure:
    table: str
    key: Any
    index: str | None
    id: str | None
    reason: str


class KeyJson(str):
    """A key already in its exact JSON form (a document id): written as JSON, not as a string."""


def key_of_id(doc_id: str) -> Any:
    """The key of a document id in the form every failures-file line carries: the id's JSON, or
    the `sha256:` id itself (its key is in the document's `_ddb2es_key`)."""
    if doc_id.startswith(SHA_ID_PREFIX):
        return doc_id
    return KeyJson(doc_id)


def exact_json(value: Any) -> str:
    """JSON text with Decimal numbers written as numbers, digit for digit."""
    if isinstance(value, KeyJson):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{exact_json(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(exact_json(v) for v in value) + "]"
    return json.dumps(value, default=str, ensure_ascii=False)


def failure_line(failure: Failure) -> str:
    """One NDJSON line; the key keeps its exact numbers (no float on the way)."""
    data = asdict(failure)
    key_text = exact_json(data.pop("key"))
    rest = json.dumps(data, default=str, ensure_ascii=False)
    return '{"key": ' + key_text + ", " + rest[1:]


class FailureLog:
    """NDJSON failures file, opened on the first failure only (no empty files on clean runs)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self.examples: list[Failure] = []
        self._handle: IO[str] | None = None

    def write(self, failure: Failure) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(failure)
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open_private(self.path, "a")  # keys and engine text: 0600
        self._handle.write(failure_line(failure) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
