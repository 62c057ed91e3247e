"""Stream records read through the fast decode are shaped as the Lambda receives them."""

from __future__ import annotations

from decimal import Decimal

from ddb2es_cli.fast_decode import install_fast_records
from tests.conftest import Stack
from tests.test_reload import streams_client


def test_get_records_come_back_as_a_lambda_event_carries_them(stack: Stack) -> None:
    table = stack.create_table("fast", stream=True)
    stack.ddb.put_item(
        TableName=table, Item={"pk": {"S": "a"}, "b": {"B": b"\x00\xff"}, "n": {"N": "1.5"}}
    )
    streams = streams_client(stack)
    arn = stack.ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    install_fast_records(streams)
    install_fast_records(streams)  # idempotent
    response = streams.get_records(ShardIterator=iterator)
    (record,) = response["Records"]
    data = record["dynamodb"]
    assert data["NewImage"] == {"pk": {"S": "a"}, "b": {"B": "AP8="}, "n": {"N": "1.5"}}
    assert isinstance(data["ApproximateCreationDateTime"], int | float | Decimal)
    assert response["NextShardIterator"]
