"""Sample data for the local stack: three tables whose items use every DynamoDB attribute type.

The data is built to index the same way on every engine. DynamoDB numbers carry no
integer/decimal distinction, but a search engine's dynamic mapping does: the local OpenSearch
stand-in (osmem) rejects a field that is an integer in one document and a decimal in another, or
an array mixing the two, as a mapping conflict, where real Elasticsearch would coerce. So each
numeric field here is always an integer or always a decimal (decimals never end in .0), no list or
NS mixes the two, and no list mixes strings with numbers (both stand-ins reject that). Field names
are never reused with another type across tables, because items without TYPE from all three
tables share the `default` index.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb2es_cli.errors import LocalStackError

Item = dict[str, Any]  # an item in the low-level client's wire format: {"name": {"S": "x"}}

_BATCH_SIZE = 25  # BatchWriteItem's limit
_WRITERS = 4  # one writer leaves DynamoDB Local idle between requests; a few keep it busy
_MAX_ATTEMPTS = 10
_MAX_ITEM_BYTES = 350_000  # stays clear of DynamoDB's 400 KB item limit after our estimate
_WAIT = {"Delay": 1, "MaxAttempts": 120}
_NO_TYPE_EVERY = 100  # one item in a hundred has no TYPE, so it lands in the `default` index

_VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu order ship "
    "parcel invoice refund device sensor alert customer lead"
)
_WORDS = tuple(_VOCABULARY.split())
_CITIES = ("Lisbon", "Berlin", "Austin", "Osaka", "Nairobi", "Lima", "Oslo", "Zürich")


@dataclass(frozen=True)
class SeedTable:
    """One table the seed created: its name, key schema and how many items went in."""

    name: str
    hash_key: str
    range_key: str | None
    items: int


@dataclass(frozen=True)
class _Shape:
    suffix: str
    hash_key: tuple[str, str]  # (name, attribute type)
    range_key: tuple[str, str] | None
    make: Callable[[random.Random, int], Item]


_SUFFIXES = ("orders", "events", "customers")


def table_names(prefix: str) -> list[str]:
    """The tables `seed` drops and recreates, so a caller can ask before it does."""
    return [f"{prefix}{suffix}" for suffix in _SUFFIXES]


def existing_tables(dynamodb_client: Any, prefix: str) -> list[str]:
    """Those of the sample tables that exist already (and would be dropped)."""
    found = []
    try:
        for name in table_names(prefix):
            try:
                dynamodb_client.describe_table(TableName=name)
            except dynamodb_client.exceptions.ResourceNotFoundException:
                continue
            found.append(name)
    except (BotoCoreError, ClientError) as exc:
        raise LocalStackError(f"cannot list the sample tables: {exc}") from None
    return found


def seed(
    dynamodb_client: Any,
    *,
    items: int = 10_000,
    prefix: str = "ddb2es-demo-",
    seed: int = 0,
    item_bytes: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[SeedTable]:
    """Drop and recreate the three sample tables, then load `items` items split between them.

    Deterministic for a given `seed`; `item_bytes` pads a text field so items are about that size.
    `progress(n)` is told of every n items written (the CLI draws a bar from it).
    """
    if items < 0:
        raise LocalStackError(f"items must be 0 or more, not {items}")
    if item_bytes > _MAX_ITEM_BYTES:
        raise LocalStackError(f"item_bytes {item_bytes} is over the {_MAX_ITEM_BYTES} allowed")
    shapes = (
        _Shape("orders", ("pk", "S"), None, _order),
        _Shape("events", ("device", "S"), ("ts", "N"), _event),
        _Shape("customers", ("id", "N"), None, _customer),
    )
    counts = [
        items // len(shapes) + (1 if n < items % len(shapes) else 0) for n in range(len(shapes))
    ]
    tables = [
        SeedTable(
            f"{prefix}{shape.suffix}",
            shape.hash_key[0],
            shape.range_key[0] if shape.range_key else None,
            count,
        )
        for shape, count in zip(shapes, counts, strict=True)
    ]
    try:
        for shape, table in zip(shapes, tables, strict=True):
            _recreate(dynamodb_client, shape, table.name)
        requests = (
            request
            for shape, table in zip(shapes, tables, strict=True)
            for request in _batches(table.name, _items(shape, table.items, seed, item_bytes))
        )
        _write_all(dynamodb_client, requests, progress or (lambda _n: None))
    except (BotoCoreError, ClientError) as exc:
        raise LocalStackError(f"seeding failed: {exc}") from None
    return tables


# --- tables and writes ---------------------------------------------------------------------------


def _recreate(client: Any, shape: _Shape, name: str) -> None:
    """Delete the table if present, then create it with streams on, which `stream` reads."""
    try:
        client.delete_table(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        pass
    else:
        client.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig=_WAIT)
    keys = [(shape.hash_key, "HASH")] + ([(shape.range_key, "RANGE")] if shape.range_key else [])
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": role} for (key, _), role in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": t} for (key, t), _ in keys],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig=_WAIT)


def _batches(table: str, items: Iterator[Item]) -> Iterator[dict[str, list[Item]]]:
    """BatchWriteItem request bodies of up to 25 puts."""
    batch: list[Item] = []
    for item in items:
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == _BATCH_SIZE:
            yield {table: batch}
            batch = []
    if batch:
        yield {table: batch}


def _write_all(
    client: Any, requests: Iterator[dict[str, list[Item]]], progress: Callable[[int], None]
) -> None:
    """Send batches from a few threads, keeping only a few in flight so memory stays flat.

    Items are generated on this thread, so the data does not depend on thread timing.
    """
    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="seed") as pool:
        pending: set[Future[int]] = set()
        for request in requests:
            if len(pending) >= 2 * _WRITERS:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    progress(future.result())
            pending.add(pool.submit(_write_batch, client, request))
        for future in pending:
            progress(future.result())


def _write_batch(client: Any, request: dict[str, list[Item]]) -> int:
    """One BatchWriteItem, resending only the UnprocessedItems with exponential backoff.

    Returns how many items it wrote."""
    unprocessed: dict[str, list[Item]] = request
    for attempt in range(_MAX_ATTEMPTS):
        unprocessed = client.batch_write_item(RequestItems=unprocessed).get("UnprocessedItems")
        if not unprocessed:
            return sum(len(puts) for puts in request.values())
        time.sleep(min(2.0, 0.05 * 2**attempt))
    left = sum(len(puts) for puts in unprocessed.values())
    raise LocalStackError(f"{left} items still unprocessed after {_MAX_ATTEMPTS} attempts")


# --- items ---------------------------------------------------------------------------------------


def _items(shape: _Shape, count: int, seed: int, item_bytes: int) -> Iterator[Item]:
    """A table's items, from its own generator so its data does not depend on the other tables'."""
    rng = random.Random(f"{seed}:{shape.suffix}")
    for i in range(count):
        item = shape.make(rng, i)
        if i % _NO_TYPE_EVERY == _NO_TYPE_EVERY - 1:
            del item["TYPE"]
        if item_bytes:
            _pad(item, item_bytes, rng)
        yield item


def _order(rng: random.Random, i: int) -> Item:
    kind = rng.choices(("order", "invoice", "refund"), weights=(6, 3, 1))[0]
    quantity = rng.randint(1, 9)
    return {
        "pk": {"S": f"{kind[:3].upper()}-{i:08d}"},
        "TYPE": {"S": kind},
        "customer_id": {"N": str(rng.randint(1, 5_000))},
        "quantity": {"N": str(-quantity if kind == "refund" else quantity)},  # negative integers
        "unit_price": {"N": _decimal(rng, 1, 300)},  # like "19.99"
        "discount_rate": {"N": rng.choice(("0.1", "0.25", "0.05", "0.5"))},
        "balance_delta": {"N": "-" + _decimal(rng, 0, 50)},  # negative decimals
        "ledger_total": {"N": _decimal_38(rng)},  # 38 significant digits, DynamoDB's maximum
        "paid": {"BOOL": rng.random() < 0.7},
        "coupon": {"NULL": True} if rng.random() < 0.5 else {"S": rng.choice(("SAVE10", "VIP"))},
        "receipt": {"B": rng.randbytes(16)},
        "attachments": {"BS": [bytes([n]) + rng.randbytes(5) for n in range(rng.randint(1, 2))]},
        "skus": {"SS": [f"SKU-{n:04d}" for n in rng.sample(range(10_000), rng.randint(1, 4))]},
        "line_quantities": {"NS": [str(n) for n in rng.sample(range(1, 50), rng.randint(1, 4))]},
        "shipping": {
            "M": {
                "method": {"S": rng.choice(("ground", "air", "pickup"))},
                "weight_kg": {"N": _decimal(rng, 0, 30)},
                "address": {
                    "M": {
                        "city": {"S": rng.choice(_CITIES)},
                        "zip": {"S": f"{rng.randint(1_000, 99_999):05d}"},
                        "geo": {
                            "M": {
                                "lat": {"N": _decimal(rng, -89, 89, places=4)},
                                "lon": {"N": _decimal(rng, -179, 179, places=4)},
                            }
                        },
                    }
                },
            }
        },
        # Keys that look like DynamoDB's own type tags: naive converters collapse this map.
        "wire_lookalike": {
            "M": {
                "S": {"S": rng.choice(_WORDS)},
                "N": {"N": str(rng.randint(0, 99))},
                "L": {"L": [{"S": w} for w in rng.sample(_WORDS, 2)]},
            }
        },
        "history": {
            "L": [
                {"M": {"at": {"S": _timestamp(rng)}, "status": {"S": status}}}
                for status in ("created", "paid", "shipped")[: rng.randint(1, 3)]
            ]
        },
        # Different DynamoDB types that all become strings or null in JSON.
        "mixed": {
            "L": [
                {"S": rng.choice(_WORDS)},
                {"B": rng.randbytes(4)},
                {"NULL": True},
                {"L": [{"S": rng.choice(_WORDS)}]},
                {"SS": rng.sample(_WORDS, 2)},
            ]
        },
        "created_at": {"S": _timestamp(rng)},
        "notes": {"S": _text(rng, 60)},
    }


def _event(rng: random.Random, i: int) -> Item:
    kind = rng.choices(("event", "alert"), weights=(9, 1))[0]
    return {
        "device": {"S": f"device-{rng.randrange(64):03d}"},
        "ts": {"N": str(1_700_000_000_000 + i * 1_000 + rng.randrange(1_000))},  # unique per i
        "TYPE": {"S": kind},
        "sequence": {"N": str(9_007_199_254_740_993 + i)},  # above 2**53: floats lose it
        "temperature": {"N": ("-" if rng.random() < 0.2 else "") + _decimal(rng, 0, 40)},
        "ok": {"BOOL": kind == "event"},
        "error": {"S": _text(rng, 30)} if kind == "alert" else {"NULL": True},
        "payload": {"B": rng.randbytes(rng.randint(1, 24))},
        "signatures": {"BS": [bytes([n]) + rng.randbytes(7) for n in range(rng.randint(1, 3))]},
        "readings": {"NS": _distinct_decimals(rng, 3, 0, 99, places=1)},
        "labels": {"SS": rng.sample(_WORDS, rng.randint(1, 3))},
        "context": {
            "M": {
                "firmware": {"S": f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"},
                "location": {
                    "M": {
                        "room": {"S": rng.choice(("lab", "hall", "roof"))},
                        "floor": {"N": str(rng.randint(-2, 12))},
                    }
                },
                "flags": {"L": [{"BOOL": rng.random() < 0.5} for _ in range(2)]},
            }
        },
        "samples": {"L": [{"N": str(rng.randint(0, 1_000))}, {"NULL": True}, {"L": [{"N": "7"}]}]},
        "created_at": {"S": _timestamp(rng)},
        "notes": {"S": _text(rng, 40)},
    }


def _customer(rng: random.Random, i: int) -> Item:
    # Mixed case on purpose: the index name is the lower-cased type, so these share indices.
    kind = rng.choices(("customer", "Customer", "Lead", "VIP"), weights=(5, 2, 2, 1))[0]
    first, last = rng.choice(_WORDS).title(), rng.choice(_WORDS).title()
    return {
        "id": {"N": str(i + 1)},
        "TYPE": {"S": kind},
        "name": {"S": f"{first} {last}"},
        "middle_name": {"S": ""} if rng.random() < 0.5 else {"S": rng.choice(_WORDS).title()},
        "email": {"S": f"{first.lower()}.{last.lower()}{i}@example.com"},
        "age": {"N": str(rng.randint(18, 90))},
        "score": {"N": _decimal(rng, 0, 100)},
        "active": {"BOOL": rng.random() < 0.8},
        "deleted_at": {"NULL": True},
        "avatar": {"B": rng.randbytes(32)},
        "documents": {"BS": [bytes([n]) + rng.randbytes(11) for n in range(rng.randint(1, 3))]},
        "tags": {"SS": rng.sample(_WORDS, rng.randint(1, 4))},
        "favorite_numbers": {"NS": [str(n) for n in rng.sample(range(-100, 100), 3)]},
        "ratings": {"NS": _distinct_decimals(rng, 2, 0, 4, places=1)},
        "address": {
            "M": {
                "city": {"S": rng.choice(_CITIES)},
                "lines": {"L": [{"S": f"{rng.randint(1, 200)} {rng.choice(_WORDS)} street"}]},
            }
        },
        # Sometimes empty: DynamoDB allows empty maps and lists, converters must keep them.
        "preferences": {
            "M": {"newsletter": {"BOOL": True}, "language": {"S": "en"}}
            if rng.random() < 0.5
            else {}
        },
        "recent_orders": {
            "L": [
                {"M": {"pk": {"S": f"ORD-{rng.randrange(10**8):08d}"}}}
                for _ in range(rng.randint(0, 2))
            ]
        },
        "created_at": {"S": _timestamp(rng)},
        "notes": {"S": _text(rng, 50)},
    }


def _decimal(rng: random.Random, low: int, high: int, places: int = 2) -> str:
    """A decimal string such as "19.99" whose last digit is never 0, so it never reads as an int."""
    fraction = rng.randrange(10**places)
    if fraction % 10 == 0:
        fraction += rng.randint(1, 9)
    return f"{rng.randint(low, high)}.{fraction:0{places}d}"


def _distinct_decimals(
    rng: random.Random, count: int, low: int, high: int, places: int
) -> list[str]:
    """Decimals for an NS, which must not hold the same number twice."""
    values: dict[str, None] = {}  # ordered, so the result depends only on the seed
    while len(values) < count:
        values[_decimal(rng, low, high, places)] = None
    return list(values)


def _decimal_38(rng: random.Random) -> str:
    """28 integer + 10 fraction digits: beyond any long, so it lives in an always-decimal field."""
    return f"{rng.randrange(10**27, 10**28)}.{rng.randrange(10**9) * 10 + rng.randint(1, 9):010d}"


def _timestamp(rng: random.Random) -> str:
    seconds = 1_700_000_000 + rng.randrange(60_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _text(rng: random.Random, length: int) -> str:
    words: list[str] = []
    size = 0
    while size < length:
        words.append(rng.choice(_WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)[:length].strip()


def _pad(item: Item, item_bytes: int, rng: random.Random) -> None:
    """Grow `notes` so the item's JSON form is about item_bytes (benchmarks want a given size)."""
    missing = item_bytes - _approx_size(item)
    if missing > 0:
        item["notes"] = {"S": item["notes"]["S"] + " " + _text(rng, missing)}


def _approx_size(item: Item) -> int:
    """Size of the item as JSON, counting binaries as base64, as the indexed document will be."""
    return len(json.dumps(item, default=lambda b: "x" * ((len(b) + 2) // 3 * 4)))
