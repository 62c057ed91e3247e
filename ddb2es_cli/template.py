"""`ddb2es template`: install and check the index template that gives every ddb2es index one
primary shard (docs/architecture.md, "template", explains the body, the flavours and why the
`*` pattern is handled carefully). The body lives in template_body.py, the overlap warnings in
template_overlap.py; their public names are importable from here as before.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

from ddb2es_cli.clients import Engine
from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.retry import status_of
from ddb2es_cli.template_body import (
    COMPOSABLE,
    DEFAULT_NAME,
    DEFAULT_PRIORITY,
    LEGACY,
    TEMPLATE_META,
    TEMPLATE_VERSION,
    Flavour,
    TemplateSpec,
    diff,
    endpoint,
    flavour,
    mapping_type,
    normalise,
    patterns_for,
    render,
    template_spec,
)
from ddb2es_cli.template_overlap import overlap_warnings, response_body

__all__ = [
    "COMPOSABLE",
    "DEFAULT_NAME",
    "DEFAULT_PRIORITY",
    "LEGACY",
    "TEMPLATE_META",
    "TEMPLATE_VERSION",
    "Flavour",
    "TemplateError",
    "TemplateResult",
    "TemplateSpec",
    "apply_template",
    "check_template",
    "diff",
    "endpoint",
    "flavour",
    "installed",
    "mapping_type",
    "normalise",
    "overlap_warnings",
    "patterns_for",
    "render",
    "template_spec",
]


class TemplateError(Ddb2esError):
    """The engine refused to store or return the template."""


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


# --- the engine ---------------------------------------------------------------------------------


def installed(client: Any, spec: TemplateSpec, flavour: Flavour) -> dict[str, Any] | None:
    """The template named `spec.name` as the engine has it (normalised), or None."""
    try:
        if flavour == COMPOSABLE:
            found = response_body(client.indices.get_index_template(name=spec.name))
            bodies = [
                t.get("index_template", {})
                for t in found.get("index_templates", [])
                if t.get("name") == spec.name
            ]
        else:
            found = response_body(client.indices.get_template(name=spec.name))
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


def _refused(request: str, exc: Exception) -> TemplateError:
    status = status_of(exc)
    info = getattr(exc, "body", None) or getattr(exc, "info", None)
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        reason = str(error or exc).splitlines()[0] if str(error or exc) else type(exc).__name__
    return TemplateError(f"{request} refused (HTTP {status}): {reason}"[:600])
