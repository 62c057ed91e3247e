"""Blue/green generation names (`X-<UTC time>`, sortable, unique per millisecond) and the
`X-rebuilding` marker alias that tells the stream handler to copy writes to a generation.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.ownership_marks import is_system, response_body
from ddb2es_cli.retry import status_of

REBUILD_SUFFIX = "-rebuilding"  # alias X-rebuilding -> the generation of X being loaded
GENERATION_RE = re.compile(r"-(\d{8}t\d{9}z)\Z")  # -YYYYmmddtHHMMSSmmmz
GENERATION_LEN = len("-20260101t000000000z")
MAX_INDEX_BYTES = 255
MAX_TYPE_BYTES = MAX_INDEX_BYTES - GENERATION_LEN  # 235: room left for the generation suffix


def generation_suffix(moment: datetime) -> str:
    """Sortable, lower-case, unique per millisecond: `-20261126t031500123z`."""
    return "-" + moment.strftime("%Y%m%dt%H%M%S") + f"{moment.microsecond // 1000:03d}z"


def generation_time(index: str) -> datetime | None:
    found = GENERATION_RE.search(index)
    if not found:
        return None
    stamp = found.group(1)
    moment = datetime.strptime(stamp[:15], "%Y%m%dt%H%M%S").replace(tzinfo=timezone.utc)
    return moment.replace(microsecond=int(stamp[15:18]) * 1000)


def base_of(index: str) -> str | None:
    """X for a generation X-<suffix>, None for any other name."""
    return index[:-GENERATION_LEN] if GENERATION_RE.search(index) else None


def generations(es: Any, base: str) -> list[str]:
    """The open generations of X, oldest first."""
    found = response_body(es.indices.get(index=f"{base}-*", expand_wildcards="open"))
    return sorted(n for n in found if base_of(n) == base)


def check_generation_room(name: str) -> None:
    """A type must leave room for the generation suffix (index names are at most 255 bytes)."""
    if len(name.encode()) > MAX_TYPE_BYTES:
        raise ConfigError(
            f"index {name[:60]}... ({len(name.encode())} bytes): a blue/green generation needs "
            f"names of at most {MAX_TYPE_BYTES} bytes; shorten that TYPE or use --strategy delete"
        )


def rebuild_marker(base: str) -> str:
    return base + REBUILD_SUFFIX


def marked_generations(es: Any, prefix: str) -> dict[str, list[str]]:
    """X -> every index the marker X-rebuilding points at (normally one; more after a crash)."""
    try:
        found = response_body(es.indices.get_alias(name=f"{prefix}*{REBUILD_SUFFIX}"))
    except Exception as exc:  # 404: no rebuild runs
        if status_of(exc) != 404:
            raise
        found = {}
    targets: dict[str, list[str]] = {}
    for index, info in found.items():
        for alias in info.get("aliases", {}):
            if alias.endswith(REBUILD_SUFFIX) and not is_system(index):
                targets.setdefault(alias[: -len(REBUILD_SUFFIX)], []).append(index)
    return {k: sorted(v) for k, v in targets.items()}
