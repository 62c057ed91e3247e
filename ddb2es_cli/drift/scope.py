"""Which indices drift looks at besides the ones the items map to now: every index ddb2es owns
under a table's prefix that still holds documents with the table's key attributes (a retired or
renamed TYPE leaves its documents behind; no scan of the table can name that index).

Ownership is decided by `is_owned` alone, so that the ownership model (marks, deployments,
adoption) can be swapped in at one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ddb2es_cli.drift.context import DriftRun
from ddb2es_cli.drift.tables import DriftTable
from ddb2es_cli.ownership import GENERATION_RE, OWNED, REBUILD_SUFFIX, status_of_meta
from ddb2es_cli.search_json import SearchJson
from ddb2es_cli.transform import invalid_index_reason

log = logging.getLogger("ddb2es.drift")


def is_owned(mapping: Mapping[str, Any], deployment: str) -> bool:
    """Whether an index whose `_mappings` is `mapping` is this deployment's (ownership.py)."""
    meta = mapping.get("_meta") or {}
    return isinstance(meta, dict) and status_of_meta(meta, deployment) == OWNED


def live_indices(search: SearchJson, prefix: str, deployment: str) -> dict[str, str]:
    """Name (alias or index) -> concrete index, for every owned, visible index under `prefix`.

    A generation is seen under its alias; one with only a rebuild marker, or none, is not live."""
    pattern = quote(prefix.lower(), safe="") + "*"
    status, aliases = search.request("GET", f"/{pattern}/_alias", allow=(404,))
    if status == 404 or not isinstance(aliases, dict):
        return {}
    _, mappings = search.request(
        "GET", f"/{pattern}/_mapping", params={"filter_path": "*.mappings._meta"}, allow=(404,)
    )
    mappings = mappings if isinstance(mappings, dict) else {}
    found: dict[str, str] = {}
    for index, entry in sorted(aliases.items()):
        if index.startswith(".") or not is_owned(
            mappings.get(index, {}).get("mappings", {}), deployment
        ):
            continue
        names = [
            a
            for a in sorted((entry or {}).get("aliases") or {})
            if a.startswith(prefix.lower()) and not a.endswith(REBUILD_SUFFIX)
        ]
        if not names and not GENERATION_RE.search(index):
            names = [index]
        for name in names:
            if not name.startswith(".") and invalid_index_reason(name) is None:
                found.setdefault(name, index)
    return found


def documents_with_keys(search: SearchJson, index: str, key_sets: Sequence[Sequence[str]]) -> int:
    """Documents of `index` that carry every key attribute of at least one of `key_sets`
    (documents are whole items, so a table's documents always carry its key attributes)."""
    should = [{"bool": {"filter": [{"exists": {"field": k}} for k in keys]}} for keys in key_sets]
    body = {"query": {"bool": {"should": should, "minimum_should_match": 1}}}
    status, answer = search.request("POST", f"/{quote(index, safe='')}/_count", body, allow=(404,))
    return 0 if status == 404 else int(answer["count"])


def index_owners(run: DriftRun) -> dict[str, list[DriftTable]]:
    """Every index of the run and the tables that feed it: the default index, the indices
    the items map to, and every owned index under the table's prefix that still holds
    documents with the table's key attributes (a retired or renamed type)."""
    owners: dict[str, list[DriftTable]] = {}
    for table in run.tables:
        default = table.default_index
        if default is not None:
            table.report.index(default)
        discover(run, table)
        for name in table.report.indices:
            owners.setdefault(name, []).append(table)
    run.index_owners = owners
    return owners


def discover(run: DriftRun, table: DriftTable) -> None:
    """Add the owned live indices under the table's prefix that hold its documents."""
    prefix = table.shape.index_prefix.lower()
    if prefix not in run.live:
        run.live[prefix] = live_indices(run.search, prefix, run.settings.deployment_name)
    for name in run.live[prefix]:
        if name in table.report.indices:
            continue
        if documents_with_keys(run.search, name, [table.shape.key_names]):
            report = table.report.index(name)
            report.discovered = True
            log.info("drift: %s: %s holds documents of the table", table.name, name)
