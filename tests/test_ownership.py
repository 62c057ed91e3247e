"""The ownership model against the real servers: what ddb2es may touch on a shared cluster."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.doctor import ownership_check
from ddb2es_cli.ownership import (
    FOREIGN,
    LEGACY,
    OTHER_DEPLOYMENT,
    OWNED,
    LockHeld,
    NotOwned,
    create_owned_index,
    deployment_name,
    mark,
    ownership,
    run_lock,
)
from ddb2es_cli.reload import ReloadOptions, ReloadRefused, plan_reload, run_reload
from ddb2es_cli.stream import StreamConfig, apply_batch
from ddb2es_cli.template import apply_template, template_spec
from tests.conftest import Stack
from tests.test_reindex import sample_items
from tests.test_reload import ENGINE, reload, streams_client
from tests.test_stream import item, record


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ddb2es_cli.stream_indices.REBUILD_CHECK_SECONDS", 0.1)


def test_deployment_defaults_to_the_prefix() -> None:
    assert deployment_name(None, "shop-") == "shop"
    assert deployment_name(None, "") == "default"
    assert deployment_name("blue", "shop-") == "blue"


def test_the_template_marks_nothing_so_reload_never_deletes_other_indices(
    any_stack: Stack, tmp_path: Path
) -> None:
    """Old code: the `*` template marked every new index, so `reload --strategy delete`
    deleted another team's index whose name equals a TYPE."""
    stack = any_stack
    table = stack.create_table("tpl")
    stack.put_items(table, sample_items(5, types=("orders",)))
    settings = stack.settings(table)
    apply_template(stack.es, ENGINE, template_spec(settings))
    theirs = f"{stack.prefix}orders"
    stack.es.indices.create(index=theirs)  # another application, after our template exists
    stack.es.index(index=theirs, id="theirs", body={"owner": "team b"}, refresh=True)
    assert ownership(stack.es, theirs, settings.deployment_name).status == FOREIGN
    with pytest.raises(ReloadRefused):
        reload(stack, settings, tmp_path, strategy="delete")
    assert stack.es.get(index=theirs, id="theirs")["_source"] == {"owner": "team b"}


def test_two_deployments_never_claim_each_others_indices(any_stack: Stack, tmp_path: Path) -> None:
    stack = any_stack
    table = stack.create_table("dep")
    stack.put_items(table, sample_items(6, types=("p",)))
    ours = stack.settings(table)
    reload(stack, ours, tmp_path, strategy="delete")
    name = f"{stack.prefix}p"
    assert ownership(stack.es, name, ours.deployment_name).status == OWNED
    other = replace(ours, deployment="someone-else")
    found = ownership(stack.es, name, other.deployment_name)
    assert found.status == OTHER_DEPLOYMENT
    assert ours.deployment_name in found.reason(other.deployment_name)
    for strategy in ("delete", "blue-green"):
        with pytest.raises(ReloadRefused):
            reload(stack, other, tmp_path, strategy=strategy)
        with pytest.raises(ReloadRefused):  # not even by adoption
            reload(stack, other, tmp_path, strategy=strategy, adopt=(name,))
    stack.es.indices.refresh(index=name)
    assert stack.es.count(index=name)["count"] == 6


def test_stream_handler_creates_its_indices_with_the_mark(any_stack: Stack) -> None:
    """Old code: the first stream write let the engine create the index, without a mark (or
    with the template's, which proves nothing)."""
    stack = any_stack
    config = StreamConfig(index_prefix=stack.prefix)
    records = [record("INSERT", {"pk": {"S": "a"}}, 1, 1_700_000_000, new=item("a", "Fresh"))]
    result = apply_batch(stack.es, records, config)
    assert result.indexed == 1
    name = f"{stack.prefix}fresh"
    deployment = deployment_name(None, stack.prefix)
    assert ownership(stack.es, name, deployment).status == OWNED


