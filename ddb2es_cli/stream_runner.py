"""`ddb2es stream`: read tables' DynamoDB Streams and apply them with the Lambda handler's code.

Every shard is read (parents before children, as DynamoDB requires for order), its sequence
number checkpointed after each applied batch, expired iterators renewed from the checkpoint.

Failures (docs/spec.md): a record the engine refused (mapping conflict, invalid index name) is
written to the failures file and passed over, so one poison record cannot stop the sync (the run
then ends with exit code 4). A record that was not applied for a reason a retry can fix (429,
502, 503, 504, lost connection, timeout) is retried with capped exponential backoff and jitter
until it applies or the run is interrupted; the checkpoint never passes it.

A checkpoint older than the stream keeps (24 h) means lost updates: the run stops and asks for a
reindex, unless `--from trim-horizon` was given explicitly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, write_json_atomic
from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.retry import Backoff
from ddb2es_cli.sink import Failure, FailureLog
from ddb2es_cli.source import THROTTLING_CODES, describe_table
from ddb2es_cli.stream import (
    RecordFailure,
    StreamConfig,
    apply_batch,
    newest_creation,
    view_refusal,
)

log = logging.getLogger("ddb2es.stream")


class CheckpointTrimmed(Ddb2esError):
    """The checkpoint is older than the stream's retention: updates were lost (exit 1)."""


# An open shard counts as caught up after this many empty pages in a row (unless a record written
# after the run started was read first). Real DynamoDB Streams answer empty pages in the middle
# of a shard, so two are not enough.
CAUGHT_UP_EMPTY_PAGES = 10


@dataclass
class StreamOptions:
    # trim-horizon | latest | an ISO 8601 time; None: trim-horizon by default, which (unlike an
    # explicit trim-horizon) refuses to go on from a trimmed checkpoint.
    start: str | None = None
    until_caught_up: bool = False
    state_path: Path | None = None
    failures_path: Path | None = Path("ddb2es-stream-failures.ndjson")
    batch_size: int = 1000
    poll_interval: float = 1.0
    caught_up_empty_pages: int = CAUGHT_UP_EMPTY_PAGES
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    # Told every status_interval seconds how far the run is (StreamStatus); the CLI prints it.
    status: Callable[[StreamStatus], None] | None = None
    status_interval: float = 10.0


@dataclass
class TableStreamStats:
    """The deployed handler's counters (stream_observe.py), summed over the run.

    `failed`: permanent failures (PermanentFailures); `retried`: records not applied on a try
    and tried again (RetryableFailures); `lag_seconds`: now minus the newest
    ApproximateCreationDateTime of the last page applied (ReplicationLag), None before one.
    """

    table: str
    stream_arn: str
    shards: int = 0
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    conflicts: int = 0
    failed: int = 0
    retried: int = 0
    lag_seconds: float | None = None


@dataclass(frozen=True)
class StreamStatus:
    """One status report of a following run: what was applied since the last one, and totals.

    `lag_seconds`: age of the newest record applied since the last report (None: idle).
    """

    applied: int
    records: int
    indexed: int
    deleted: int
    conflicts: int
    failed: int
    retried: int
    lag_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


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
    reached_start: bool = False  # a record written after the run started was read


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


