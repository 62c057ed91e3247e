"""Small items for the benchmark: one table, a dozen flat attributes, about 700 bytes each.

The rich seed items (about 70 attribute values, nested maps and lists) make the transform look
expensive; these make per-request and per-document overhead visible instead, as a new user's
table of flat records would. Deterministic for a given count.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from ddb2es_cli.seed import _batches, _write_all

_VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
)
_WORDS = tuple(_VOCABULARY.split())
_STATUSES = ("new", "active", "suspended", "closed")


def small_item(rng: random.Random, i: int) -> dict[str, Any]:
    """Twelve attributes: strings, integers, decimals, a boolean; about 700 bytes as JSON."""
    return {
        "pk": {"S": f"acct-{i:09d}"},
        "TYPE": {"S": "account"},
        "name": {"S": " ".join(rng.choices(_WORDS, k=3)).title()},
        "email": {"S": f"user{i}@example.org"},
        "status": {"S": rng.choice(_STATUSES)},
        "plan": {"S": rng.choice(("free", "team", "enterprise"))},
        "created_at": {"S": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z"},
        "logins": {"N": str(rng.randint(0, 100_000))},
        "balance": {"N": f"{rng.randint(0, 99_999)}.{rng.randint(1, 99):02d}"},
        "verified": {"BOOL": rng.random() < 0.8},
        "country": {"S": rng.choice(("PT", "DE", "US", "JP", "KE", "PE", "NO", "CH"))},
        "bio": {"S": " ".join(rng.choices(_WORDS, k=70))},
    }


def small_items(count: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"{seed}:small")
    for i in range(count):
        yield small_item(rng, i)


def load_small_table(client: Any, name: str, count: int) -> None:
    """Create `name` (hash key `pk`, no stream) and write `count` small items into it."""
    try:
        client.delete_table(TableName=name)
        client.get_waiter("table_not_exists").wait(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    _write_all(client, _batches(name, small_items(count)), lambda _n: None)
