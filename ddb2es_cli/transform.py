"""DynamoDB item -> search document, `_id` and index name (docs/spec.md). Pure functions.

Reindex, drift, repair and the stream handler all call `to_document`, so they can never disagree.
Items arrive in DynamoDB's wire shape (`{"attr": {"S": "x"}}`), with binary values either as
`bytes` (boto3 client responses) or as base64 text (stream events, raw wire JSON); both shapes give
byte-identical documents. Numbers keep the exact digits DynamoDB returned, which no float-based
JSON path can promise: they reach the JSON encoder as raw JSON text (`msgspec.Raw`).

msgspec spells the document (sorted names, strings quoted as `json.dumps(ensure_ascii=False)`
quotes them): the per-attribute Python is then one lookup and one store. `_encode_map` spells the
same document in Python, byte for byte (tests hold them equal): it serves what msgspec cannot
encode (a lone surrogate, which no UTF-8 body can carry either) and the Lambda function, whose
zip carries pure-Python wheels only (msgspec is compiled).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation

# Exposed by the stdlib's C accelerator; the fastest exact way to quote a JSON string.
# `_quote_ascii` is what json.dumps(str) uses (ids keep that spelling).
from json.encoder import encode_basestring as _quote
from json.encoder import encode_basestring_ascii as _quote_ascii
from typing import Any

try:
    import msgspec
except ImportError:  # the Lambda zip: `_encode_map` spells every document
    msgspec = None  # type: ignore[assignment]

Item = Mapping[str, Mapping[str, Any]]

MAX_ID_BYTES = 512
KEY_FIELD = "_ddb2es_key"
SHA_ID_PREFIX = "sha256:"
DEFAULT_OVERLAP_MS = 300_000
# Repairs read the item with a consistent GetItem, so their margin only covers clock skew on AWS
# (stream times are rounded down to the second) or DynamoDB Local's minute-rounded stream times.
DEFAULT_REPAIR_MARGIN_MS = 5_000
LOCAL_REPAIR_MARGIN_MS = 60_000

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")
_is_json_number = _JSON_NUMBER.match
_BAD_INDEX_CHARS = frozenset('\\/*?"<>|,# :')
# A leading `.` names hidden and system indices (`.kibana`, `.security-7`): never ours to write.
_BAD_INDEX_START = ("-", "_", "+", ".")
MAX_INDEX_BYTES = 255
_EXACT = Context(prec=200)  # beyond any DynamoDB number (38 digits, exponent -130..+125)

# `"name":` per attribute name: names repeat from item to item, quoting them once saves a C call
# and a concatenation per attribute. Bounded, so a table with ever-new names cannot grow it.
_NAME_PREFIXES: dict[str, str] = {}
_MAX_NAME_PREFIXES = 20_000
# Index names already checked: an item's index comes from a handful of type values.
_CHECKED_INDEX: dict[str, str | None] = {}
_MAX_CHECKED_INDEX = 10_000


quote_fast = _quote  # quote_json without the call around it, for per-document hot paths


def quote_json(text: str) -> str:
    """`text` as a JSON string, non-ASCII kept as is (the spelling of every document string)."""
    return str(_quote(text))


class TransformError(ValueError):
    """An item that cannot become a document; `reason` is the failures-file reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TableShape:
    """What the transform needs to know about a table: its keys and how types map to indices."""

    hash_key: str
    range_key: str | None = None
    type_attribute: str = "TYPE"
    default_type: str = "default"
    index_prefix: str = ""

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)


@dataclass(frozen=True, slots=True)
class Document:
    """One item as the search side sees it. `source` is the exact JSON text of `_source`."""

    index: str
    id: str
    source: str
    key_json: str


# --- numbers -------------------------------------------------------------------------------


def canonical_number(text: str) -> str:
    """The one spelling of a DynamoDB number used in ids: plain digits, no exponent, no `-0`."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise TransformError("invalid_number", repr(text)) from exc
    if not value.is_finite():
        raise TransformError("invalid_number", repr(text))
    if value.is_zero():
        return "0"
    # DynamoDB keeps 38 significant digits; the default context (28) would round them away.
    return format(value.normalize(_EXACT), "f")


def json_number(text: str) -> str:
    """The digits DynamoDB returned when they already are a JSON number, else the canonical form."""
    if _is_json_number(text):
        return text
    return canonical_number(text)


def _number_sort_key(text: str) -> Decimal:
    return Decimal(text)


# --- binary --------------------------------------------------------------------------------


def _b64(value: bytes | bytearray | memoryview | str) -> str:
    """Binary as base64 text; stream events already carry base64, which is normalised too."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise TransformError("invalid_binary", "binary value is not base64") from exc
        return base64.b64encode(raw).decode("ascii")
    return base64.b64encode(bytes(value)).decode("ascii")


# --- attribute values -> JSON text -------------------------------------------------------


