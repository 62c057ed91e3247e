"""`ddb2es doctor`: can we reach both sides, what are they, and is anything wrong?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddb2es_cli.checkpoint import DEFAULT_STATE_DIR, RunState
from ddb2es_cli.clients import make_dynamodb_client, make_search_client
from ddb2es_cli.collisions import key_collisions
from ddb2es_cli.config import Settings, TableSettings, redact
from ddb2es_cli.errors import Ddb2esError
from ddb2es_cli.reindex import restore_settings
from ddb2es_cli.stream_records import view_refusal
from ddb2es_cli.template import check_template, endpoint, template_spec


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passes, but the operator should read it

    def as_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "ok": self.ok, "detail": self.detail}
        return {**data, "warning": True} if self.warning else data


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def run_doctor(
    settings: Settings, state_dir: Path = DEFAULT_STATE_DIR, fix: bool = False
) -> DoctorReport:
    """Every check runs even when an earlier one failed, so one run shows everything wrong."""
    report = DoctorReport()
    report.checks.extend(_dynamodb_checks(settings))
    report.checks.extend(_search_checks(settings, state_dir, fix))
    return report


def _dynamodb_checks(settings: Settings) -> list[Check]:
    # boto3 also takes the endpoint from AWS's own variables: name it, not "AWS", when one is set.
    where = (
        settings.dynamodb.endpoint
        or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        or os.environ.get("AWS_ENDPOINT_URL")
        or f"AWS ({settings.dynamodb.region or 'default region'})"
    )
    try:
        # Two attempts: a wrong endpoint should fail in seconds, not after ten backoffs.
        client = make_dynamodb_client(settings.dynamodb, max_attempts=2)
        client.list_tables(Limit=1)
    except (Ddb2esError, BotoCoreError, ClientError) as exc:
        return [Check("dynamodb", False, f"{where}: {_one_line(exc)}")]
    checks = [Check("dynamodb", True, f"{where} answers")]
    keys_of: list[tuple[TableSettings, list[str]]] = []
    for table in settings.tables:
        try:
            desc = client.describe_table(TableName=table.name)["Table"]
        except ClientError as exc:
            checks.append(Check(f"table {table.name}", False, _one_line(exc)))
            continue
        keys_of.append((table, [k["AttributeName"] for k in desc["KeySchema"]]))
        keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in desc["KeySchema"])
        view = desc.get("StreamSpecification", {}).get("StreamViewType")
        detail = f"keys {keys}; ~{desc.get('ItemCount', '?')} items; stream {view or 'no stream'}"
        # Only NEW_AND_OLD_IMAGES can route deletes (the stream handler refuses other views).
        refusal = view_refusal(view) if view else None
        checks.append(
            Check(
                f"table {table.name}",
                refusal is None,
                f"{detail}: {refusal}" if refusal else detail,
            )
        )
    for collision in key_collisions(keys_of):
        checks.append(Check("shared index keys", True, collision.describe(), warning=True))
    return checks


def _search_checks(settings: Settings, state_dir: Path, fix: bool) -> list[Check]:
    search = settings.search
    auth = search.describe_auth()
    try:
        client, engine = make_search_client(search, settings.dynamodb.region, timeout=15)
        health = client.cluster.health()
    except Ddb2esError as exc:
        return [Check("search", False, f"{search.safe_url} (auth {auth}): {exc}")]
    except Exception as exc:  # a client library error we did not anticipate: still one line
        detail = redact(_one_line(exc), search.secrets())
        return [Check("search", False, f"{search.safe_url} (auth {auth}): {detail}")]
    checks = [
        Check(
            "search",
            True,
            f"{search.safe_url}: {engine} via {engine.client_library}, auth {auth}, "
            f"cluster status {health.get('status', '?')}",
        )
    ]
    checks.append(_template_check(client, engine, settings))
    checks.append(ownership_check(client, settings))
    checks.append(_bulk_load_check(client, state_dir, fix))
    return checks


def _template_check(client: Any, engine: Any, settings: Settings) -> Check:
    """The template `template apply` would install (flags aside: the `[template]` section)."""
    spec = template_spec(settings)
    try:
        result = check_template(client, engine, spec)
    except Ddb2esError as exc:
        return Check("template", False, f"{spec.name}: {exc}")
    where = endpoint(result.flavour, result.name)
    if result.action == "matches":
        return Check("template", True, f"{where} matches")
    fields = len(result.diff)
    changes = f" in {fields} field{'s' if fields > 1 else ''}" if result.action == "differs" else ""
    return Check(
        "template",
        False,
        f"{where} {result.action}{changes}: "
        "`ddb2es template check` shows the diff, `ddb2es template apply` installs it",
    )


def ownership_check(client: Any, settings: Settings) -> Check:
    """Which indices under the configured prefixes are this deployment's, and what to do about
    the ones older versions marked: their `*` template put `managed_by: ddb2es` (without a
    deployment) on every new index of the cluster, so that mark proves nothing."""
    from ddb2es_cli.ownership import LEGACY, OTHER_DEPLOYMENT, OWNED, status_of_meta

    deployment = settings.deployment_name
    prefixes = sorted({settings.index_prefix} | {t.index_prefix for t in settings.tables})
    pattern = "*,-.*" if "" in prefixes else ",".join(f"{p}*" for p in prefixes)
    try:
        found = client.indices.get_mapping(index=pattern, expand_wildcards="open")
    except Exception as exc:
        return Check("ownership", False, f"could not read mappings: {_one_line(exc)}")
    body = getattr(found, "body", found)
    by_status: dict[str, list[str]] = {}
    for index, info in sorted(body.items()):
        mappings = info.get("mappings", {}) or {}
        status = status_of_meta(mappings.get("_meta") or {}, deployment)
        by_status.setdefault(status, []).append(index)
    owned = len(by_status.get(OWNED, []))
    detail = f"deployment {deployment!r} owns {owned} indices"
    others = by_status.get(OTHER_DEPLOYMENT, [])
    if others:
        detail += f"; {len(others)} belong to other deployments and are never touched"
    legacy = by_status.get(LEGACY, [])
    if not legacy:
        return Check("ownership", True, detail)
    shown = ", ".join(legacy[:10]) + (f" and {len(legacy) - 10} more" if len(legacy) > 10 else "")
    return Check(
        "ownership",
        False,
        f"{detail}; {len(legacy)} carry managed_by=ddb2es without a deployment ({shown}): "
        "marked by the template of older versions (which marked every new index of the "
        "cluster) or by an older ddb2es, so reload, drift and prune treat them as NOT ours. "
        "Take over the ones that are yours with `ddb2es reload TABLE --adopt NAME`; "
        "`ddb2es template apply` installs the template that marks nothing",
    )


def _bulk_load_check(client: Any, state_dir: Path, fix: bool) -> Check:
    """Indices left with refresh off and no replicas by a reindex that died."""
    states = [s for s in RunState.load_all(state_dir) if s.pending_restore]
    pending = sorted(index for s in states for index in s.pending_restore)
    if not pending:
        return Check("bulk-load settings", True, "no index waits for its settings")
    if not fix:
        return Check(
            "bulk-load settings",
            False,
            f"a reindex died before restoring {', '.join(pending)}: "
            "run `ddb2es doctor --fix` (or the next reindex restores them)",
        )
    restored = [index for s in states for index in restore_settings(client, s)]
    return Check("bulk-load settings", True, f"restored {', '.join(restored) or 'nothing'}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
