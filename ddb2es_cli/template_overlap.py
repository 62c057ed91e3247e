"""Other templates that overlap ours: the ones ours shadows, the ones that shadow ours, and legacy
templates that stop applying (docs/architecture.md, "template", says why this matters)."""

from __future__ import annotations

from typing import Any

from ddb2es_cli.clients import Engine
from ddb2es_cli.retry import status_of
from ddb2es_cli.template_body import COMPOSABLE, LEGACY, Flavour, TemplateSpec, flavour


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
            found = response_body(client.indices.get_index_template())
            return [
                (str(t.get("name")), t.get("index_template", {}))
                for t in found.get("index_templates", [])
            ]
        found = response_body(client.indices.get_template())
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


def response_body(response: Any) -> dict[str, Any]:
    """elasticsearch-py wraps bodies in ObjectApiResponse; opensearch-py returns the dict."""
    body = getattr(response, "body", response)
    return body if isinstance(body, dict) else {}
