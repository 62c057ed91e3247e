"""The reindex state file: per-segment checkpoints and index settings awaiting restore.

Written atomically (a unique temp file, fsync, rename), so a kill -9 at any moment leaves the
last good state and two writers never share a temp file. State, checkpoint, failures and report
files hold customer keys and engine error text (which can quote field values): they are created
0600, in a 0700 `.ddb2es`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ddb2es_cli.errors import ConfigError

DEFAULT_STATE_DIR = Path(".ddb2es")
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


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
            raise damaged(path, exc) from None
        state = cls(path)
        try:
            for table, info in data.get("tables", {}).items():
                state.total_segments[table] = int(info["total_segments"])
                state.tables[table] = {
                    int(seg): SegmentState(
                        bool(s.get("done")), s.get("key"), int(s.get("scanned", 0))
                    )
                    for seg, s in info["segments"].items()
                }
            state.pending_restore = dict(data.get("pending_restore", {}))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise damaged(path, exc) from None
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


def damaged(path: Path, exc: BaseException) -> ConfigError:
    """One line naming the file and what to do (never a traceback)."""
    what = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else "not a ddb2es state file"
    if isinstance(exc, OSError):
        what = f"unreadable ({exc.strerror or type(exc).__name__})"
    return ConfigError(
        f"state file {path} is {what}: move it away or delete it "
        "(the run then starts from the beginning), or restore a good copy"
    )


def private_dir(path: Path) -> None:
    """Create `path` 0700; a `.ddb2es` made by an older version is tightened too."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if path.name == DEFAULT_STATE_DIR.name:
        with contextlib.suppress(OSError):  # not ours: leave it as it is
            os.chmod(path, PRIVATE_DIR)


def open_private(path: Path, mode: str = "a") -> IO[str]:
    """Open a text file that is (or becomes) 0600, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, encoding="utf-8")


def write_private_text(path: Path, text: str) -> None:
    with open_private(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: Path, data: Any) -> None:
    """A unique temp file (0600), fsync, rename: a reader (or a kill -9) never sees half a file,
    and two writers never write into the same temp file."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
