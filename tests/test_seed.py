"""The sample data generator, against a real DynamoDB Local."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddb2es_cli import local, seed
from ddb2es_cli.errors import LocalStackError
from tests.servers import free_port

ALL_TYPES = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}
LONG = 2**63


@pytest.fixture(scope="module")
def ddb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = local.start_dynamodb(free_port(), tmp_path_factory.mktemp("seed-dynamodb"))
    try:
        yield boto3.client(
            "dynamodb",
            endpoint_url=proc.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
    finally:
        local.stop(proc)


@pytest.fixture(scope="module")
def seeded(ddb: Any) -> tuple[list[seed.SeedTable], dict[str, list[dict[str, Any]]]]:
    """300 items seeded once for the read-only checks, with every item read back."""
    tables = seed.seed(ddb, items=300, prefix="t-seed-", seed=7)
    return tables, {t.name: _scan(ddb, t.name) for t in tables}


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def _types(value: dict[str, Any]) -> Iterator[str]:
    """Every DynamoDB type tag used in a wire value, nested ones included."""
    ((tag, inner),) = value.items()
    yield tag
    if tag == "M":
        for nested in inner.values():
            yield from _types(nested)
    elif tag == "L":
        for nested in inner:
            yield from _types(nested)


def _numbers(path: str, value: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, number) pairs; list and set elements share their field's path, as mappings do."""
    ((tag, inner),) = value.items()
    if tag == "N":
        yield path, inner
    elif tag == "NS":
        for number in inner:
            yield path, number
    elif tag == "M":
        for key, nested in inner.items():
            yield from _numbers(f"{path}.{key}", nested)
    elif tag == "L":
        for nested in inner:
            yield from _numbers(path, nested)


def _by_key(items: list[dict[str, Any]], table: seed.SeedTable) -> list[dict[str, Any]]:
    keys = [k for k in (table.hash_key, table.range_key) if k]
    return sorted(items, key=lambda item: [json.dumps(item[k]) for k in keys])


