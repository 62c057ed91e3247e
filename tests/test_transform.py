"""The item -> document transform: exact forms for every type, ids, index names, both shapes."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb2es_cli import transform
from ddb2es_cli.transform import (
    KEY_FIELD,
    TableShape,
    TransformError,
    _encode_document,
    _encode_map,
    canonical_number,
    document_id,
    encode_value,
    index_name,
    key_from_id,
    scan_version,
    stream_version,
    to_document,
)

SHAPE = TableShape(hash_key="pk", range_key="sk")


def to_python(value: Mapping[str, Any]) -> Any:
    """One attribute value as plain Python (numbers as Decimal), to compare documents with."""
    return json.loads(encode_value(value), parse_float=Decimal, parse_int=Decimal)


def doc(item: dict[str, Any], shape: TableShape = SHAPE) -> dict[str, Any]:
    return json.loads(to_document(item, shape).source, parse_float=Decimal)


def base_item(**attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": "a"}, "sk": {"N": "1"}, **attrs}


# --- every type, exactly ---------------------------------------------------------------------


def test_every_type_has_its_exact_json_form() -> None:
    item = base_item(
        s={"S": 'héllo "q" \n'},
        n={"N": "-12.5"},
        b={"B": b"\x00\xff"},
        t={"BOOL": True},
        f={"BOOL": False},
        z={"NULL": True},
        m={"M": {"x": {"N": "1"}, "y": {"L": [{"S": "a"}, {"NULL": True}]}}},
        l={"L": [{"N": "1"}, {"S": "two"}, {"M": {}}]},
        ss={"SS": ["b", "a", "C"]},
        ns={"NS": ["10", "9", "-1", "2"]},
        bs={"BS": [b"\x02", b"\x01"]},
    )
    assert doc(item) == {
        "pk": "a",
        "sk": 1,
        "s": 'héllo "q" \n',
        "n": Decimal("-12.5"),
        "b": "AP8=",
        "t": True,
        "f": False,
        "z": None,
        "m": {"x": 1, "y": ["a", None]},
        "l": [1, "two", {}],
        "ss": ["C", "a", "b"],
        "ns": [-1, 2, 9, 10],
        "bs": ["AQ==", "Ag=="],
    }


@pytest.mark.parametrize(
    "digits",
    [
        "0.1",
        "12345678901234567890123456789012345678",
        "-0.000000000000000000000000000000000001",
        "9.9999999999999999999999999999999999999E+125",
        "100",
        "1.5",
    ],
)
def test_numbers_keep_their_exact_digits(digits: str) -> None:
    source = to_document(base_item(n={"N": digits}), SHAPE).source
    assert f'"n":{digits}' in source


def test_maps_with_type_tag_keys_survive() -> None:
    # dynamodb-json would read {"S": ...} as a string attribute and lose the map.
    item = base_item(m={"M": {"S": {"S": "x"}, "N": {"N": "2"}, "L": {"L": []}}})
    assert doc(item)["m"] == {"S": "x", "N": 2, "L": []}


def test_strings_shaped_like_timestamps_stay_strings() -> None:
    assert doc(base_item(when={"S": "2024-01-02T03:04:05Z"}))["when"] == "2024-01-02T03:04:05Z"


def test_number_set_sorts_numerically_not_by_text() -> None:
    assert doc(base_item(ns={"NS": ["100", "20", "3.5", "-7"]}))["ns"] == [
        -7,
        Decimal("3.5"),
        20,
        100,
    ]


def test_unknown_type_tag_is_a_transform_error() -> None:
    with pytest.raises(TransformError) as info:
        to_document(base_item(x={"Q": "?"}), SHAPE)
    assert info.value.reason == "invalid_attribute"


# --- ids -----------------------------------------------------------------------------------


def test_id_is_compact_sorted_json_of_the_key_only() -> None:
    d = to_document(base_item(TYPE={"S": "Order"}, other={"S": "x"}), SHAPE)
    assert d.id == '{"pk":"a","sk":1}'
    assert d.id == json.dumps({"sk": 1, "pk": "a"}, separators=(",", ":"), sort_keys=True)


def test_id_uses_canonical_numbers() -> None:
    for spelling in ("1.50", "1.5", "15E-1", "0001.5"):
        assert to_document(base_item(sk={"N": spelling}), SHAPE).id == '{"pk":"a","sk":1.5}'
    assert canonical_number("-0") == "0"
    assert canonical_number("1E+3") == "1000"


def test_38_digit_keys_keep_every_digit_in_the_id() -> None:
    shape = TableShape(hash_key="k")
    first = to_document({"k": {"N": "12345678901234567890123456789012345671"}}, shape).id
    second = to_document({"k": {"N": "12345678901234567890123456789012345672"}}, shape).id
    assert first == '{"k":12345678901234567890123456789012345671}'
    assert first != second
    assert canonical_number("1.000000000000000000000000000000000000E+125") == "1" + "0" * 125


def test_binary_and_non_ascii_keys() -> None:
    shape = TableShape(hash_key="k")
    assert to_document({"k": {"B": b"\x01\x02"}}, shape).id == '{"k":"AQI="}'
    assert to_document({"k": {"S": "é"}}, shape).id == '{"k":"\\u00e9"}'


def test_long_id_falls_back_to_sha256_and_keeps_the_key_in_the_document() -> None:
    long_key = "x" * 600
    d = to_document({"pk": {"S": long_key}, "sk": {"N": "2"}}, SHAPE)
    key_text = json.dumps({"pk": long_key, "sk": 2}, separators=(",", ":"), sort_keys=True)
    assert d.id == "sha256:" + hashlib.sha256(key_text.encode()).hexdigest()
    assert json.loads(d.source)[KEY_FIELD] == key_text
    assert key_from_id(d.id, json.loads(d.source)) == {"pk": long_key, "sk": 2}


def test_id_of_exactly_512_bytes_is_kept() -> None:
    shape = TableShape(hash_key="k")
    overhead = len('{"k":""}')
    key = "y" * (512 - overhead)
    assert document_id(to_document({"k": {"S": key}}, shape).key_json) == f'{{"k":"{key}"}}'
    assert to_document({"k": {"S": key + "y"}}, shape).id.startswith("sha256:")


def test_missing_key_attribute() -> None:
    with pytest.raises(TransformError) as info:
        to_document({"pk": {"S": "a"}}, SHAPE)
    assert info.value.reason == "missing_key"


# --- index names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_value", "expected"),
    [
        ({"S": "Order"}, "order"),
        (None, "default"),
        ({"N": "5"}, "default"),
        ({"NULL": True}, "default"),
        ({"S": "ÉVÉNEMENT"}, "événement"),
    ],
)
def test_index_from_type(type_value: dict[str, Any] | None, expected: str) -> None:
    item = base_item() if type_value is None else base_item(TYPE=type_value)
    assert index_name(item, SHAPE) == expected


def test_index_prefix_and_custom_type_attribute() -> None:
    shape = TableShape(hash_key="pk", range_key="sk", type_attribute="kind", index_prefix="App-")
    assert index_name(base_item(kind={"S": "User"}, TYPE={"S": "x"}), shape) == "app-user"


@pytest.mark.parametrize(
    "bad",
    [
        "a/b",
        "a b",
        "a*",
        "a?",
        'a"',
        "a<",
        "a>",
        "a|",
        "a,b",
        "a#",
        "a\\b",
        "-a",
        "_a",
        "+a",
        ".",
        "..",
        "",
        "x" * 256,
        "é" * 128,
    ],
)
def test_invalid_index_names_are_reported_never_renamed(bad: str) -> None:
    with pytest.raises(TransformError) as info:
        to_document(base_item(TYPE={"S": bad}), SHAPE)
    assert info.value.reason == "invalid_index_name"


# --- versions ------------------------------------------------------------------------------


def test_versions_are_microseconds_with_the_snapshot_overlap() -> None:
    assert stream_version(1_700_000_000) == 1_700_000_000_000_000
    assert scan_version(1_700_000_000_000) == (1_700_000_000_000 - 300_000) * 1000
    assert scan_version(1_700_000_000_000, overlap_ms=0) < stream_version(1_700_000_000.001)


# --- both shapes, property-based -------------------------------------------------------------

# Numbers as DynamoDB returns them: no exponent, no leading zeros, no trailing fractional zeros.
integers = st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str)
decimals = st.decimals(
    min_value=Decimal("-1e20"),
    max_value=Decimal("1e20"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
).map(lambda d: canonical_number(str(d)))
numbers = st.one_of(integers, decimals)
names = st.text(min_size=1, max_size=8)


def attribute_values(
    texts: st.SearchStrategy[str], numbers: st.SearchStrategy[str], names: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, Any]]:
    """Every DynamoDB type, maps and lists nested, strings and map names from `texts`/`names`."""
    scalars = st.one_of(
        texts.map(lambda s: {"S": s}),
        numbers.map(lambda n: {"N": n}),
        st.binary(max_size=20).map(lambda b: {"B": b}),
        st.booleans().map(lambda b: {"BOOL": b}),
        st.just({"NULL": True}),
        st.sets(texts, min_size=1, max_size=4).map(lambda s: {"SS": list(s)}),
        st.sets(integers, min_size=1, max_size=4).map(lambda s: {"NS": list(s)}),
        st.sets(st.binary(max_size=5), min_size=1, max_size=4).map(lambda s: {"BS": list(s)}),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda v: {"L": v}),
            st.dictionaries(names, inner, max_size=4).map(lambda v: {"M": v}),
        ),
        max_leaves=12,
    )


values = attribute_values(st.text(max_size=20), numbers, names)
items = st.fixed_dictionaries(
    {
        "pk": st.one_of(
            st.text(min_size=1, max_size=30).map(lambda s: {"S": s}),
            st.binary(min_size=1, max_size=30).map(lambda b: {"B": b}),
        ),
        "sk": numbers.map(lambda n: {"N": n}),
    },
    optional={"TYPE": st.sampled_from(["Order", "event", "CUSTOMER"]).map(lambda s: {"S": s})},
).flatmap(
    lambda keys: st.dictionaries(names.filter(lambda n: n not in keys), values, max_size=6).map(
        lambda rest: {**rest, **keys}
    )
)


def as_stream_shape(item: dict[str, Any]) -> dict[str, Any]:
    """What a stream event (Lambda JSON) carries: binary as base64 text."""
    return {name: stream_value(value) for name, value in item.items()}


def stream_value(value: dict[str, Any]) -> dict[str, Any]:
    ((tag, payload),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(payload).decode()}
    if tag == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in payload]}
    if tag == "M":
        return {"M": as_stream_shape(payload)}
    if tag == "L":
        return {"L": [stream_value(v) for v in payload]}
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items, st.randoms())
def test_both_item_shapes_give_identical_documents(
    item: dict[str, Any], rnd: random.Random
) -> None:
    stream_item = as_stream_shape(item)
    shuffled = list(stream_item.items())
    rnd.shuffle(shuffled)  # stream events list attributes in another order
    assert to_document(item, SHAPE) == to_document(dict(shuffled), SHAPE)


@settings(max_examples=200, deadline=None)
@given(items)
def test_document_is_json_and_round_trips_every_value(item: dict[str, Any]) -> None:
    d = to_document(item, SHAPE)
    parsed = json.loads(d.source, parse_float=Decimal, parse_int=Decimal)
    assert set(parsed) == set(item) | ({KEY_FIELD} if d.id.startswith("sha256:") else set())
    for name, value in item.items():
        assert parsed[name] == to_python(value)
    assert key_from_id(d.id, parsed) == json.loads(
        d.key_json, parse_float=Decimal, parse_int=Decimal
    )


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        names.filter(lambda n: n != "TYPE"),  # a random TYPE may not be a valid index name
        st.one_of(st.text(), st.integers(-(10**30), 10**30), st.booleans(), st.none()),
        max_size=5,
    )
)
def test_plain_python_items_via_boto3_serializer(plain: dict[str, Any]) -> None:
    """Items written through boto3's resource layer give the document of their plain values."""
    serializer = TypeSerializer()
    item = {k: serializer.serialize(v) for k, v in plain.items()}
    item.update(pk={"S": "a"}, sk={"N": "1"})
    expected = {**plain, "pk": "a", "sk": 1}
    assert json.loads(to_document(item, SHAPE).source) == expected


