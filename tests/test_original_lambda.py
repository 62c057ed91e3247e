"""ddb2es next to the original Lambda it replaces: which ids and documents stay the same.

The original function unmarshalled stream images with `dynamodb_json.json_util.loads` and sent
the result through the search client's JSON encoder; its `_id` was the compact JSON of the
record's `Keys`, unmarshalled the same way, in the order the record listed them. This module
re-implements that transform (the reference, dynamodb-json is a test dependency only) and pins
down, item by item, where ddb2es's ids and documents equal the original's and where they differ.
The README section "Migrating from the original Lambda" is built on this table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from dynamodb_json import json_util

from ddb2es_cli.drift.compare import canonical
from ddb2es_cli.transform import TableShape, to_document

Image = dict[str, dict[str, Any]]


def _encode(value: Any) -> Any:
    """What the search clients' JSON serializers do with the values json_util.loads returns."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set):
        return list(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def original_id(keys: Mapping[str, Any]) -> str:
    """The original `_id`: compact JSON of the unmarshalled keys, in the record's key order."""
    return json.dumps(json_util.loads(dict(keys)), separators=(",", ":"), default=_encode)


def original_document(image: Mapping[str, Any]) -> str:
    """The original `_source`: the unmarshalled image as the search client sent it."""
    return json.dumps(json_util.loads(dict(image)), separators=(",", ":"), default=_encode)


def ddb2es(keys: Mapping[str, Any], image: Image, range_key: str | None) -> tuple[str, str]:
    hash_key = next(k for k in keys if k != range_key)
    doc = to_document(image, TableShape(hash_key, range_key))
    return doc.id, doc.source


def same_value(a: str, b: str) -> bool:
    """Equal as JSON values (key order and number spelling aside): what a search would see."""
    parse = lambda text: json.loads(text, parse_float=Decimal)  # noqa: E731
    return canonical(parse(a)) == canonical(parse(b))


@dataclass(frozen=True)
class Case:
    name: str
    keys: Image
    extra: Image  # attributes besides the keys
    range_key: str | None = None
    same_id: bool = True
    same_document: bool = True
    why: str = ""

    @property
    def image(self) -> Image:
        return {**self.keys, **self.extra}


S = "S"
CASES = [
    Case(
        "plain item",
        {"pk": {S: "order-1"}},
        {
            "TYPE": {S: "order"},
            "total": {"N": "19.99"},
            "count": {"N": "3"},
            "paid": {"BOOL": True},
            "note": {"NULL": True},
            "lines": {"L": [{S: "a"}, {"N": "2.5"}]},
            "address": {"M": {"city": {S: "Oslo"}, "zip": {S: "0150"}}},
            "blob": {"B": "AAEC"},
        },
        why="strings, small numbers, booleans, null, lists and maps with ordinary keys agree",
    ),
    Case("number key", {"pk": {"N": "42"}}, {"TYPE": {S: "order"}}),
    Case(
        "composite key listed hash first, names already in order",
        {"pk": {S: "a"}, "sk": {S: "b"}},
        {},
        range_key="sk",
    ),
    Case(
        "composite key listed in another order",
        {"sk": {S: "b"}, "pk": {S: "a"}},
        {},
        range_key="sk",
        same_id=False,
        why="the original kept the record's key order; ddb2es sorts key names",
    ),
    Case(
        "string set",
        {"pk": {S: "a"}},
        {"tags": {"SS": ["b", "a"]}},
        same_document=False,
        why="the original kept DynamoDB's order; ddb2es sorts sets",
    ),
    Case(
        "number set",
        {"pk": {S: "a"}},
        {"sizes": {"NS": ["10", "9"]}},
        same_document=False,
        why="the original sent number sets as strings, in any order; ddb2es as sorted numbers",
    ),
    Case(
        "map with a key named like a type tag",
        {"pk": {S: "a"}},
        {"codes": {"M": {"S": {S: "small"}}}},
        same_document=False,
        why="json_util.loads collapses {'S': 'small'} to 'small'; ddb2es keeps the map",
    ),
    Case(
        "date-like string",
        {"pk": {S: "a"}},
        {"at": {S: "2024-01-02T03:04:05.123"}},
        same_document=False,
        why="json_util.loads makes it a datetime, sent back as 2024-01-02T03:04:05.123000",
    ),
    Case(
        "decimal with more digits than a double holds",
        {"pk": {S: "a"}},
        {"amount": {"N": "12345678901234567890.12"}},
        same_document=False,
        why="the original went through a float; ddb2es keeps DynamoDB's digits",
    ),
    Case(
        "big integer",
        {"pk": {S: "a"}},
        {"id": {"N": "123456789012345678901234567890"}},
        why="integers go through int, which is exact",
    ),
    Case(
        "decimal key",
        {"pk": {"N": "12345678901234567890.12"}},
        {},
        same_id=False,
        same_document=False,
        why="the original's id and document went through a float too",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ids_and_documents_against_the_original_lambda(case: Case) -> None:
    ours_id, ours_doc = ddb2es(case.keys, case.image, case.range_key)
    theirs_id, theirs_doc = original_id(case.keys), original_document(case.image)
    assert (ours_id == theirs_id) is case.same_id, (ours_id, theirs_id, case.why)
    assert same_value(ours_doc, theirs_doc) is case.same_document, (
        ours_doc,
        theirs_doc,
        case.why,
    )


def test_an_attribute_named_like_a_type_tag_turns_the_original_document_into_a_string() -> None:
    # The item itself is a map: an attribute named `S` made the original send a bare string
    # (the engine refuses that document); ddb2es sends the item.
    image: Image = {"pk": {S: "a"}, "S": {S: "x"}}
    assert original_document(image) == '"x"'
    _, ours = ddb2es({"pk": {S: "a"}}, image, None)
    assert json.loads(ours) == {"S": "x", "pk": "a"}


def test_the_reference_really_is_the_original_transform() -> None:
    # Guards the reference itself: dynamodb-json's documented conversions, so a new release
    # that changed them would not silently make the table above meaningless.
    assert json_util.loads({"n": {"N": "1.5"}, "s": {"SS": ["b", "a"]}}) == {
        "n": 1.5,
        "s": ["b", "a"],
    }
    assert json_util.loads({"d": {S: "2024-01-02T03:04:05.123"}})["d"] == datetime(
        2024, 1, 2, 3, 4, 5, 123000
    )
    assert json_util.loads({"ns": {"NS": ["1", "2"]}})["ns"] == {"1", "2"}
