"""The template's body: what the spec for a configuration is, the body for one flavour, and how
two bodies are compared (normalised, then diffed path by path). Pure: no requests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings
from ddb2es_cli.errors import ConfigError

Flavour = Literal["composable", "legacy"]
COMPOSABLE: Flavour = "composable"
LEGACY: Flavour = "legacy"

DEFAULT_NAME = "ddb2es-single-shard"
TEMPLATE_META = {"managed_by": "ddb2es"}  # on the template object only, never in its mappings
DEFAULT_PRIORITY = 10
# Bumped when the body changes shape, so `GET _cat/templates` shows which ddb2es wrote it.
TEMPLATE_VERSION = 2  # 2: the mappings carry no ownership mark

# Keys some engine versions add on their own (Elasticsearch 9.1+ stamps dates on templates).
_ENGINE_KEYS = frozenset(
    {"created_date", "created_date_millis", "modified_date", "modified_date_millis"}
)
# Root keys of a typeless mapping; anything else as the only key is a 6.x mapping type.
_MAPPING_ROOT_KEYS = frozenset(
    {
        "_meta",
        "_source",
        "_routing",
        "_field_names",
        "_all",
        "_data_stream_timestamp",
        "dynamic",
        "dynamic_templates",
        "dynamic_date_formats",
        "date_detection",
        "numeric_detection",
        "properties",
        "runtime",
        "enabled",
        "subobjects",
    }
)


@dataclass(frozen=True)
class TemplateSpec:
    """What the template should be; `render` turns it into the body for one flavour."""

    name: str = DEFAULT_NAME
    patterns: tuple[str, ...] = ("*",)
    priority: int = DEFAULT_PRIORITY
    replicas: int | None = None  # None: not in the template, the cluster's default applies
    numbers_as_double: bool = True


def template_spec(
    settings: Settings,
    *,
    name: str | None = None,
    replicas: int | None = None,
    numbers_as_double: bool | None = None,
    priority: int | None = None,
) -> TemplateSpec:
    """The template for this configuration: `<prefix>*` for each distinct index prefix (the
    global one and each table's), or `*` when any of them is empty. Arguments left None come
    from the `[template]` section."""
    configured = settings.template
    name = name if name is not None else configured.name
    replicas = replicas if replicas is not None else configured.replicas
    priority = priority if priority is not None else configured.priority
    if numbers_as_double is None:
        numbers_as_double = configured.numbers_as_double
    if name is not None and not name.strip():
        raise ConfigError("the template name must not be empty")
    if replicas is not None and replicas < 0:
        raise ConfigError("--replicas must be 0 or more")
    if priority is not None and priority < 0:
        raise ConfigError("--priority must be 0 or more (engines refuse negative priorities)")
    prefixes = {settings.index_prefix} | {t.index_prefix for t in settings.tables}
    return TemplateSpec(
        name=name or DEFAULT_NAME,
        patterns=patterns_for(prefixes),
        priority=DEFAULT_PRIORITY if priority is None else priority,
        replicas=replicas,
        numbers_as_double=numbers_as_double,
    )


def patterns_for(prefixes: set[str]) -> tuple[str, ...]:
    """One `<prefix>*` per prefix, minus those another one already covers ("" covers all)."""
    if "" in prefixes:
        return ("*",)
    kept = [p for p in prefixes if not any(o != p and p.startswith(o) for o in prefixes)]
    return tuple(f"{p}*" for p in sorted(kept))


def flavour(engine: Engine) -> Flavour:
    """Composable templates on OpenSearch and Elasticsearch 7.8+, legacy before."""
    if engine.distribution == "opensearch":
        return COMPOSABLE
    numbers = [int(p) if p.isdigit() else 0 for p in engine.version.split(".")[:2]]
    major, minor = [*numbers, 0, 0][:2]
    return COMPOSABLE if (major, minor) >= (7, 8) else LEGACY


def mapping_type(engine: Engine | None) -> str | None:
    """Elasticsearch 6.x legacy templates want their mappings under a type name."""
    if engine is not None and engine.distribution == "elasticsearch" and engine.major < 7:
        return "_doc"
    return None


def endpoint(kind: Flavour, name: str) -> str:
    return f"/_index_template/{name}" if kind == COMPOSABLE else f"/_template/{name}"


def render(
    spec: TemplateSpec, flavour: Flavour, *, mapping_type: str | None = None
) -> dict[str, Any]:
    """The exact body `PUT _index_template/<name>` (or `_template`) gets."""
    index_settings: dict[str, Any] = {"number_of_shards": 1}
    if spec.replicas is not None:
        index_settings["number_of_replicas"] = spec.replicas
    mappings: dict[str, Any] = {}
    if spec.numbers_as_double:
        # Two entries, not one with a list: `match_mapping_type` lists need Elasticsearch 8.9+.
        mappings["dynamic_templates"] = [
            {
                f"ddb2es_{detected}_as_double": {
                    "match_mapping_type": detected,
                    "mapping": {"type": "double"},
                }
            }
            for detected in ("long", "double")
        ]
    if mapping_type:
        mappings = {mapping_type: mappings}
    settings = {"index": index_settings}
    if flavour == COMPOSABLE:
        return {
            "index_patterns": list(spec.patterns),
            "priority": spec.priority,
            "version": TEMPLATE_VERSION,
            "_meta": dict(TEMPLATE_META),
            "template": _section(settings, mappings),
        }
    if flavour == LEGACY:
        # Legacy templates merge (by `order`) instead of one winning; they have no `_meta`.
        return {
            "index_patterns": list(spec.patterns),
            "order": spec.priority,
            "version": TEMPLATE_VERSION,
            **_section(settings, mappings),
        }
    raise ConfigError(f"unknown template flavour {flavour!r}: use composable or legacy")


def _section(settings: dict[str, Any], mappings: dict[str, Any]) -> dict[str, Any]:
    return {"settings": settings, "mappings": mappings} if mappings else {"settings": settings}


# --- comparing ----------------------------------------------------------------------------------


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """A body as engines give it back and as `render` writes it, reduced to one form: settings
    flat with `index.` keys and string values, mappings without a 6.x type, no empty defaults
    (`composed_of: []`, `aliases: {}`) and no engine-stamped dates. Idempotent."""
    out = {k: copy.deepcopy(v) for k, v in body.items() if k not in _ENGINE_KEYS}
    if out.get("composed_of") == []:
        del out["composed_of"]
    _normalise_section(out)  # legacy: settings and mappings at the top
    inner = out.get("template")
    if isinstance(inner, dict):
        _normalise_section(inner)
        if not inner:
            del out["template"]
    return out


def _normalise_section(section: dict[str, Any]) -> None:
    for key in ("aliases", "settings", "mappings"):
        if section.get(key) in ({}, None) and key in section:
            del section[key]
    if isinstance(section.get("settings"), dict):
        section["settings"] = _flat_settings(section["settings"])
    mappings = section.get("mappings")
    if isinstance(mappings, dict) and len(mappings) == 1:
        (key, value), *_ = mappings.items()
        if key not in _MAPPING_ROOT_KEYS and isinstance(value, dict):
            section["mappings"] = value


def _flat_settings(settings: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in _flatten(settings, ""):
        name = key if key.startswith("index.") else f"index.{key}"
        flat[name] = _setting_value(value)
    return flat


def _flatten(value: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        if isinstance(item, dict) and item:
            yield from _flatten(item, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", item


def _setting_value(value: Any) -> Any:
    """Engines store every setting as a string: 1 -> "1", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_setting_value(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return str(value)


def diff(expected: dict[str, Any], actual: dict[str, Any] | None) -> list[str]:
    """Readable differences, one per line, e.g.
    `template.settings.index.number_of_shards: expected 1, found 2`; `["missing"]` when there
    is no template. Both sides are normalised first, so render output compares with engines'."""
    if actual is None:
        return ["missing"]
    return list(_diff(normalise(expected), normalise(actual), ""))


def _diff(expected: Any, actual: Any, path: str) -> Iterator[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys()):
            where = f"{path}.{key}" if path else key
            if key not in actual:
                yield f"{where}: expected {_show(expected[key])}, not set"
            elif key not in expected:
                yield f"{where}: found {_show(actual[key])}, not expected"
            else:
                yield from _diff(expected[key], actual[key], where)
    elif (
        isinstance(expected, list)
        and isinstance(actual, list)
        and len(expected) == len(actual)
        and any(isinstance(e, dict) for e in expected)
    ):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from _diff(e, a, f"{path}[{i}]")
    elif expected != actual:
        yield f"{path}: expected {_show(expected)}, found {_show(actual)}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))