def test_three_tables_with_their_key_schemas_streams_and_counts(
    ddb: Any, seeded: tuple[list[seed.SeedTable], dict[str, list[dict[str, Any]]]]
) -> None:
    tables, items = seeded
    assert tables == [
        seed.SeedTable("t-seed-orders", "pk", None, 100),
        seed.SeedTable("t-seed-events", "device", "ts", 100),
        seed.SeedTable("t-seed-customers", "id", None, 100),
    ]
    expected_keys = {
        "t-seed-orders": [("pk", "HASH", "S")],
        "t-seed-events": [("device", "HASH", "S"), ("ts", "RANGE", "N")],
        "t-seed-customers": [("id", "HASH", "N")],
    }
    for table in tables:
        description = ddb.describe_table(TableName=table.name)["Table"]
        types = {
            a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]
        }
        keys = [
            (k["AttributeName"], k["KeyType"], types[k["AttributeName"]])
            for k in description["KeySchema"]
        ]
        assert keys == expected_keys[table.name]
        assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert description["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        assert description["ItemCount"] == table.items == len(items[table.name])
    assert sum(t.items for t in tables) == 300


def test_every_attribute_type_appears_in_every_table(
    seeded: tuple[list[seed.SeedTable], dict[str, list[dict[str, Any]]]],
) -> None:
    _, items = seeded
    for table, table_items in items.items():
        found = {tag for item in table_items for value in item.values() for tag in _types(value)}
        assert found == ALL_TYPES, table


def test_types_and_awkward_values_are_present(
    seeded: tuple[list[seed.SeedTable], dict[str, list[dict[str, Any]]]],
) -> None:
    _, items = seeded
    everything = [item for table_items in items.values() for item in table_items]
    type_values = {item["TYPE"]["S"] for item in everything if "TYPE" in item}
    assert {
        "order",
        "invoice",
        "refund",
        "event",
        "alert",
        "customer",
        "Customer",
        "Lead",
    } <= type_values
    # About 1% have no TYPE (they go to the `default` index): one per 100 items of a table.
    assert all(
        sum("TYPE" not in item for item in table_items) == 1 for table_items in items.values()
    )
    numbers = [n for item in everything for k, v in item.items() for _, n in _numbers(k, v)]
    assert any(n.startswith("-") and "." not in n for n in numbers)  # negative integer
    assert any(n.startswith("-") and "." in n for n in numbers)  # negative decimal
    assert "0.1" in numbers
    assert any(len(n.replace(".", "").replace("-", "")) == 38 for n in numbers)
    lookalike = items["t-seed-orders"][0]["wire_lookalike"]["M"]
    assert set(lookalike) == {"S", "N", "L"}
    assert any(item["preferences"]["M"] == {} for item in items["t-seed-customers"])


def test_numeric_fields_never_mix_integers_and_decimals(
    seeded: tuple[list[seed.SeedTable], dict[str, list[dict[str, Any]]]],
) -> None:
    """The local search server rejects such mixes as mapping conflicts; the sample avoids them."""
    _, items = seeded
    kinds: dict[str, set[str]] = defaultdict(set)
    for table_items in items.values():  # all tables: items without TYPE share one index
        for item in table_items:
            for key, value in item.items():
                for path, number in _numbers(key, value):
                    is_integer = Decimal(number) == Decimal(number).to_integral_value()
                    kinds[path].add("integer" if is_integer else "decimal")
                    if is_integer:
                        assert -LONG <= int(number) < LONG, (path, number)
    mixed = {path: k for path, k in kinds.items() if len(k) > 1}
    assert mixed == {}
    assert kinds["ledger_total"] == {"decimal"}


def test_same_seed_same_data_other_seed_other_data(ddb: Any) -> None:
    def load(prefix: str, value: int) -> list[list[dict[str, Any]]]:
        tables = seed.seed(ddb, items=60, prefix=prefix, seed=value)
        return [_by_key(_scan(ddb, t.name), t) for t in tables]

    first = load(_prefix(), 3)
    assert load(_prefix(), 3) == first
    assert load(_prefix(), 4) != first


def test_seeding_again_drops_the_old_items(ddb: Any) -> None:
    prefix = _prefix()
    seed.seed(ddb, items=90, prefix=prefix)
    tables = seed.seed(ddb, items=9, prefix=prefix)
    assert [len(_scan(ddb, t.name)) for t in tables] == [3, 3, 3]


def test_item_bytes_pads_items_to_about_that_size(ddb: Any) -> None:
    tables = seed.seed(ddb, items=30, prefix=_prefix(), item_bytes=3_000)
    for table in tables:
        for item in _scan(ddb, table.name):
            size = len(json.dumps(item, default=lambda b: "x" * ((len(b) + 2) // 3 * 4)))
            assert 2_700 <= size <= 3_300, (table.name, size)


class _Stingy:
    """A client whose BatchWriteItem accepts only part of each batch, as a throttled AWS does."""

    def __init__(self, client: Any, accept: int) -> None:
        self._client = client
        self._accept = accept
        self._lock = threading.Lock()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        ((table, puts),) = RequestItems.items()
        if self._accept:
            self._client.batch_write_item(RequestItems={table: puts[: self._accept]})
        rest = puts[self._accept :]
        return {"UnprocessedItems": {table: rest} if rest else {}}


def test_unprocessed_items_are_resent_until_written(ddb: Any) -> None:
    stingy = _Stingy(ddb, accept=10)
    tables = seed.seed(stingy, items=150, prefix=_prefix())
    assert [len(_scan(ddb, t.name)) for t in tables] == [50, 50, 50]
    assert stingy.calls == 3 * 2 * 3  # 3 tables x 2 batches x (10 + 10 + 5 puts)


def test_items_never_accepted_fail_with_a_clear_error(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seed, "_MAX_ATTEMPTS", 3)
    with pytest.raises(LocalStackError, match="25 items still unprocessed after 3 attempts"):
        seed.seed(_Stingy(ddb, accept=0), items=75, prefix=_prefix())  # one batch per table


@pytest.mark.parametrize(
    ("options", "message"),
    [({"items": -1}, "items must be 0 or more"), ({"item_bytes": 500_000}, "item_bytes 500000")],
)
def test_bad_arguments_are_refused(ddb: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalStackError, match=message):
        seed.seed(ddb, prefix=_prefix(), **options)


def test_a_dynamodb_error_becomes_a_local_stack_error(ddb: Any) -> None:
    with pytest.raises(LocalStackError, match=r"seeding failed: .*DeleteTable.*between 3 and 255"):
        seed.seed(ddb, items=3, prefix="x" * 300)  # table names are at most 255 characters


def test_seed_module_stays_free_of_cli_libraries() -> None:
    source = Path(seed.__file__).read_text() + Path(local.__file__).read_text()
    for library in ("click", "rich", "tqdm"):
        assert f"import {library}" not in source
        assert f"from {library}" not in source


def test_progress_is_told_of_every_item_written(ddb: Any) -> None:
    told: list[int] = []
    seed.seed(ddb, items=130, prefix=_prefix(), progress=told.append)
    assert sum(told) == 130 and all(n > 0 for n in told)


def test_existing_tables_names_only_those_present(ddb: Any) -> None:
    prefix = _prefix()
    assert seed.existing_tables(ddb, prefix) == []
    seed.seed(ddb, items=3, prefix=prefix)
    assert seed.existing_tables(ddb, prefix) == seed.table_names(prefix)
