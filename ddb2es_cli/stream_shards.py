"""Reading DynamoDB Streams shards in the order DynamoDB requires (parents before children),
with iterators that resume after the checkpoint; a checkpoint older than the stream's 24 h
retention stops the run (CheckpointTrimmed) unless `--from trim-horizon` was asked for.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from ddb2es_cli.stream_checkpoints import CheckpointTrimmed, Shard, ShardCheckpoints
from ddb2es_cli.stream_options import StreamOptions, TableStreamStats

log = logging.getLogger("ddb2es.stream")


class ShardReading:
    """The shard half of a stream run: which shards the tables' streams have, which may be read
    now (parents before children), where a shard's iterator starts, what a lost checkpoint
    means, and when every shard is caught up. Mixed into the runner, which sets these:"""

    streams: Any
    arns: dict[str, str]
    shards: dict[str, Shard]
    state: ShardCheckpoints
    options: StreamOptions
    stats: dict[str, TableStreamStats]

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
                        self.shards[sid] = Shard(
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

    def ready(self, shard: Shard) -> bool:
        """Children wait until their parent shard was read to its end."""
        if self.state.get(shard.arn, shard.shard_id)["done"]:
            return False
        parent = shard.parent
        return (
            parent is None
            or parent not in self.shards
            or bool(self.state.get(shard.arn, parent)["done"])
        )

    def iterator(self, shard: Shard) -> str:
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
