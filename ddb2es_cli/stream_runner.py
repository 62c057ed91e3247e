"""`ddb2es stream`: read tables' DynamoDB Streams and apply them with the Lambda handler's code.

Every shard is read (parents before children, as DynamoDB requires for order), its sequence
number checkpointed after each applied batch, expired iterators renewed from the checkpoint.
Records that keep failing are written to the failures file after a few attempts and passed over,
so one poison record cannot stop the sync; the run then ends with exit code 4.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.sink import Failure, FailureLog
from ddb2es_cli.source import describe_table, key_for_request
from ddb2es_cli.stream import StreamConfig, apply_batch

log = logging.getLogger("ddb2es.stream")


@dataclass
class StreamOptions:
    start: str = "trim-horizon"  # trim-horizon | latest | an ISO 8601 time
    until_caught_up: bool = False
    state_path: Path | None = None
    failures_path: Path | None = Path("ddb2es-stream-failures.ndjson")
    batch_size: int = 1000
    poll_interval: float = 1.0
    max_attempts: int = 5
    backoff: float = 0.5


@dataclass
class TableStreamStats:
    table: str
    stream_arn: str
    shards: int = 0
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    failed: int = 0


@dataclass
class StreamSummary:
    tables: dict[str, TableStreamStats]
    failures: int = 0
    failures_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": [vars(t) for t in self.tables.values()],
            "failures": self.failures,
            "failures_path": self.failures_path if self.failures else None,
        }


@dataclass
class _Shard:
    arn: str
    table: str
    shard_id: str
    parent: str | None
    closed: bool
    iterator: str | None = None
    empty_polls: int = 0


@dataclass
class _State:
    """Per stream and shard: the last applied sequence number, and whether the shard is done."""

    path: Path
    shards: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> _State:
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


def _start_time(start: str) -> datetime | None:
    if start in ("trim-horizon", "latest"):
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--from must be trim-horizon, latest or an ISO 8601 time, not {start!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Runner:
    def __init__(
        self,
        ddb: Any,
        streams: Any,
        es: Any,
        settings: Settings,
        tables: list[TableSettings],
        options: StreamOptions,
        stop: threading.Event,
    ) -> None:
        self.ddb, self.streams, self.es, self.options, self.stop = ddb, streams, es, options, stop
        self.since = _start_time(options.start)
        self.state = _State.load(options.state_path or state_path_for(tables))
        self.failures = FailureLog(options.failures_path)
        self.configs: dict[str, StreamConfig] = {}
        self.stats: dict[str, TableStreamStats] = {}
        self.arns: dict[str, str] = {}
        for table in tables:
            info = describe_table(ddb, table.name)
            if not info.stream_arn:
                raise ConfigError(
                    f"table {table.name!r} has no stream: enable DynamoDB Streams "
                    "(NEW_AND_OLD_IMAGES) first"
                )
            self.arns[table.name] = info.stream_arn
            self.stats[table.name] = TableStreamStats(table.name, info.stream_arn)
            self.configs[table.name] = StreamConfig(
                table.type_attribute,
                table.default_type,
                table.index_prefix,
                deployment=settings.deployment_name,
            )
        self.shards: dict[str, _Shard] = {}

    # -- shards --

    def refresh_shards(self) -> None:
        for table, arn in self.arns.items():
            start: str | None = None
            while True:
                kwargs: dict[str, Any] = {"StreamArn": arn}
                if start:
                    kwargs["ExclusiveStartShardId"] = start
                desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
                for shard in desc.get("Shards", []):
                    sid = shard["ShardId"]
                    if sid not in self.shards:
                        closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                        self.shards[sid] = _Shard(
                            arn, table, sid, shard.get("ParentShardId"), closed
                        )
                    elif "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                        self.shards[sid].closed = True
                start = desc.get("LastEvaluatedShardId")
                if not start:
                    break
            self.stats[table].shards = sum(1 for s in self.shards.values() if s.table == table)

    def ready(self, shard: _Shard) -> bool:
        """Children wait until their parent shard was read to its end."""
        if self.state.get(shard.arn, shard.shard_id)["done"]:
            return False
        parent = shard.parent
        return (
            parent is None
            or parent not in self.shards
            or bool(self.state.get(shard.arn, parent)["done"])
        )

    def iterator(self, shard: _Shard) -> str:
        seq = self.state.get(shard.arn, shard.shard_id)["seq"]
        kwargs: dict[str, Any] = {"StreamArn": shard.arn, "ShardId": shard.shard_id}
        if seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=seq)
        elif self.options.start == "latest" and shard.parent not in self.shards:
            kwargs["ShardIteratorType"] = "LATEST"
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return str(self.streams.get_shard_iterator(**kwargs)["ShardIterator"])

    # -- one poll --

    def poll(self, shard: _Shard) -> bool:
        """Read and apply one batch of the shard; True when records were read."""
        if shard.iterator is None:
            shard.iterator = self.iterator(shard)
        try:
            response = self.streams.get_records(
                ShardIterator=shard.iterator, Limit=self.options.batch_size
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in (
                "ExpiredIteratorException",
                "TrimmedDataAccessException",
            ):
                log.info(
                    "renewing the iterator of shard %s (%s)",
                    shard.shard_id,
                    exc.response["Error"]["Code"],
                )
                shard.iterator = None
                return True
            raise
        records = response.get("Records", [])
        shard.iterator = response.get("NextShardIterator")
        if records:
            self.apply(shard, records)
            shard.empty_polls = 0
        else:
            shard.empty_polls += 1
        if shard.iterator is None:  # a closed shard read to its end
            self.state.get(shard.arn, shard.shard_id)["done"] = True
            self.state.save()
        return bool(records)

    def apply(self, shard: _Shard, records: list[dict[str, Any]]) -> None:
        stats = self.stats[shard.table]
        wanted = [r for r in records if self._after_start(r)]
        stats.records += len(wanted)
        attempt = 0
        while wanted:
            result = apply_batch(
                self.es,
                wanted,
                self.configs[shard.table],
                fetch_item=lambda r: self._fetch(shard.table, r),
            )
            stats.indexed += result.indexed
            stats.deleted += result.deleted
            stats.conflicts += result.conflicts
            if result.first_failed is None:
                break
            attempt += 1
            if attempt >= self.options.max_attempts:
                for failed in result.failed:
                    self.failures.write(
                        Failure(
                            shard.table,
                            failed["keys"],
                            None,
                            None,
                            f"stream record {failed['sequence']}: {failed['reason']}",
                        )
                    )
                stats.failed += len(result.failed)
                break
            # Retry only the tail from the first record that did not apply.
            wanted = wanted[result.first_failed :]
            time.sleep(random.uniform(0, self.options.backoff * 2**attempt))
        self.state.get(shard.arn, shard.shard_id)["seq"] = records[-1]["dynamodb"]["SequenceNumber"]
        self.state.save()

    def _after_start(self, record: Mapping[str, Any]) -> bool:
        if self.since is None:
            return True
        created = record["dynamodb"]["ApproximateCreationDateTime"]
        if not isinstance(created, datetime):
            created = datetime.fromtimestamp(float(created), tz=timezone.utc)
        # DynamoDB Local rounds creation times down to the minute: keep a record whose rounded
        # time could still be at or after the start.
        return bool(created.timestamp() >= self.since.timestamp() - 60)

    def _fetch(self, table: str, record: Mapping[str, Any]) -> Any:
        key = key_for_request(record["dynamodb"]["Keys"])
        item = self.ddb.get_item(TableName=table, Key=key, ConsistentRead=True)
        return item.get("Item")

    # -- the loop --

    def caught_up(self) -> bool:
        """Every shard either read to its end or answering empty twice in a row."""
        for shard in self.shards.values():
            if self.state.get(shard.arn, shard.shard_id)["done"]:
                continue
            if shard.closed or shard.empty_polls < 2:
                return False
        return True

    def run(self) -> None:
        last_refresh = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_refresh > 10 or not self.shards:
                self.refresh_shards()
                last_refresh = time.monotonic()
            read = False
            for shard in list(self.shards.values()):
                if self.stop.is_set():
                    break
                if self.ready(shard):
                    read = self.poll(shard) or read
            if self.options.until_caught_up and self.caught_up():
                self.refresh_shards()  # a shard may have split meanwhile
                if self.caught_up():
                    return
            if not read:
                self.stop.wait(self.options.poll_interval)


def run_stream(
    ddb: Any,
    streams: Any,
    es: Any,
    settings: Settings,
    tables: list[TableSettings],
    options: StreamOptions,
    stop: threading.Event | None = None,
) -> StreamSummary:
    """Follow the tables' streams until `stop` is set (or, with until_caught_up, caught up)."""
    runner = _Runner(ddb, streams, es, settings, tables, options, stop or threading.Event())
    try:
        runner.run()
    finally:
        runner.state.save()
        runner.failures.close()
    return StreamSummary(
        runner.stats,
        runner.failures.count,
        str(options.failures_path) if options.failures_path else None,
    )