def encode_value(value: Mapping[str, Any]) -> str:
    """One DynamoDB attribute value as compact JSON text (the reference spelling, in Python)."""
    if len(value) != 1:
        raise TransformError("invalid_attribute", f"expected one type tag, got {sorted(value)}")
    ((tag, payload),) = value.items()
    if tag == "S":
        return str(_quote(payload))
    if tag == "N":
        return json_number(payload)
    if tag == "BOOL":
        return "true" if payload else "false"
    if tag == "NULL":
        return "null"
    if tag == "B":
        return '"' + _b64(payload) + '"'
    if tag == "M":
        return _encode_map(payload)
    if tag == "L":
        return "[" + ",".join([_encode_element(v) for v in payload]) + "]"
    if tag == "SS":
        return "[" + ",".join(_quote(s) for s in sorted(payload)) + "]"
    if tag == "NS":
        return "[" + ",".join(json_number(n) for n in sorted(payload, key=_number_sort_key)) + "]"
    if tag == "BS":
        return "[" + ",".join('"' + b + '"' for b in sorted(_b64(v) for v in payload)) + "]"
    raise TransformError("invalid_attribute", f"unknown DynamoDB type {tag!r}")


def _encode_element(value: Mapping[str, Any]) -> str:
    """A list element; strings inline (the common case), the rest through encode_value."""
    if len(value) == 1 and "S" in value:
        return str(_quote(value["S"]))
    return encode_value(value)


def _name_prefix(name: str) -> str:
    """`"name":` for an attribute name, from the cache when the name was seen before."""
    prefix = _NAME_PREFIXES.get(name)
    if prefix is None:
        prefix = _quote(name) + ":"
        if len(_NAME_PREFIXES) < _MAX_NAME_PREFIXES:
            _NAME_PREFIXES[name] = prefix
    return prefix


