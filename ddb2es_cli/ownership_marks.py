"""Whose an index is: the deployment mark in its mapping `_meta`, read now (never cached),
and the only ways ddb2es writes that mark (creating an index, adopting one).

An alias is ours when every index behind it is ours; `.` names never are; `legacy` marks
(no deployment) are not ours until adopted. Every destructive action asks `require_owned`
at the moment it acts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ddb2es_cli.errors import Ddb2esError

log = logging.getLogger("ddb2es.ownership")


MANAGED_BY = "ddb2es"


OWNED = "owned"
LEGACY = "legacy"  # managed_by without a deployment: the old template or an old ddb2es
OTHER_DEPLOYMENT = "other-deployment"
FOREIGN = "foreign"  # no mark at all
SYSTEM = "system"  # a `.` name
MISSING = "missing"


class NotOwned(Ddb2esError):
    """A destructive action met an index ddb2es cannot show this deployment owns."""


def deployment_name(configured: str | None, index_prefix: str) -> str:
    """The configured `deployment`, else the index prefix without its trailing separator, else
    `default`. Two configs with different prefixes are different deployments by default."""
    if configured:
        return configured
    derived = index_prefix.rstrip("-_.")
    return derived or "default"


def mark(deployment: str) -> dict[str, str]:
    """The mapping `_meta` that makes an index this deployment's."""
    return {"managed_by": MANAGED_BY, "deployment": deployment}


def is_system(name: str) -> bool:
    return name.startswith(".")


@dataclass(frozen=True)
class Ownership:
    """What `name` is now and whose it is. `status` is the worst of the indices behind it."""

    name: str
    kind: str  # index | alias | missing
    behind: tuple[str, ...]
    status: str
    detail: dict[str, str] = field(default_factory=dict)  # concrete index -> its status
    owners: dict[str, str] = field(default_factory=dict)  # concrete index -> its deployment

    @property
    def owned(self) -> bool:
        return self.status == OWNED

    def reason(self, deployment: str) -> str:
        """One line for an operator: why this is (not) ours."""
        what = f"{self.kind} {self.name}" + (
            f" (-> {','.join(self.behind)})" if self.kind == "alias" else ""
        )
        if self.status == OWNED:
            return f"{what} is owned by deployment {deployment}"
        if self.status == SYSTEM:
            return f"{what} is a system or hidden index: never touched"
        if self.status == LEGACY:
            return (
                f"{what} carries managed_by=ddb2es without a deployment (marked by the old "
                f"`*` template, which marked every new index of the cluster, or by an older "
                f"ddb2es): not treated as ours; pass --adopt {self.name} to take it over"
            )
        if self.status == OTHER_DEPLOYMENT:
            others = sorted({d for d in self.owners.values() if d and d != deployment})
            return (
                f"{what} belongs to another ddb2es deployment ({', '.join(others)}): never "
                "touched, not even with --adopt"
            )
        if self.status == MISSING:
            return f"{self.name} does not exist"
        return f"{what} is not managed by ddb2es; pass --adopt {self.name} to take it over"


def index_meta(es: Any, index: str) -> dict[str, Any]:
    """The mapping `_meta` of one concrete index ({} when it has none)."""
    mapping = response_body(es.indices.get_mapping(index=index))
    first: dict[str, Any] = mapping.get(index) or next(iter(mapping.values()), {})
    mappings = first.get("mappings", {}) or {}
    if "_meta" not in mappings and len(mappings) == 1:  # a 6.x mapping type
        mappings = next(iter(mappings.values())) or {}
    meta = mappings.get("_meta") or {}
    return meta if isinstance(meta, dict) else {}


def status_of_meta(meta: dict[str, Any], deployment: str) -> str:
    if meta.get("managed_by") != MANAGED_BY:
        return FOREIGN
    if meta.get("role") == "control":
        return FOREIGN  # the control index holds no documents of any table
    owner = meta.get("deployment")
    if not owner:
        return LEGACY
    return OWNED if owner == deployment else OTHER_DEPLOYMENT


def ownership(es: Any, name: str, deployment: str) -> Ownership:
    """Read now (never cached): what `name` is and whether this deployment owns it."""
    kind, behind = current(es, name)
    if is_system(name) or any(is_system(b) for b in behind):
        return Ownership(name, kind, tuple(behind), SYSTEM)
    if kind == "missing":
        return Ownership(name, kind, (), MISSING)
    metas = {b: index_meta(es, b) for b in behind}
    detail = {b: status_of_meta(m, deployment) for b, m in metas.items()}
    order = (SYSTEM, OTHER_DEPLOYMENT, FOREIGN, LEGACY, OWNED)
    worst = next(s for s in order if s in detail.values())
    owners = {b: str(metas[b].get("deployment", "")) for b in behind}
    return Ownership(name, kind, tuple(behind), worst, detail, owners)


def is_owned(es: Any, name: str, deployment: str) -> bool:
    return ownership(es, name, deployment).owned


def require_owned(es: Any, names: Iterable[str], deployment: str, action: str) -> None:
    """Raise NotOwned unless every existing name is this deployment's, checked right now."""
    refused = []
    for name in names:
        found = ownership(es, name, deployment)
        if found.status not in (OWNED, MISSING):
            refused.append(found.reason(deployment))
    if refused:
        raise NotOwned(f"{action} refused: " + "; ".join(refused))


def current(es: Any, name: str) -> tuple[str, list[str]]:
    """What `name` is now: missing, a concrete index, or an alias (and what it points to)."""
    if es.indices.exists_alias(name=name):
        return "alias", sorted(response_body(es.indices.get_alias(name=name)))
    if es.indices.exists(index=name):
        return "index", [name]
    return "missing", []


def aliases_of(es: Any, index: str) -> list[str]:
    """The aliases that point at the concrete `index` now."""
    found = response_body(es.indices.get_alias(index=index))
    return sorted(found.get(index, {}).get("aliases", {}))


def create_owned_index(es: Any, index: str, deployment: str) -> bool:
    """Create `index` with this deployment's mark; False when the name exists already."""
    if is_system(index):
        raise NotOwned(f"{index}: ddb2es never creates system or hidden indices")
    try:
        es.indices.create(index=index, body={"mappings": {"_meta": mark(deployment)}})
        return True
    except Exception as exc:  # created meanwhile (a stream writer), an alias of that name...
        text = str(exc)
        if "already_exists" in text or "resource_already" in text or "already exists" in text:
            return False
        raise


def adopt(es: Any, name: str, deployment: str) -> list[str]:
    """The operator takes `name` over: write the mark into every index it is or points to."""
    if is_system(name):
        raise NotOwned(f"{name}: system and hidden indices cannot be adopted")
    _kind, behind = current(es, name)
    adopted = []
    for index in behind:
        if is_system(index):
            raise NotOwned(f"{name} points at {index}: system indices cannot be adopted")
        current_meta = index_meta(es, index)
        if status_of_meta(current_meta, deployment) == OTHER_DEPLOYMENT:
            raise NotOwned(
                f"{index} belongs to deployment {current_meta.get('deployment')}: not adopted"
            )
        meta = {**current_meta, **mark(deployment)}
        es.indices.put_mapping(index=index, body={"_meta": meta})
        adopted.append(index)
    if adopted:
        log.info("adopted %s (%s) for deployment %s", name, ", ".join(adopted), deployment)
    return adopted


def response_body(response: Any) -> dict[str, Any]:
    """elasticsearch-py wraps bodies in ObjectApiResponse; opensearch-py returns the dict."""
    body = getattr(response, "body", response)
    return body if isinstance(body, dict) else {}
