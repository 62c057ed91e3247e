"""Index settings a bulk load changes and puts back, and the tombstone life (`gc_deletes`) that
bounds how late a snapshot write may arrive."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from ddb2es_cli.checkpoint import RunState
from ddb2es_cli.retry import Backoff, is_retryable_error

log = logging.getLogger("ddb2es.sink")

# A snapshot write must reach the engine while the tombstone of any newer delete still stands
# (`index.gc_deletes`, 60 s unless set): one that waited longer than half of it is re-read first.
DEFAULT_GC_DELETES_MS = 60_000


BULK_LOAD_SETTINGS = {"refresh_interval": "-1", "number_of_replicas": 0}
RESTORE_RETRY_FOR = 60.0  # seconds a busy or unreachable cluster is waited out when restoring


def current_load_settings(
    client: Any, index: str, names: Iterable[str] = tuple(BULK_LOAD_SETTINGS)
) -> dict[str, Any]:
    """The values a bulk load changes, as they are now (None: not set, the engine default)."""
    wanted = list(names)
    found = client.indices.get_settings(index=index, name=",".join(f"index.{n}" for n in wanted))
    first: dict[str, Any] = next(iter(found.values()), {})
    settings = first.get("settings", {}).get("index", {})
    return {name: settings.get(name) for name in wanted}


_TIME_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time_ms(value: str) -> int | None:
    """An engine time value (`60s`, `1h`, `500ms`) in milliseconds; None if not one."""
    text = value.strip().lower()
    for unit in ("ms", "s", "m", "h", "d"):
        number = text.removesuffix(unit)
        if number != text and number.replace(".", "", 1).isdigit():
            return int(float(number) * _TIME_UNITS_MS[unit])
    return None


def gc_deletes_ms(client: Any, index: str) -> int:
    """How long the engine keeps delete tombstones in `index` (its default when unknown)."""
    try:
        found = client.indices.get_settings(
            index=index, name="index.gc_deletes", include_defaults=True
        )
    except Exception as exc:
        log.debug("cannot read index.gc_deletes of %s: %s", index, exc)
        return DEFAULT_GC_DELETES_MS
    for info in found.values():
        for part in ("settings", "defaults"):
            value = info.get(part, {}).get("index", {}).get("gc_deletes")
            parsed = parse_time_ms(str(value)) if value is not None else None
            if parsed is not None:
                return parsed
    return DEFAULT_GC_DELETES_MS


def apply_index_settings(client: Any, index: str, values: dict[str, Any]) -> None:
    client.indices.put_settings(index=index, body={"index": values})


def restore_settings(
    es: Any, state: RunState, retry_for: float | None = RESTORE_RETRY_FOR
) -> list[str]:
    """Put back the index settings a bulk load changed; what fails stays pending for next time.

    A cluster that is busy or briefly unreachable (a node restart as the load ends) is waited
    out for `retry_for` seconds: an index left without refreshes and replicas is worse than a
    late exit."""
    restored = []
    backoff = Backoff(0.5, 10.0, retry_for)
    for index, values in list(state.pending_restore.items()):
        while True:
            try:
                if es.indices.exists(index=index):
                    apply_index_settings(es, index, values)
                    restored.append(index)
                state.pending_restore.pop(index)
                backoff.succeeded()
                break
            except Exception as exc:
                if is_retryable_error(exc):
                    backoff.failed()
                    if not backoff.exhausted:
                        log.warning("restoring settings of %s: %s; retrying", index, exc)
                        time.sleep(backoff.delay())
                        continue
                log.error("could not restore settings of %s: %s (will retry next run)", index, exc)
                break
    state.save()
    return restored
