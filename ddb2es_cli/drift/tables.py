"""The DynamoDB side of drift: a table's keys in both spellings and batched consistent reads."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ddb2es_cli.config import TableSettings
from ddb2es_cli.drift.options import CountMode, DriftOptions
from ddb2es_cli.drift.report import TableReport
from ddb2es_cli.source import Key, TableInfo, describe_table, key_for_request
from ddb2es_cli.transform import TableShape, invalid_index_reason, key_json

BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem


@dataclass
class DriftTable:
    """One table of the run: what the checks need to know about it."""

    settings: TableSettings
    info: TableInfo
    shape: TableShape
    report: TableReport
    sample_items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def default_index(self) -> str | None:
        name = (self.shape.index_prefix + self.shape.default_type).lower()
        return name if invalid_index_reason(name) is None else None

    def request_key(self, key_text: str) -> Key | None:
        """A document-form key (`{"pk":"a"}`) as DynamoDB wants it; None if not this table's."""
        try:
            key = json.loads(key_text, parse_float=Decimal, parse_int=Decimal)
        except ValueError:
            return None
        return self.request_key_of(key)

    def request_key_of(self, key: Any) -> Key | None:
        """The same for a key already parsed (numbers as Decimal)."""
        return self.info.request_key(key)

    def key_text(self, item: Mapping[str, Any]) -> str:
        return key_json(item, self.shape.key_names)

    def could_feed(self, index: str) -> bool:
        return index.startswith(self.shape.index_prefix.lower())


def open_table(ddb: Any, table: TableSettings, options: DriftOptions) -> DriftTable:
    """Describe the table (keys, item count) and start its report."""
    info = describe_table(ddb, table.name)
    counts: CountMode = "exact" if options.full else options.counts
    report = TableReport(info.name, info.hash_key, info.range_key, counts)
    return DriftTable(table, info, table.shape(info.hash_key, info.range_key), report)


def key_projection(shape: TableShape) -> tuple[str, dict[str, str]]:
    """A ProjectionExpression for the key and type attributes (names as placeholders)."""
    names: dict[str, str] = {}
    for attribute in (*shape.key_names, shape.type_attribute):
        if attribute not in names.values():
            names[f"#a{len(names)}"] = attribute
    return ", ".join(names), names


def batch_get(
    ddb: Any,
    table: DriftTable,
    keys: Sequence[Key],
    *,
    consistent: bool,
    projection: bool = False,
    phase: str,
) -> Iterator[tuple[str, dict[str, Any] | None, int]]:
    """(key JSON, item or None, read start ms) for every key; unprocessed keys are re-sent."""
    for start in range(0, len(keys), BATCH_GET_KEYS):
        pending = {table.key_text(k): k for k in keys[start : start + BATCH_GET_KEYS]}
        attempt = 0
        while pending:
            request: dict[str, Any] = {
                "Keys": [key_for_request(k) for k in pending.values()],
                "ConsistentRead": consistent,
            }
            if projection:
                expression, names = key_projection(table.shape)
                request["ProjectionExpression"] = expression
                request["ExpressionAttributeNames"] = names
            started_ms = int(time.time() * 1000)
            response = ddb.batch_get_item(
                RequestItems={table.name: request}, ReturnConsumedCapacity="TOTAL"
            )
            for used in response.get("ConsumedCapacity", []):
                table.report.add_rcu(phase, float(used.get("CapacityUnits", 0.0)))
            unprocessed = response.get("UnprocessedKeys", {}).get(table.name, {}).get("Keys", [])
            retry = {table.key_text(k): k for k in unprocessed}
            for item in response.get("Responses", {}).get(table.name, []):
                text = table.key_text(item)
                pending.pop(text, None)
                yield text, item, started_ms
            for text in [t for t in pending if t not in retry]:
                del pending[text]
                yield text, None, started_ms
            if pending:
                attempt += 1
                time.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))