def _start_time(start: str | None) -> datetime | None:
    if start is None or start in ("trim-horizon", "latest"):
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
        self.started = time.time()  # for --until-caught-up: records after this are "new"
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
            refusal = view_refusal(info.stream_view, table.name)
            if refusal is not None:
                raise ConfigError(refusal)
            self.arns[table.name] = info.stream_arn
            self.stats[table.name] = TableStreamStats(table.name, info.stream_arn)
            self.configs[table.name] = StreamConfig(
                table.type_attribute,
                table.default_type,
                table.index_prefix,
                deployment=settings.deployment_name,
            )
        self.shards: dict[str, _Shard] = {}
        self.applied = 0  # records applied since the last status call
        self.newest: float | None = None  # creation time of the newest of them
        self.last_status = time.monotonic()

    def report(self) -> None:
        """Call the status hook once per interval (follow mode shows it is alive and how far)."""
        if self.options.status is None:
            return
        if time.monotonic() - self.last_status < self.options.status_interval:
            return
        self.last_status = time.monotonic()
        self.options.status(self.status())
        self.applied, self.newest = 0, None

    def status(self) -> StreamStatus:
        stats = self.stats.values()
        lag = None if self.newest is None else round(max(0.0, time.time() - self.newest), 1)
        return StreamStatus(
            applied=self.applied,
            records=sum(t.records for t in stats),
            indexed=sum(t.indexed for t in stats),
            deleted=sum(t.deleted for t in stats),
            conflicts=sum(t.conflicts for t in stats),
            failed=sum(t.failed for t in stats),
            retried=sum(t.retried for t in stats),
            lag_seconds=lag,
        )

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
            for sid, saved in list(self.state.shards.get(arn, {}).items()):
                if sid not in self.shards and saved["seq"] and not saved["done"]:
                    # Shards leave DescribeStream 24 h after they close: the rest is gone.
                    self.checkpoint_lost(table, arn, sid, "no longer exists in the stream")

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
            try:
                return str(
                    self.streams.get_shard_iterator(
                        **kwargs, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=seq
                    )["ShardIterator"]
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TrimmedDataAccessException":
                    raise
                self.checkpoint_lost(shard.table, shard.arn, shard.shard_id, "was trimmed")
        if self.options.start == "latest" and shard.parent not in self.shards:
            kwargs["ShardIteratorType"] = "LATEST"
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return str(self.streams.get_shard_iterator(**kwargs)["ShardIterator"])

    def checkpoint_lost(self, table: str, arn: str, shard_id: str, why: str) -> None:
        """Records after the checkpoint are gone: stop, unless trim-horizon was asked for."""
        if self.options.start != "trim-horizon":
            raise CheckpointTrimmed(
                f"table {table!r}: the checkpoint of shard {shard_id} {why} (older than the "
                f"stream's 24 h), so updates were lost: run `ddb2es reindex {table}`, then "
                "`ddb2es stream --from trim-horizon` to go on"
            )
        log.warning(
            "table %s: the checkpoint of shard %s %s; going on from the oldest record "
            "(--from trim-horizon): updates in between were lost",
            table,
            shard_id,
            why,
        )
        self.state.shards.get(arn, {}).pop(shard_id, None)
        self.state.save()

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
        if records:
            if not self.apply(shard, records):
                return False  # interrupted: read this page again from the checkpoint
            shard.empty_polls = 0
            if any(_created(r) >= self.started for r in records):
                shard.reached_start = True
        else:
            shard.empty_polls += 1
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:  # a closed shard read to its end
            self.state.get(shard.arn, shard.shard_id)["done"] = True
            self.state.save()
        return bool(records)

    def apply(self, shard: _Shard, records: list[dict[str, Any]]) -> bool:
        """Apply one page; False when the run was stopped before all of it applied.

        Retryable failures are retried from the first record not applied, with capped
        exponential backoff and jitter, for as long as it takes; permanent ones are written to
        the failures file once the page is applied. Only then does the checkpoint move.
        """
        stats = self.stats[shard.table]
        page = [r for r in records if self._after_start(r)]
        wanted, count = page, len(page)
        permanent: dict[tuple[str, str | None], RecordFailure] = {}
        backoff = Backoff(self.options.initial_backoff, self.options.max_backoff, None)
        while wanted:
            result = apply_batch(self.es, wanted, self.configs[shard.table])
            if result.refused is not None:
                raise ConfigError(result.refused)
            stats.indexed += result.indexed
            stats.deleted += result.deleted
            stats.conflicts += result.conflicts
            stats.retried += result.retry_count
            for failure in result.failed:
                permanent[(failure.sequence, failure.index)] = failure
            if result.first_failed is None:
                break
            backoff.failed()
            delay = backoff.delay()
            tail = wanted[result.first_failed :]
            log.warning(
                "table %s, shard %s: %d records not applied (%s); retry %d in %.1f s",
                shard.table,
                shard.shard_id,
                len(tail),
                result.retryable[0].reason if result.retryable else "?",
                backoff.failures,
                delay,
            )
            # The tail is tried again: its permanent failures are counted on its last try.
            again = {_sequence(r) for r in tail}
            permanent = {k: f for k, f in permanent.items() if k[0] not in again}
            wanted = tail
            if self.stop.wait(delay):
                return False
        stats.records += count
        self.applied += count
        newest = newest_creation(page)
        if newest is not None:  # the lag this page shows, as the handler's ReplicationLag
            stats.lag_seconds = round(max(0.0, time.time() - newest), 1)
            self.newest = newest if self.newest is None else max(self.newest, newest)
        for failure in permanent.values():
            self.failures.write(
                Failure(
                    shard.table,
                    failure.keys,
                    failure.index,
                    None,
                    f"stream record {failure.sequence} ({failure.event}): {failure.reason}",
                )
            )
        stats.failed += len(permanent)
        self.state.get(shard.arn, shard.shard_id)["seq"] = records[-1]["dynamodb"]["SequenceNumber"]
        self.state.save()
        return True

    def _after_start(self, record: Mapping[str, Any]) -> bool:
        if self.since is None:
            return True
        # DynamoDB Local rounds creation times down to the minute: keep a record whose rounded
        # time could still be at or after the start.
        return _created(record) >= self.since.timestamp() - 60

    # -- the loop --

    def caught_up(self) -> bool:
        """Every shard read to its end, or (open shards) known to be at its newest record.

        An open shard is caught up once a record created at or after the run's start was read
        (creation times are rounded down, so such a record surely is newer than the start, and
        the shard is in order), or after `caught_up_empty_pages` empty pages in a row: real
        streams answer empty pages in the middle of a shard too.
        """
        for shard in self.shards.values():
            if self.state.get(shard.arn, shard.shard_id)["done"]:
                continue
            if shard.closed:
                return False
            if not shard.reached_start and shard.empty_polls < self.options.caught_up_empty_pages:
                return False
        return True

    def run(self) -> None:
        last_refresh = 0.0
        backoff = Backoff(self.options.initial_backoff, self.options.max_backoff, None)
        while not self.stop.is_set():
            try:
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
            except Exception as exc:
                if not is_transient_aws_error(exc):
                    raise
                # DynamoDB Streams away or overloaded: nothing was applied past the checkpoints,
                # so read again from them (iterators may not survive a restart) once it is back.
                backoff.failed()
                delay = backoff.delay()
                log.warning(
                    "DynamoDB Streams: %s; reading on from the checkpoints in %.1f s",
                    _first_line(exc),
                    delay,
                )
                for shard in self.shards.values():
                    shard.iterator = None
                self.stop.wait(delay)
                continue
            backoff.succeeded()
            self.report()
            if not read:
                self.stop.wait(self.options.poll_interval)


def _created(record: Mapping[str, Any]) -> float:
    """ApproximateCreationDateTime in epoch seconds (boto3 gives a datetime, Lambda a number)."""
    created = record["dynamodb"]["ApproximateCreationDateTime"]
    if isinstance(created, datetime):
        return created.timestamp()
    return float(created)


def _sequence(record: Mapping[str, Any]) -> str:
    return str(record.get("dynamodb", {}).get("SequenceNumber", ""))


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


# The scans' throttling codes, and what DynamoDB Streams answer besides when overloaded.
_TRANSIENT_AWS_CODES = THROTTLING_CODES | {"InternalFailure", "LimitExceededException"}


def is_transient_aws_error(exc: BaseException) -> bool:
    """DynamoDB or its stream unreachable, restarting or throttling: worth waiting out."""
    if isinstance(exc, BotoConnectionError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _TRANSIENT_AWS_CODES or int(status or 0) >= 500
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