def test_legacy_mark_is_not_ours_until_adopted_and_doctor_says_so(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("legacy")
    stack.put_items(table, sample_items(4, types=("old",)))
    settings = stack.settings(table)
    name = f"{stack.prefix}old"
    # What the old template (or an older ddb2es) left: managed_by without a deployment.
    stack.es.indices.create(index=name, body={"mappings": {"_meta": {"managed_by": "ddb2es"}}})
    assert ownership(stack.es, name, settings.deployment_name).status == LEGACY
    check = ownership_check(stack.es, settings)
    assert not check.ok and name in check.detail and "--adopt" in check.detail
    with pytest.raises(ReloadRefused) as info:
        reload(stack, settings, tmp_path, strategy="delete")
    assert "--adopt" in str(info.value)
    summary = reload(stack, settings, tmp_path, strategy="delete", adopt=(name,))
    assert summary.verified
    assert ownership(stack.es, name, settings.deployment_name).status == OWNED
    assert ownership_check(stack.es, settings).ok


def test_delete_rechecks_ownership_when_it_acts(stack: Stack, tmp_path: Path) -> None:
    """The plan said ours; by the time the run deletes, the name is someone else's index."""
    table = stack.create_table("recheck")
    stack.put_items(table, sample_items(4, types=("r",)))
    settings = stack.settings(table)
    reload(stack, settings, tmp_path, strategy="delete")
    options = ReloadOptions(strategy="delete", marker_wait=0.1)
    plan = plan_reload(stack.es, ENGINE, stack.ddb, settings, list(settings.tables), options)
    name = f"{stack.prefix}r"
    stack.es.indices.delete(index=name)
    stack.es.indices.create(index=name)
    stack.es.index(index=name, id="theirs", body={"owner": "team b"}, refresh=True)
    with pytest.raises(NotOwned):
        run_reload(
            stack.es,
            ENGINE,
            stack.ddb,
            streams_client(stack),
            settings,
            list(settings.tables),
            options,
            plan=plan,
        )
    assert stack.es.get(index=name, id="theirs")["_source"] == {"owner": "team b"}


def test_create_owned_index_writes_the_deployment(stack: Stack) -> None:
    name = f"{stack.prefix}made"
    assert create_owned_index(stack.es, name, "d1")
    assert not create_owned_index(stack.es, name, "d1")
    meta = stack.es.indices.get_mapping(index=name)[name]["mappings"]["_meta"]
    assert meta == mark("d1")
    with pytest.raises(NotOwned):
        create_owned_index(stack.es, ".hidden-thing", "d1")


def test_type_too_long_for_a_generation_is_refused_at_plan_time(stack: Stack) -> None:
    table = stack.create_table("long")
    long_type = "l" * (236 - len(stack.prefix))
    stack.put_items(table, sample_items(2, types=(long_type,)))
    settings = stack.settings(table)
    plan = plan_reload(
        stack.es, ENGINE, stack.ddb, settings, list(settings.tables), ReloadOptions()
    )
    blocked = {p.name: p.reason for p in plan.blocked}
    assert list(blocked) == [f"{stack.prefix}{long_type}"]
    assert "235 bytes" in next(iter(blocked.values()))
    assert stack.indices() == []


def test_second_run_of_the_same_tables_exits_1_naming_the_holder(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("lock")
    stack.put_items(table, sample_items(3, types=("l",)))
    settings = stack.settings(table)
    with run_lock(stack.es, settings.deployment_name, [table], "reload (another machine)") as held:
        with pytest.raises(LockHeld) as info:
            reload(stack, settings, tmp_path)
        assert held.owner in str(info.value)
        config = str(stack.config_file(tmp_path, table))
        result = CliRunner().invoke(
            cli, ["--config", config, "reindex", table], env=stack.cli_env()
        )
        assert result.exit_code == 1, result.output
        assert held.owner in result.output and "--break-lock" in result.output
        # The operator knows the holder is dead: break it (confirmed), and the run goes ahead.
        result = CliRunner().invoke(
            cli,
            ["--config", config, "reindex", table, "--break-lock", "--yes"],
            env=stack.cli_env(),
        )
        assert result.exit_code == 0, result.output
    # Released at the end: the next run takes it.
    assert reload(stack, settings, tmp_path).verified


def test_an_expired_lock_is_taken_over(stack: Stack) -> None:
    with run_lock(stack.es, "dep", ["t-expired"], "first", lease=0.01) as first:
        first._stop.set()  # its holder died: no renewal
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with run_lock(stack.es, "dep", ["t-expired"], "second"):
                    break
            except LockHeld:
                continue
        else:
            pytest.fail("the expired lock was never taken over")


def test_model_on_both_engines(any_stack: Stack) -> None:
    """Mark, adopt, swap record and lock through opensearch-py and elasticsearch-py alike."""
    from ddb2es_cli.ownership import adopt, last_swap, record_swap

    es = any_stack.es
    name = f"{any_stack.prefix}both"
    assert create_owned_index(es, name, "d1")
    assert ownership(es, name, "d1").status == OWNED
    assert ownership(es, name, "d2").status == OTHER_DEPLOYMENT
    theirs = f"{any_stack.prefix}theirs"
    es.indices.create(index=theirs)
    assert ownership(es, theirs, "d1").status == FOREIGN
    assert adopt(es, theirs, "d1") == [theirs]
    assert ownership(es, theirs, "d1").status == OWNED
    from datetime import datetime, timezone

    at = datetime.now(timezone.utc)
    record_swap(es, f"{any_stack.prefix}d1", name, [theirs], name + "-x", at)
    record = last_swap(es, f"{any_stack.prefix}d1", name)
    assert record is not None and record["replaced"] == [theirs] and record["at"] == at.isoformat()
    table = any_stack.table_name("locked")
    with run_lock(es, any_stack.prefix, [table], "first") as held:
        held.renew()
        with pytest.raises(LockHeld), run_lock(es, any_stack.prefix, [table], "second"):
            pass
    with run_lock(es, any_stack.prefix, [table], "third"):
        pass


def test_deployment_from_the_config_file(tmp_path: Path) -> None:
    from ddb2es_cli.config import load_settings
    from ddb2es_cli.errors import ConfigError

    path = tmp_path / "ddb2es.toml"
    path.write_text('[defaults]\nindex_prefix = "shop-"\ndeployment = "blue"\n')
    assert load_settings(path, {}).deployment_name == "blue"
    path.write_text('[defaults]\nindex_prefix = "shop-"\n')
    assert load_settings(path, {}).deployment_name == "shop"
    path.write_text('[defaults]\ndeployment = ""\n')
    with pytest.raises(ConfigError):
        load_settings(path, {})
