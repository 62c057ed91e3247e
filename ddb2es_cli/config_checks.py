"""The checks behind config.SCHEMA: one function per kind of value, answering what is wrong
with a value (None: fine), and the walk of a config file against the schema."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Set
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ddb2es_cli.errors import ConfigError
from ddb2es_cli.redaction import redact_url

Check = Callable[[Any], "str | None"]
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_INDEX_FORBIDDEN = set('\\/*?"<>| ,#:')


def text(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def non_empty(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false (unquoted)"


def count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be a whole number >= 0"


def milliseconds(value: Any) -> str | None:
    return None if count(value) is None else "must be a whole number of milliseconds >= 0"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def url_problem(value: Any) -> str | None:
    """What is wrong with an http(s) endpoint URL (never quoting it: it may hold a password)."""
    if not isinstance(value, str):
        return "must be a URL string"
    if value == "":
        return None
    if not value.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(redact_url(value))
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or too big
    except ValueError:
        return "is not a valid URL (bad host or port)"
    if not parts.hostname or any(c.isspace() for c in value):
        return "is not a valid URL (no host)"
    return None


def table_name_problem(value: Any) -> str | None:
    """DynamoDB's rule, checked before any call: 3-255 characters of A-Z a-z 0-9 _ . -"""
    if isinstance(value, str) and TABLE_NAME.match(value):
        return None
    return "is not a DynamoDB table name (3-255 characters of A-Z a-z 0-9 _ . -)"


def index_prefix_problem(value: Any) -> str | None:
    """Index names are lowercase, and hold none of \\ / * ? " < > | space , # :"""
    if not isinstance(value, str):
        return "must be a string"
    if value != value.lower():
        return "must be lowercase (index names are)"
    if set(value) & _INDEX_FORBIDDEN:
        return 'must not contain \\ / * ? " < > | space , # or :'
    if value.startswith(("-", "_", "+")):
        return "must not start with -, _ or +"
    return None


def existing_file(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a path string"
    return None if Path(value).is_file() else "names a file that does not exist"


def _did_you_mean(word: str, choices: Iterable[str], form: str = "{}") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {form.format(close[0])}?" if close else ""


def check_file(
    data: Mapping[str, Any],
    source: str | None,
    schema: Mapping[str, Mapping[str, Check]],
    array_sections: Set[str],
    secret_keys: Set[str],
) -> None:
    """Every section, key and value of the file against `schema` (config.schema); the first
    problem is raised. Values of `secret_keys` are never quoted."""
    where = f"config file {source}"
    for section, body in data.items():
        if section not in schema:
            hint = _did_you_mean(section, schema, "[{}]")
            raise ConfigError(f"{where}: unknown section [{section}]{hint}")
        if section in array_sections:
            if not isinstance(body, list):
                raise ConfigError(f"{where}: {section} must be [[{section}]] entries")
            for entry in body:
                name = entry.get("name") if isinstance(entry, dict) else None
                label = f"[[{section}]] {name!r}" if isinstance(name, str) else f"[[{section}]]"
                _check_section(where, label, entry, schema[section], secret_keys)
        else:
            _check_section(where, f"[{section}]", body, schema[section], secret_keys)


def _check_section(
    where: str, label: str, body: Any, keys: Mapping[str, Check], secret_keys: Set[str]
) -> None:
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: {label} must be a table of key = value lines")
    if label.startswith("[[tables]]") and "name" not in body:
        raise ConfigError(f"{where}: every [[tables]] entry needs a name")
    for key, value in body.items():
        if key not in keys:
            hint = _did_you_mean(key, keys)
            raise ConfigError(f"{where}: {label} has an unknown key {key!r}{hint}")
        problem = keys[key](value)
        if problem:
            shown = "" if key in secret_keys else f" (got {_show(value)})"
            raise ConfigError(f"{where}: {label} {key} {problem}{shown}")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(redact_url(value))[:80]
    return repr(value)[:80] if not isinstance(value, dict) else "a table"


# Flags and DDB2ES_* variables: the same checks as the file's values.
OVERRIDE_CHECKS: dict[str, tuple[str, Check]] = {
    "dynamodb_endpoint": ("--dynamodb-endpoint (DDB2ES_DYNAMODB_ENDPOINT)", url_problem),
    "es_url": ("--es-url (DDB2ES_ES_URL)", url_problem),
    "region": ("--region (AWS_REGION)", text),
    "profile": ("--profile (AWS_PROFILE)", text),
    "es_ca_certs": ("--es-ca-certs", existing_file),
}


def validate_overrides(given: Mapping[str, Any]) -> None:
    for key, (label, check) in OVERRIDE_CHECKS.items():
        if key in given:
            problem = check(given[key])
            if problem:
                raise ConfigError(f"{label} {problem} (got {_show(given[key])})")


def check_table_name(name: str) -> str:
    problem = table_name_problem(name)
    if problem:
        raise ConfigError(f"{name!r} {problem}")
    return name
