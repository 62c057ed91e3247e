"""The reload's own state file: the plan's start time and index names, so `--resume`
continues the same generation and swaps only what the interrupted run planned.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.config import TableSettings
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.reindex import state_path_for
from ddb2es_cli.reload_plan import ReloadOptions


def reload_state_path(tables: list[TableSettings]) -> Path:
    """`.ddb2es/reload-<hash>.json`: the reindex state name of the same tables, renamed."""
    return state_path_for(tables, DEFAULT_STATE_DIR).with_name(
        state_path_for(tables).name.replace("reindex-", "reload-")
    )


def _saved(tables: list[TableSettings]) -> Any:
    """The reload's state file as written, or None when there is none (or it is unreadable)."""
    try:
        return json.loads(reload_state_path(tables).read_text())
    except (OSError, ValueError):
        return None


def saved_start(tables: list[TableSettings], options: ReloadOptions) -> datetime:
    saved = _saved(tables)
    if saved is None:
        path = reload_state_path(tables)
        raise ConfigError(f"nothing to resume: no interrupted reload in {path}")
    if saved.get("strategy") != options.strategy:
        raise ConfigError(
            f"--resume: the interrupted reload used --strategy {saved.get('strategy')}"
        )
    return datetime.fromisoformat(saved["started"])


def saved_indices(tables: list[TableSettings]) -> set[str] | None:
    saved = _saved(tables)
    if saved is None:
        return None
    names = saved.get("indices")
    return set(names) if isinstance(names, list) else None


def save_start(
    tables: list[TableSettings], options: ReloadOptions, moment: datetime, indices: list[str]
) -> None:
    """What --resume needs to continue the same generation: its time and its planned names."""
    write_json_atomic(
        reload_state_path(tables),
        {"strategy": options.strategy, "started": moment.isoformat(), "indices": indices},
    )


def save_verified(tables: list[TableSettings], verify: dict[str, dict[str, Any]]) -> None:
    """A load from exports got past its exact verification: `--resume` must not load again
    (the stream handler writes the generations from the markers on, so a count would differ)."""
    saved = _saved(tables)
    if saved is not None:
        write_json_atomic(reload_state_path(tables), {**saved, "verified": verify})


def saved_verified(tables: list[TableSettings]) -> dict[str, dict[str, Any]] | None:
    saved = _saved(tables)
    if saved is None:
        return None
    verify = saved.get("verified")
    return verify if isinstance(verify, dict) else None
