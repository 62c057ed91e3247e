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

This module is the run loop and the page application; the parts live in stream_options.py,
stream_checkpoints.py and stream_shards.py. Their public names are re-exported here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ddb2es_cli.config import Settings, TableSettings
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.fast_decode import install_fast_records
from ddb2es_cli.retry import Backoff
from ddb2es_cli.sink import Failure, FailureLog
from ddb2es_cli.source import THROTTLING_CODES, describe_table
from ddb2es_cli.stream_apply import apply_batch
from ddb2es_cli.stream_checkpoints import CheckpointTrimmed as CheckpointTrimmed
from ddb2es_cli.stream_checkpoints import Shard, ShardCheckpoints
from ddb2es_cli.stream_checkpoints import state_path_for as state_path_for
from ddb2es_cli.stream_options import CAUGHT_UP_EMPTY_PAGES as CAUGHT_UP_EMPTY_PAGES
from ddb2es_cli.stream_options import StreamOptions as StreamOptions
from ddb2es_cli.stream_options import StreamStatus as StreamStatus
from ddb2es_cli.stream_options import StreamSummary as StreamSummary
from ddb2es_cli.stream_options import TableStreamStats as TableStreamStats
from ddb2es_cli.stream_records import RecordFailure, StreamConfig, newest_creation, view_refusal
from ddb2es_cli.stream_shards import ShardReading

log = logging.getLogger("ddb2es.stream")


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


class _Runner(ShardReading):
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
        install_fast_records(streams)  # records as the Lambda gets them, a tenth of the CPU
        self.since = _start_time(options.start)
        self.started = time.time()  # for --until-caught-up: records after this are "new"
        self.state = ShardCheckpoints.load(options.state_path or state_path_for(tables))
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
        self.shards: dict[str, Shard] = {}
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

    def poll(self, shard: Shard) -> bool:
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

    def apply(self, shard: Shard, records: list[dict[str, Any]]) -> bool:
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
