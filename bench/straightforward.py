"""The baseline for client CPU per item: a straightforward DynamoDB -> search copy, no ddb2es code
on the data path.

boto3's own response parsing, `boto3.dynamodb.types.TypeDeserializer`, a conversion to
JSON-serialisable values (Decimal -> int/float, binary -> base64, sets -> sorted lists) and the
engine's `helpers.bulk`, which serialises each document with the client's JSON serializer. The scan
reads the same segments as `ddb2es reindex`, one after the other on one thread (DynamoDB Local with
`-dbPath` is super-linear on a single large segment; the segments keep its cost per page low).

Only the clients are built with ddb2es (`make_dynamodb_client`, `make_search_client`), so both
sides use the same HTTP settings and the difference measured is the data path alone.

Run by bench/run.py in a process of its own (the parent reads its CPU time and peak RSS with
`os.wait4`); prints one JSON line: items, indexed, failed, seconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer

from ddb2es_cli.clients import helpers_for, make_dynamodb_client, make_search_client
from ddb2es_cli.config import DynamoSettings, SearchSettings

_DESERIALIZER = TypeDeserializer()


def to_jsonable(value: Any) -> Any:
    """What a typical hand-written converter does with boto3's Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode("ascii")  # type: ignore[attr-defined]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_jsonable(v) for v in value)
    return value


def plain_action(item: Mapping[str, Any], key_names: Sequence[str]) -> dict[str, Any]:
    """One boto3-shaped item as a bulk action: index from TYPE, `_id` from the key as JSON."""
    doc: dict[str, Any] = to_jsonable(_DESERIALIZER.deserialize({"M": item}))
    kind = doc.get("TYPE")
    index = (kind if isinstance(kind, str) else "default").lower()
    key = {name: doc[name] for name in key_names}
    doc_id = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return {"_index": index, "_id": doc_id, "_source": doc}


def key_names(ddb: Any, table: str) -> list[str]:
    schema = ddb.describe_table(TableName=table)["Table"]["KeySchema"]
    return [k["AttributeName"] for k in schema]


def actions(ddb: Any, tables: Sequence[str], segments: int) -> Iterator[dict[str, Any]]:
    paginator = ddb.get_paginator("scan")
    for table in tables:
        keys = key_names(ddb, table)
        for segment in range(segments):
            pages = paginator.paginate(TableName=table, Segment=segment, TotalSegments=segments)
            for page in pages:
                for item in page["Items"]:
                    yield plain_action(item, keys)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dynamodb-endpoint", required=True)
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--segments", type=int, required=True)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("tables", nargs="+")
    args = parser.parse_args(argv)

    ddb = make_dynamodb_client(DynamoSettings(endpoint=args.dynamodb_endpoint))
    es, _engine = make_search_client(SearchSettings(url=args.es_url))
    counted = 0

    def counting(source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        nonlocal counted
        for action in source:
            counted += 1
            yield action

    started = time.perf_counter()
    indexed, failed = helpers_for(es).bulk(
        es,
        counting(actions(ddb, args.tables, args.segments)),
        chunk_size=args.chunk_size,
        raise_on_error=False,
        stats_only=True,
    )
    seconds = time.perf_counter() - started
    result = {"items": counted, "indexed": indexed, "failed": failed, "seconds": seconds}
    print(json.dumps(result))
    return 0 if failed == 0 else 4


if __name__ == "__main__":
    sys.exit(main())
