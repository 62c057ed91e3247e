"""How drift compares a document with what the table says: exact numbers, one spelling per value."""

from __future__ import annotations

import decimal
import hashlib
import json
from decimal import Decimal
from typing import Any


def parse_document(text: str | bytes) -> Any:
    """A document's JSON with exact numbers (what both sides are compared as)."""
    return json.loads(text, parse_float=Decimal)


def canonical(value: Any) -> str:
    """One spelling per value: keys sorted, numbers by value (1.50, 1.5 and 15E-1 agree)."""
    if isinstance(value, dict):
        return (
            "{" + ",".join(json.dumps(k) + ":" + canonical(value[k]) for k in sorted(value)) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, Decimal)):
        return number_text(value)
    if isinstance(value, float):  # not from our parser; kept comparable all the same
        return number_text(Decimal(repr(value)))
    return json.dumps(value)


_EXACT = decimal.Context(prec=1000)  # DynamoDB numbers have up to 38 digits: never round


def number_text(value: int | Decimal) -> str:
    """A number's value as plain digits: 1.50, 1.5 and 15E-1 all give 1.5 (no rounding)."""
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value}")
    if number.is_zero():
        return "0"
    return format(number.normalize(_EXACT), "f")


def source_hash(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:32]


def differing_fields(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the fields that differ (objects are walked; arrays compare whole)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        paths: list[str] = []
        for name in sorted(set(expected) | set(actual)):
            path = f"{prefix}{name}"
            if name not in expected or name not in actual:
                paths.append(path)
            else:
                paths.extend(differing_fields(expected[name], actual[name], path + "."))
        return paths
    if canonical(expected) == canonical(actual):
        return []
    return [prefix.rstrip(".") or "<document>"]