def _encode_map(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """A map as JSON text, names sorted (scan responses and stream events list attributes in
    different orders): the spelling `_encode_document` must match, and its fallback."""
    parts: list[str] = []
    append = parts.append
    prefixes = _NAME_PREFIXES
    quote = _quote
    is_number = _is_json_number
    for name in sorted(attributes):
        value = attributes[name]
        prefix = prefixes.get(name) or _name_prefix(name)
        if len(value) == 1:
            if "S" in value:
                append(prefix + quote(value["S"]))
                continue
            if "N" in value:
                text = value["N"]
                append(prefix + (text if is_number(text) else canonical_number(text)))
                continue
            if "BOOL" in value:
                append(prefix + ("true" if value["BOOL"] else "false"))
                continue
        append(prefix + encode_value(value))
    return "{" + ",".join(parts) + "}"


# --- attribute values -> what msgspec encodes ----------------------------------------------

Plain = Any  # str | bool | None | msgspec.Raw | list[Plain] | dict[str, Plain]
_encode_sorted = msgspec.json.Encoder(order="sorted").encode if msgspec is not None else None


def _encode_document(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """The item as the document's JSON text: msgspec's spelling of `_plain_map`, which is
    `_encode_map`'s; `_encode_map` itself for what msgspec cannot encode (lone surrogates) and
    where msgspec is not installed."""
    if _encode_sorted is None:
        return _encode_map(attributes)
    try:
        return str(_encode_sorted(_plain_map(attributes)).decode())
    except UnicodeEncodeError:
        return _encode_map(attributes)


def _plain_map(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, Plain]:
    """Strings, numbers and booleans, most of any item, inline: this loop is the reindex hot
    path (local names and few calls per attribute on purpose). Order does not matter: the
    encoder sorts the names."""
    plain: dict[str, Plain] = {}
    raw = msgspec.Raw
    is_number = _is_json_number
    for name, value in attributes.items():
        if len(value) == 1:
            if "S" in value:
                text = value["S"]
                if type(text) is str:  # anything else is the reference's error, below
                    plain[name] = text
                    continue
            elif "N" in value:
                text = value["N"]
                plain[name] = raw(text if is_number(text) else canonical_number(text))
                continue
            elif "BOOL" in value:
                plain[name] = bool(value["BOOL"])
                continue
        plain[name] = _plain_value(value)
    return plain


def _plain_value(value: Mapping[str, Any]) -> Plain:
    """One attribute value in the form `_encode_sorted` spells as `encode_value` does."""
    if len(value) != 1:
        raise TransformError("invalid_attribute", f"expected one type tag, got {sorted(value)}")
    ((tag, payload),) = value.items()
    if tag == "M":
        return _plain_map(payload)
    if tag == "L":
        return [_plain_value(v) for v in payload]
    if tag == "S" and type(payload) is str:
        return payload
    if tag == "SS" and all(type(s) is str for s in payload):
        return sorted(payload)
    return msgspec.Raw(encode_value(value))  # scalars and sets: the reference's own text


# --- keys, ids, index names ----------------------------------------------------------------


def key_json(item: Item, key_names: Iterable[str]) -> str:
    """Compact JSON of the key attributes, names sorted, numbers canonical (docs/spec.md).

    Spelled exactly as `json.dumps(key, separators=(",", ":"), sort_keys=True)` would.
    """
    parts = []
    for name in sorted(key_names):
        value = item.get(name)
        if value is None:
            raise TransformError("missing_key", f"key attribute {name!r} is missing")
        parts.append(_quote_ascii(name) + ":" + _key_value(value))
    return "{" + ",".join(parts) + "}"


def _key_value(value: Mapping[str, Any]) -> str:
    """Key attributes are scalars: S, N or B (DynamoDB allows nothing else in a key)."""
    if "S" in value:
        text = value["S"]
        return str(_quote_ascii(text)) if isinstance(text, str) else json.dumps(text)
    if "N" in value:
        return canonical_number(value["N"])
    if "B" in value:
        return '"' + _b64(value["B"]) + '"'
    raise TransformError("invalid_key", f"key attribute of type {sorted(value)} is not S, N or B")


def document_id(key_text: str) -> str:
    """The key JSON itself, or `sha256:<hex>` when it would exceed the engines' 512-byte limit."""
    if len(key_text.encode("utf-8")) <= MAX_ID_BYTES:
        return key_text
    return SHA_ID_PREFIX + hashlib.sha256(key_text.encode("utf-8")).hexdigest()


def invalid_index_reason(name: str) -> str | None:
    """Why `name` (the final index name, prefix included) cannot be an index name, or None.

    The one check every command uses; a leading `.` (hidden and system indices) is refused.
    """
    if not name:
        return "empty"
    if name in (".", ".."):
        return "is '.' or '..'"
    if name.startswith(_BAD_INDEX_START):
        return f"starts with {name[0]!r}"
    bad = sorted(set(name) & _BAD_INDEX_CHARS)
    if bad:
        return f"contains {''.join(bad)!r}"
    if any(_is_control(c) for c in name):
        return "contains control characters"
    if len(name.encode("utf-8")) > MAX_INDEX_BYTES:
        return f"longer than {MAX_INDEX_BYTES} bytes"
    return None


def _is_control(char: str) -> bool:
    """C0 and C1 control characters and DEL (Unicode category Cc)."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def type_of(item: Item, shape: TableShape) -> str:
    """The item's type: the type attribute when it is a string, else the default type."""
    value = item.get(shape.type_attribute)
    if value is not None and "S" in value:
        return str(value["S"])
    return shape.default_type


def index_name(item: Item, shape: TableShape) -> str:
    """The lower-cased type with the prefix; raises TransformError for invalid names."""
    name = (shape.index_prefix + type_of(item, shape)).lower()
    if name in _CHECKED_INDEX:
        reason = _CHECKED_INDEX[name]
    else:
        reason = invalid_index_reason(name)
        if len(_CHECKED_INDEX) < _MAX_CHECKED_INDEX:
            _CHECKED_INDEX[name] = reason
    if reason is not None:
        raise TransformError("invalid_index_name", f"index name {name!r} {reason}")
    return name


def to_document(item: Item, shape: TableShape) -> Document:
    """The document, its `_id` and its index for one item (the single shared transform)."""
    key_text = key_json(item, shape.key_names)
    doc_id = document_id(key_text)
    index = index_name(item, shape)
    source = _encode_document(item)
    if doc_id != key_text:
        extra = _quote(KEY_FIELD) + ":" + _quote(key_text)
        source = "{" + extra + ("," + source[1:] if len(source) > 2 else "}")
    return Document(index, doc_id, source, key_text)  # positional: a third of the cost


def key_from_id(doc_id: str, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The key attributes (document form) back from an `_id`, or from `_ddb2es_key` for hashes."""
    text = doc_id
    if doc_id.startswith(SHA_ID_PREFIX):
        if not source or KEY_FIELD not in source:
            raise TransformError("unknown_key", f"{doc_id} has no {KEY_FIELD} field")
        text = str(source[KEY_FIELD])
    key: dict[str, Any] = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    return key


# --- versions (docs/spec.md, "Versions") ---------------------------------------------------


def scan_version(read_started_ms: int, overlap_ms: int = DEFAULT_OVERLAP_MS) -> int:
    """Version for a write that comes from a snapshot read (scan page, GetItem)."""
    return (read_started_ms - overlap_ms) * 1000


def repair_version(read_started_ms: int, margin_ms: int = DEFAULT_REPAIR_MARGIN_MS) -> int:
    """Version for a write from a consistent read: any stream record newer than the read was
    created after it, so only clock skew and the stream's rounding need a margin (docs/spec.md)."""
    return (read_started_ms - margin_ms) * 1000


def stream_version(approximate_creation_seconds: float) -> int:
    """Version for a write that comes from a stream record."""
    return int(Decimal(str(approximate_creation_seconds)) * 1_000_000)
