"""Where a stream run stands, per stream and shard: the last applied sequence number and
whether the shard was read to its end (`.ddb2es/stream-<hash>.json`), saved after each applied
batch so a restart never skips or re-applies past it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.config import TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError


class CheckpointTrimmed(Ddb2esError):
    """The checkpoint is older than the stream's retention: updates were lost (exit 1)."""


@dataclass
class Shard:
    arn: str
    table: str
    shard_id: str
    parent: str | None
    closed: bool
    iterator: str | None = None
    empty_polls: int = 0
    reached_start: bool = False  # a record written after the run started was read


@dataclass
class ShardCheckpoints:
    """Per stream and shard: the last applied sequence number, and whether the shard is done."""

    path: Path
    shards: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ShardCheckpoints:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"stream state file {path} cannot be read: {exc}") from None
        return cls(path, data.get("streams", {}))

    def get(self, arn: str, shard_id: str) -> dict[str, Any]:
        return self.shards.setdefault(arn, {}).setdefault(shard_id, {"seq": None, "done": False})

    def save(self) -> None:
        write_json_atomic(self.path, {"streams": self.shards})


def state_path_for(tables: list[TableSettings], state_dir: Path = DEFAULT_STATE_DIR) -> Path:
    names = ",".join(sorted(t.name for t in tables))
    return state_dir / f"stream-{hashlib.sha256(names.encode()).hexdigest()[:12]}.json"