# --- msgspec's spelling against the reference ------------------------------------------------

# Every code point, surrogates included: names and strings that sort and quote differently
# (non-ASCII, past the BMP, control characters), and lone surrogates, which msgspec refuses.
# Numbers also as DynamoDB never returns them but an event may carry them (canonicalised).
any_text = st.text(st.characters(blacklist_categories=()), max_size=8)
wide_values = attribute_values(
    any_text,
    st.one_of(numbers, st.sampled_from(["-0", "1E+3", "0.10", "-7.25e-3", "007"])),
    any_text,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(any_text, wide_values, max_size=8))
def test_msgspec_spells_every_document_as_the_python_reference_does(
    attributes: dict[str, Any],
) -> None:
    """The document's bytes must not depend on which encoder spelled them: the reindex uses
    msgspec, the Lambda function (pure-Python zip) the reference."""
    assert _encode_document(attributes) == _encode_map(attributes)


def test_documents_are_spelled_by_msgspec_where_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-attribute Python of the reference spelling cost about a third more per small
    item than one lookup and one store per attribute with msgspec doing the rest."""
    calls: list[int] = []
    real = transform._encode_sorted
    assert real is not None

    def counting(plain: Any) -> bytes:
        calls.append(len(plain))
        return real(plain)

    monkeypatch.setattr(transform, "_encode_sorted", counting)
    item = base_item(s={"S": "x"}, n={"N": "1.5"}, m={"M": {"b": {"BOOL": True}}})
    assert to_document(item, SHAPE).source == '{"m":{"b":true},"n":1.5,"pk":"a","s":"x","sk":1}'
    assert calls == [5]
    lone = base_item(s={"S": "\ud800"})  # no UTF-8 for it: the reference spells it
    assert to_document(lone, SHAPE).source == '{"pk":"a","s":"\ud800","sk":1}'


def test_without_msgspec_the_reference_spells_the_same_documents() -> None:
    """The Lambda zip has no msgspec (it carries pure-Python wheels only)."""
    item = base_item(
        s={"S": 'héllo "q" \n\x00😀'},
        n={"N": "1E+3"},
        l={
            "L": [
                {"S": "a"},
                {"NS": ["10", "9"]},
                {"M": {"z": {"NULL": True}, "é": {"B": b"\x01"}}},
            ]
        },
    )
    code = (
        "import sys, json; sys.modules['msgspec'] = None\n"
        "from ddb2es_cli import transform\n"
        "assert transform.msgspec is None and transform._encode_sorted is None\n"
        f"item = {item!r}\n"
        "print(json.dumps(transform.to_document(item, transform.TableShape('pk', 'sk')).source))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == to_document(item, SHAPE).source
