"""`reload rollback`: move each alias back to the generation its last swap replaced, in one
atomic call, then bring that generation current (stream replay, else a reindex).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.ownership import (
    OWNED,
    current,
    last_swap,
    ownership,
    record_swap,
    require_owned,
    run_lock,
)
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.reload_flow import replay_streams
from ddb2es_cli.reload_plan import type_counts
from ddb2es_cli.source import describe_table


@dataclass
class Rollback:
    """One alias going back to the generation its last swap replaced."""

    alias: str
    from_index: str
    to_index: str
    swapped_at: str
    age_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "from": self.from_index,
            "to": self.to_index,
            "swapped_at": self.swapped_at,
            "age_s": round(self.age_s),
        }

    def line(self, done: bool) -> str:
        verb = "moved" if done else "would move"
        return (
            f"{verb} {self.alias}: {self.from_index} -> {self.to_index} (replaced by the swap "
            f"of {self.swapped_at}, {_age(self.age_s)} ago; it lacks every change since then "
            f"until brought current)"
        )


@dataclass
class RollbackResult:
    moves: list[Rollback]
    skipped: dict[str, str]
    dry_run: bool
    caught_up: str = ""  # how the old generations were brought current
    replayed: int = 0
    reindexed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "moves": [m.as_dict() for m in self.moves],
            "skipped": self.skipped,
            "caught_up": self.caught_up,
            "replayed_records": self.replayed,
            "reindexed_documents": self.reindexed,
        }

    def lines(self) -> list[str]:
        out = [m.line(not self.dry_run) for m in self.moves]
        out += [f"not moved {name}: {why}" for name, why in sorted(self.skipped.items())]
        if self.caught_up:
            out.append(self.caught_up)
        return out


def plan_rollback(
    es: Any, ddb: Any, settings: Settings, tables: list[TableSettings], segments: int
) -> RollbackResult:
    """For each alias of the tables: the generation its last swap replaced (recorded at swap
    time), only while the alias still points where that swap put it."""
    deployment = settings.deployment_name
    counts, _invalid, _rcu = type_counts(ddb, settings, tables, segments)
    now = datetime.now(timezone.utc)
    moves: list[Rollback] = []
    skipped: dict[str, str] = {}
    for name in sorted(counts):
        record = last_swap(es, deployment, name)
        kind, behind = current(es, name)
        if record is None or kind != "alias":
            continue
        replaced = [str(r) for r in record.get("replaced", [])]
        if behind != [record.get("new")]:
            skipped[name] = (
                f"points at {','.join(behind)}, not at {record.get('new')} where the last "
                "swap put it"
            )
        elif len(replaced) != 1:
            skipped[name] = (
                "the last swap replaced a concrete index (deleted): nothing to go back to"
            )
        elif not es.indices.exists(index=replaced[0]):
            skipped[name] = f"{replaced[0]} no longer exists"
        elif ownership(es, replaced[0], deployment).status != OWNED:
            skipped[name] = ownership(es, replaced[0], deployment).reason(deployment)
        else:
            at = datetime.fromisoformat(str(record["at"]))
            moves.append(
                Rollback(
                    name, behind[0], replaced[0], str(record["at"]), (now - at).total_seconds()
                )
            )
    return RollbackResult(moves, skipped, dry_run=True)


def rollback(
    es: Any,
    ddb: Any,
    streams: Any,
    settings: Settings,
    tables: list[TableSettings],
    segments: int,
    dry_run: bool = False,
    break_lock: bool = False,
) -> RollbackResult:
    """Point each alias back at the generation its last swap replaced, in one atomic call,
    then bring those generations current: a replay of the tables' streams from the swap (so
    deletes arrive too) when every table has one, else a reindex of the tables into them."""
    deployment = settings.deployment_name
    result = plan_rollback(es, ddb, settings, tables, segments)
    if not result.moves:
        raise Ddb2esError(
            "nothing to roll back: no alias of these tables has a recorded previous generation"
            + "".join(f"; {n}: {why}" for n, why in sorted(result.skipped.items()))
        )
    if dry_run:
        return result
    with run_lock(es, deployment, [t.name for t in tables], "reload rollback", force=break_lock):
        actions: list[dict[str, Any]] = []
        for move in result.moves:
            require_owned(es, [move.alias, move.to_index], deployment, f"rolling back {move.alias}")
            actions.append({"remove": {"index": move.from_index, "alias": move.alias}})
            actions.append(
                {"add": {"index": move.to_index, "alias": move.alias, "is_write_index": True}}
            )
        es.indices.update_aliases(body={"actions": actions})
        at = datetime.now(timezone.utc)
        for move in result.moves:
            record_swap(es, deployment, move.alias, [move.from_index], move.to_index, at)
        result.dry_run = False
        since = min(datetime.fromisoformat(m.swapped_at) for m in result.moves)
        with_streams = all(describe_table(ddb, t.name).stream_arn for t in tables)
        if with_streams and at - since < timedelta(hours=23):
            result.replayed = replay_streams(es, ddb, streams, settings, tables, since)
            result.caught_up = (
                f"brought current: replayed {result.replayed} stream records "
                f"since {since.isoformat()}"
            )
        else:
            summary = run_reindex(
                ddb, es, settings, tables, ReindexOptions(segments=segments, failures_path=None)
            )
            result.reindexed = sum(t.indexed for t in summary.tables.values())
            result.caught_up = (
                f"brought current by a reindex ({result.reindexed} documents); items deleted "
                "since the swap are still in it: run `ddb2es drift --repair`"
            )
    return result


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
