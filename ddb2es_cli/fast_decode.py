"""Responses decoded by msgspec instead of botocore's shape walk.

botocore parses a DynamoDB response by walking its model for every attribute value, which costs
more than everything else ddb2es does with an item. Where ddb2es reads the DynamoDB JSON itself
(Scan pages, stream records), the response body is handed over as the decoder gives it: attribute
values stay DynamoDB JSON with binary as base64 text and stream times as epoch seconds, exactly
what a Lambda event carries. Errors (non-200) still go through botocore.

msgspec decodes a page of small items in about half the stdlib's time (a Scan page is thousands
of small objects; docs/benchmarks.md, issue 14) into the same values, integers of any size
included (orjson, as fast, turns integers past 64 bits into floats). What it refuses and the
stdlib accepts (an escaped lone surrogate, NaN, 1e400) goes to the stdlib, so nothing reads
differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode


def decode_json(body: bytes | str) -> Any:
    """`json.loads(body)`, at msgspec's speed where msgspec gives the same answer."""
    try:
        return _decode(body)
    except msgspec.MsgspecError:
        return json.loads(body)


def pass_json_through(client: Any, event: str, keys: Iterable[str]) -> None:
    """For `event` (`before-parse.<service>.<Operation>`), the response's `keys` as decoded."""
    wanted = tuple(keys)

    def before_parse(
        response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
    ) -> None:
        if response_dict.get("status_code") != 200:
            return
        data = decode_json(response_dict["body"])
        for name in wanted:
            if name in data:
                customized_response_dict[name] = data[name]
        response_dict["body"] = b"{}"

    client.meta.events.register(event, before_parse, unique_id=f"ddb2es-fast:{event}")


def install_fast_records(streams: Any) -> None:
    """GetRecords of the DynamoDB Streams client: records shaped as the Lambda receives them."""
    pass_json_through(
        streams, "before-parse.dynamodb-streams.GetRecords", ("Records", "NextShardIterator")
    )
