"""`ddb2es template`: the index template that gives every ddb2es index one primary shard.

The body (see `render`) holds:
- `number_of_shards: 1` (the original design); `number_of_replicas` only when asked for, so by
  default the cluster decides;
- a dynamic template that maps every dynamically detected number (`long` and `double`) to
  `double`: DynamoDB numbers carry no integer/decimal distinction, so without it the first item
  decides the field type and later decimals are truncated in the index (SPEC, Template);
- no ownership mark in its mappings: the template matches indices of other applications too
  (`*` by default), so a mark there would claim them. ddb2es marks the indices it creates itself
  (see ownership.py); only the composable template object carries `_meta.managed_by`, which
  names the template's author and never reaches an index. Templates of older versions put the
  mark into every new index: `template apply` replaces them, `doctor` explains what that left.

Flavours: composable `_index_template` where the engine has it (Elasticsearch 7.8+, OpenSearch
1+), legacy `_template` otherwise (Elasticsearch 6.x-7.7; 6.x wants its mappings under a type).

The pattern, and why `*` is handled carefully (the `*` default is the original design; a
configured `index_prefix` narrows it to `<prefix>*`, which is what we recommend):
- Real Elasticsearch (7.7+) and OpenSearch skip templates whose pattern is exactly `*` when they
  create a *hidden* index, which covers data-stream backing indices and most system indices. Dot
  indices that are not hidden (older plugins, some OpenSearch plugin indices) do match `*`; the
  template then gives them one shard and the number mapping for fields they map dynamically.
  (The local stand-ins, osmem and noida, apply `*` templates to hidden indices too.)
- Composable templates do not merge: the one with the highest priority wins alone. The default
  priority is low (`DEFAULT_PRIORITY`, 10): below Elasticsearch's built-in templates (100: logs,
  metrics, synthetics...) and Fleet's (up to 200), so data streams keep their templates (and
  Elasticsearch would refuse a higher-priority template that leaves an existing data stream
  without one); not 0, the value every template without a priority has, because two overlapping
  composable templates at the same priority are refused.
- A composable template also hides every legacy template for the indices it matches, and
  Elasticsearch then refuses *new* legacy templates that overlap it.
`apply` and `check` therefore list the other templates that overlap ours as warnings: the ones
ours now shadows, the ones that shadow ours, and legacy templates that stop applying.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ddb2es_cli.clients import Engine
from ddb2es_cli.config import Settings
from ddb2es_cli.errors import ConfigError, Ddb2esError
from ddb2es_cli.retry import status_of

Flavour = Literal["composable", "legacy"]
COMPOSABLE: Flavour = "composable"
LEGACY: Flavour = "legacy"
FLAVOURS: tuple[Flavour, ...] = (COMPOSABLE, LEGACY)

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


class TemplateError(Ddb2esError):
    """The engine refused to store or return the template."""


@dataclass(frozen=True)
class TemplateSpec:
    """What the template should be; `render` turns it into the body for one flavour."""

    name: str = DEFAULT_NAME
    patterns: tuple[str, ...] = ("*",)
    priority: int = DEFAULT_PRIORITY
    replicas: int | None = None  # None: not in the template, the cluster's default applies
    numbers_as_double: bool = True


@dataclass
class TemplateResult:
    """What apply or check found and did. `body` is the exact body for this flavour."""

    name: str
    flavour: Flavour
    # apply: created | updated | unchanged | would create | would update
    # check: matches | missing | differs
    action: str
    diff: list[str]
    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def request(self) -> str:
        return f"PUT {endpoint(self.flavour, self.name)}"

    @property
    def ok(self) -> bool:
        """False only for a check that found the template missing or different."""
        return self.action not in ("missing", "differs")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flavour": self.flavour,
            "action": self.action,
            "ok": self.ok,
            "request": self.request,
            "diff": self.diff,
            "warnings": self.warnings,
            "body": self.body,
        }


# --- the spec and the body ----------------------------------------------------------------------


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


# --- the engine ---------------------------------------------------------------------------------


def installed(client: Any, spec: TemplateSpec, flavour: Flavour) -> dict[str, Any] | None:
    """The template named `spec.name` as the engine has it (normalised), or None."""
    try:
        if flavour == COMPOSABLE:
            found = _body(client.indices.get_index_template(name=spec.name))
            bodies = [
                t.get("index_template", {})
                for t in found.get("index_templates", [])
                if t.get("name") == spec.name
            ]
        else:
            found = _body(client.indices.get_template(name=spec.name))
            bodies = [found[spec.name]] if spec.name in found else []
    except Exception as exc:
        status = status_of(exc)
        if status == 404:
            return None
        if status is None:
            raise  # connection trouble: the caller's handler words it
        raise _refused(f"GET {endpoint(flavour, spec.name)}", exc) from None
    return normalise(bodies[0]) if bodies else None


def apply_template(
    client: Any,
    engine: Engine,
    spec: TemplateSpec,
    *,
    dry_run: bool = False,
    kind: Flavour | None = None,
) -> TemplateResult:
    """Install the template unless the engine already has exactly this one (then no write).

    `kind` forces a flavour (default: what the engine has). With `dry_run`, nothing is written
    and the result says what would be ("would create" / "would update") with the exact body."""
    kind = kind or flavour(engine)
    body = render(spec, kind, mapping_type=mapping_type(engine))
    current = installed(client, spec, kind)
    changes = diff(body, current)
    notes = overlap_warnings(client, engine, spec, kind)
    if not changes:
        return TemplateResult(spec.name, kind, "unchanged", [], body, notes)
    verb = "create" if current is None else "update"
    if dry_run:
        return TemplateResult(spec.name, kind, f"would {verb}", changes, body, notes)
    notes += _put(client, spec.name, kind, body)
    # Read it back: an engine that stores it differently would make every later check fail.
    left = diff(body, installed(client, spec, kind))
    if left:
        raise TemplateError(
            f"{endpoint(kind, spec.name)} was written but the engine holds something else: "
            + "; ".join(left)
        )
    return TemplateResult(spec.name, kind, f"{verb}d", changes, body, notes)


def check_template(
    client: Any, engine: Engine, spec: TemplateSpec, *, kind: Flavour | None = None
) -> TemplateResult:
    """Compare the installed template with the expected one: matches | missing | differs."""
    kind = kind or flavour(engine)
    body = render(spec, kind, mapping_type=mapping_type(engine))
    current = installed(client, spec, kind)
    changes = diff(body, current)
    action = "missing" if current is None else "differs" if changes else "matches"
    notes = overlap_warnings(client, engine, spec, kind)
    return TemplateResult(spec.name, kind, action, changes, body, notes)


def _put(client: Any, name: str, kind: Flavour, body: dict[str, Any]) -> list[str]:
    """Write the template; returns the warnings the server sent (Elasticsearch's `Warning`
    headers, which elasticsearch-py turns into Python warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind == COMPOSABLE:
                client.indices.put_index_template(name=name, body=copy.deepcopy(body))
            else:
                client.indices.put_template(name=name, body=copy.deepcopy(body))
        except Exception as exc:
            if status_of(exc) is None:
                raise  # connection trouble: the caller's handler words it
            raise _refused(f"PUT {endpoint(kind, name)}", exc) from None
    notes = []
    for warning in caught:
        if warning.category.__name__ == "ElasticsearchWarning":
            notes.append(f"server: {warning.message}")
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return notes


def overlap_warnings(client: Any, engine: Engine, spec: TemplateSpec, kind: Flavour) -> list[str]:
    """Other templates that share indices with ours, and what that means for each."""
    notes: list[str] = []
    if "*" in spec.patterns:
        notes.append(
            "pattern * matches every new index that is not hidden and that no template with a "
            "higher priority claims, other applications' indices and visible dot-indices "
            "included: set index_prefix in the config to narrow it"
        )
    ours = list(spec.patterns)
    match_all = "*" in ours
    if flavour(engine) == COMPOSABLE:
        for name, other in _all_templates(client, COMPOSABLE):
            patterns = _patterns(other)
            if (kind == COMPOSABLE and name == spec.name) or not _overlaps(ours, patterns):
                continue
            priority = int(other.get("priority") or 0)
            if kind == LEGACY:
                notes.append(
                    f"composable template {name} ({', '.join(patterns)}) takes precedence "
                    f"over this legacy template for the indices both match"
                )
            elif priority < spec.priority:
                notes.append(
                    f"template {name} ({', '.join(patterns)}, priority {priority}) no longer "
                    f"applies to new indices that {spec.name} also matches: composable "
                    f"templates do not merge, the higher priority wins"
                )
            elif priority > spec.priority and not match_all:
                notes.append(
                    f"template {name} ({', '.join(patterns)}, priority {priority}) wins over "
                    f"{spec.name} for the indices both match: those do not get one shard"
                )
            elif priority == spec.priority:
                notes.append(
                    f"template {name} ({', '.join(patterns)}) has the same priority "
                    f"{priority}: engines refuse overlapping templates of equal priority, "
                    f"pass another --priority"
                )
        if kind == COMPOSABLE:
            for name, other in _all_templates(client, LEGACY):
                patterns = _patterns(other)
                if _overlaps(ours, patterns):
                    notes.append(
                        f"legacy template {name} ({', '.join(patterns)}) is ignored for new "
                        f"indices that {spec.name} matches (composable templates take "
                        f"precedence); Elasticsearch also refuses new legacy templates that "
                        f"overlap a composable one"
                    )
    return notes


def _all_templates(client: Any, kind: Flavour) -> list[tuple[str, dict[str, Any]]]:
    try:
        if kind == COMPOSABLE:
            found = _body(client.indices.get_index_template())
            return [
                (str(t.get("name")), t.get("index_template", {}))
                for t in found.get("index_templates", [])
            ]
        found = _body(client.indices.get_template())
        return [(str(name), body) for name, body in found.items() if isinstance(body, dict)]
    except Exception as exc:
        if status_of(exc) is None:
            raise
        return []  # warnings are advice: an engine that will not list templates gets none


def _patterns(template: dict[str, Any]) -> list[str]:
    patterns = template.get("index_patterns")
    if patterns is None and isinstance(template.get("template"), str):
        patterns = template["template"]  # Elasticsearch 5 legacy templates
    if isinstance(patterns, str):
        return [patterns]
    return [str(p) for p in patterns or []]


def _overlaps(ours: list[str], theirs: list[str]) -> bool:
    return any(_may_overlap(a, b) for a in ours for b in theirs)


def _may_overlap(a: str, b: str) -> bool:
    """Whether some index name could match both patterns (only `*` is a wildcard in index
    patterns). Compares the literal text before the first and after the last `*`; exact for the
    usual `prefix*` patterns, on the cautious side for patterns with `*` in the middle."""
    if "*" not in a:
        return _simple_match(b, a)
    if "*" not in b:
        return _simple_match(a, b)
    a_head, a_tail = a.split("*")[0], a.rsplit("*", 1)[1]
    b_head, b_tail = b.split("*")[0], b.rsplit("*", 1)[1]
    heads = a_head.startswith(b_head) or b_head.startswith(a_head)
    tails = a_tail.endswith(b_tail) or b_tail.endswith(a_tail)
    return heads and tails


def _simple_match(pattern: str, name: str) -> bool:
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == name
    if not (name.startswith(parts[0]) and name.endswith(parts[-1])):
        return False
    if len(name) < len(parts[0]) + len(parts[-1]):
        return False
    position = len(parts[0])
    end = len(name) - len(parts[-1])
    for middle in parts[1:-1]:
        found = name.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


def _body(response: Any) -> dict[str, Any]:
    """elasticsearch-py wraps bodies in ObjectApiResponse; opensearch-py returns the dict."""
    body = getattr(response, "body", response)
    return body if isinstance(body, dict) else {}


def _refused(request: str, exc: Exception) -> TemplateError:
    status = status_of(exc)
    info = getattr(exc, "body", None) or getattr(exc, "info", None)
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        reason = str(error or exc).splitlines()[0] if str(error or exc) else type(exc).__name__
    return TemplateError(f"{request} refused (HTTP {status}): {reason}"[:600])
