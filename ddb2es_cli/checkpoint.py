"""The reindex state file: per-segment checkpoints and index settings awaiting restore.

Written atomically (temp file + rename), so a kill -9 at any moment leaves the last good state.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddb2es_cli.errors import ConfigError

DEFAULT_STATE_DIR = Path(".ddb2es")


@dataclass
class SegmentState:
    done: bool = False
    key: dict[str, Any] | None = None  # LastEvaluatedKey of the last acknowledged page
    scanned: int = 0  # items of the segment up to `key`: where a resumed progress bar starts


@dataclass
class RunState:
    path: Path
    tables: dict[str, dict[int, SegmentState]] = field(default_factory=dict)
    total_segments: dict[str, int] = field(default_factory=dict)
    # index -> the settings to put back (values as they were before the bulk load)
    pending_restore: dict[str, dict[str, Any]] = field(default_factory=dict)
    _last_save: float = 0.0

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {path} cannot be read: {exc}") from None
        state = cls(path)
        for table, info in data.get("tables", {}).items():
            state.total_segments[table] = int(info["total_segments"])
            state.tables[table] = {
                int(seg): SegmentState(bool(s.get("done")), s.get("key"), int(s.get("scanned", 0)))
                for seg, s in info["segments"].items()
            }
        state.pending_restore = dict(data.get("pending_restore", {}))
        return state

    @classmethod
    def load_all(cls, state_dir: Path = DEFAULT_STATE_DIR) -> list[RunState]:
        """Every state file in the folder (`doctor` looks for settings left to restore)."""
        states = (cls.load(path) for path in sorted(state_dir.glob("*.json")))
        return [s for s in states if s is not None]

    def unfinished(self) -> bool:
        return any(not s.done for segs in self.tables.values() for s in segs.values())

    def start_table(self, table: str, total_segments: int) -> None:
        self.total_segments[table] = total_segments
        self.tables[table] = {i: SegmentState() for i in range(total_segments)}

    def checkpoint(
        self, table: str, segment: int, key: dict[str, Any] | None, scanned: int = 0
    ) -> None:
        self.tables[table][segment] = SegmentState(done=key is None, key=key, scanned=scanned)
        self.save(throttle=1.0)

    def save(self, throttle: float = 0.0) -> None:
        now = time.monotonic()
        if throttle and now - self._last_save < throttle:
            return
        self._last_save = now
        data = {
            "tables": {
                table: {
                    "total_segments": self.total_segments[table],
                    "segments": {
                        str(i): {"done": s.done, "key": s.key, "scanned": s.scanned}
                        for i, s in segs.items()
                    },
                }
                for table, segs in self.tables.items()
            },
            "pending_restore": self.pending_restore,
        }
        write_json_atomic(self.path, data)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Temp file + rename: a reader (or a kill -9) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
