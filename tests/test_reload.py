"""reload against the real servers: both strategies, ownership, migration, rollback, and no
update lost while a blue/green rebuild runs."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.clients import Engine, make_dynamodb_client
from ddb2es_cli.config import DynamoSettings, Settings
from ddb2es_cli.reload import ReloadOptions, ReloadRefused, plan_reload, rollback, run_reload
from ddb2es_cli.stream_runner import StreamOptions, run_stream
from tests.conftest import Stack
from tests.test_reindex import options as reindex_options
from tests.test_reindex import sample_items
from tests.test_stream import table_documents

ENGINE = Engine("opensearch", "3.8.0")


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reload keeps its state under ./.ddb2es: give each test its own working directory; and
    the stream handler looks for rebuild markers often, so reload need not wait long."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ddb2es_cli.stream.REBUILD_CHECK_SECONDS", 0.1)


def streams_client(stack: Stack) -> Any:
    return make_dynamodb_client(
        DynamoSettings(endpoint=stack.dynamodb_url, region="us-east-1"), "dynamodbstreams"
    )


def reload(stack: Stack, settings: Settings, tmp_path: Path, **overrides: Any) -> Any:
    overrides.setdefault("marker_wait", 0.5)
    overrides.setdefault("verify_tolerance", 0)
    opts = ReloadOptions(reindex=reindex_options(tmp_path, state_path=None), **overrides)
    return run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), opts
    )


def alias_targets(stack: Stack) -> dict[str, list[str]]:
    found = stack.es.indices.get_alias(index=f"{stack.prefix}*")
    targets: dict[str, list[str]] = {}
    for index, info in found.items():
        for alias in info.get("aliases", {}):
            targets.setdefault(alias, []).append(index)
    return {k: sorted(v) for k, v in targets.items()}


def alias_documents(stack: Stack) -> dict[tuple[str, str], Any]:
    """Every document reachable through the names the application uses (aliases or indices)."""
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    names = set(alias_targets(stack))
    generation = re.compile(r"-\d{8}t\d{9}z\Z")  # old generations serve nobody
    names |= {i for i in stack.indices() if not generation.search(i)}
    docs = {}
    for name in sorted(names):
        hits = stack.es.search(index=name, body={"size": 10000})["hits"]["hits"]
        docs.update({(name, h["_id"]): h["_source"] for h in hits})
    return docs


def test_blue_green_builds_generations_behind_aliases(stack: Stack, tmp_path: Path) -> None:
    first = stack.create_table("bg1")
    second = stack.create_table("bg2")
    stack.put_items(first, sample_items(60, types=("a", "b")))
    stack.put_items(second, sample_items(30, types=("c",), key_prefix="other-"))
    settings = stack.settings(first, second)
    summary = reload(stack, settings, tmp_path)
    assert summary.verified
    aliases = alias_targets(stack)
    assert set(aliases) == {f"{stack.prefix}{t}" for t in "abc"}
    for alias, targets in aliases.items():
        assert len(targets) == 1 and targets[0].startswith(alias + "-")
        assert stack.es.count(index=alias)["count"] == 30
    assert alias_documents(stack).keys() == table_documents(stack, first).keys() | {
        (k[0], k[1]) for k in table_documents(stack, second)
    }


def test_delete_strategy_reloads_every_index_of_several_tables(
    stack: Stack, tmp_path: Path
) -> None:
    first = stack.create_table("del1")
    second = stack.create_table("del2")
    stack.put_items(first, sample_items(40, types=("a", "b")))
    stack.put_items(second, sample_items(20, types=("b",), key_prefix="other-"))
    settings = stack.settings(first, second)
    reload(stack, settings, tmp_path, strategy="delete")
    # Something stale in the index that the table no longer has: the delete flow removes it.
    stack.es.index(index=f"{stack.prefix}a", id="stale", body={"x": 1})
    summary = reload(stack, settings, tmp_path, strategy="delete")
    assert summary.verified
    assert set(summary.deleted) == {f"{stack.prefix}a", f"{stack.prefix}b"}
    stack.es.indices.refresh(index=f"{stack.prefix}*")
    assert stack.es.count(index=f"{stack.prefix}a")["count"] == 20
    assert stack.es.count(index=f"{stack.prefix}b")["count"] == 40


@pytest.mark.parametrize("strategy", ["delete", "blue-green"])
def test_unmanaged_index_with_a_colliding_name_is_never_touched(
    stack: Stack, tmp_path: Path, strategy: str
) -> None:
    table = stack.create_table("collide")
    stack.put_items(table, sample_items(10, types=("order",)))
    foreign = f"{stack.prefix}order"
    stack.es.indices.create(index=foreign)  # someone else's index, no _meta
    stack.es.index(index=foreign, id="theirs", body={"owner": "another team"}, refresh=True)
    settings = stack.settings(table)
    with pytest.raises(ReloadRefused) as info:
        reload(stack, settings, tmp_path, strategy=strategy)
    assert "--adopt" in str(info.value)
    assert stack.es.get(index=foreign, id="theirs")["_source"] == {"owner": "another team"}
    # Adopted by name, it is the operator's decision.
    summary = reload(stack, settings, tmp_path, strategy=strategy, adopt=(foreign,))
    assert summary.verified


def test_migration_from_concrete_index_to_alias_and_rollback(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("migrate")
    stack.put_items(table, sample_items(20, types=("m",)))
    settings = stack.settings(table)
    reload(stack, settings, tmp_path, strategy="delete")
    name = f"{stack.prefix}m"
    assert alias_targets(stack) == {}  # a concrete index, as the original design made
    plan = plan_reload(
        stack.es, ENGINE, stack.ddb, settings, list(settings.tables), ReloadOptions()
    )
    assert [(p.name, p.action) for p in plan.indices] == [(name, "migrate")]
    first = reload(stack, settings, tmp_path)
    gen1 = alias_targets(stack)[name]
    assert gen1 == [name + first.plan.generation]
    stack.put_items(table, [{"pk": {"S": "new"}, "TYPE": {"S": "m"}}])
    second = reload(stack, settings, tmp_path)
    gen2 = alias_targets(stack)[name]
    assert gen2 == [name + second.plan.generation] and gen2 != gen1
    assert stack.es.count(index=name)["count"] == 21
    moves = rollback(stack.es, stack.ddb, settings, list(settings.tables), segments=2)
    assert moves == [{"alias": name, "from": gen2[0], "to": gen1[0]}]
    assert alias_targets(stack)[name] == gen1
    assert stack.es.count(index=name)["count"] == 20


def test_keep_prunes_older_generations(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("keep")
    stack.put_items(table, sample_items(5, types=("k",)))
    settings = stack.settings(table)
    generations = [reload(stack, settings, tmp_path, keep=1).plan.generation for _ in range(3)]
    left = sorted(i for i in stack.indices() if i.startswith(f"{stack.prefix}k-"))
    assert left == [f"{stack.prefix}k{g}" for g in generations[1:]]


def test_dry_run_and_refusal_without_yes_change_nothing(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("dry")
    stack.put_items(table, sample_items(10, types=("d",)))
    config = str(stack.config_file(tmp_path, table))
    runner = CliRunner()
    dry = runner.invoke(
        cli, ["--config", config, "reload", table, "--dry-run"], env=stack.cli_env()
    )
    assert dry.exit_code == 0, dry.output
    assert f"{stack.prefix}d" in dry.output and "create" in dry.output
    refused = runner.invoke(cli, ["--config", config, "reload", table], env=stack.cli_env())
    assert refused.exit_code == 2, refused.output
    assert "--yes" in refused.output
    assert stack.indices() == []
    done = runner.invoke(
        cli, ["--config", config, "--json", "reload", table, "--yes"], env=stack.cli_env()
    )
    assert done.exit_code == 0, done.output
    assert f"{stack.prefix}d" in alias_targets(stack)


def test_no_update_is_lost_while_a_blue_green_reload_runs(stack: Stack, tmp_path: Path) -> None:
    table = stack.create_table("live", stream=True)
    stack.put_items(table, sample_items(300, types=("x", "y")))
    settings = stack.settings(table)
    reload(stack, settings, tmp_path)  # aliases exist, as in production
    live_state = tmp_path / "live-stream.json"
    stop = threading.Event()

    def follow() -> None:  # the deployed handler, keeping the aliases current
        run_stream(
            stack.ddb,
            streams_client(stack),
            stack.es,
            settings,
            list(settings.tables),
            StreamOptions(
                start="latest",
                state_path=live_state,
                poll_interval=0.05,
                failures_path=tmp_path / "live-failures.ndjson",
            ),
            stop,
        )

    def write() -> None:  # inserts, updates (with TYPE changes) and deletes, all the time
        rng = random.Random(3)
        n = 0
        while not stop.is_set():
            n += 1
            key = {"pk": {"S": f"key-{rng.randrange(400):05d}"}}
            roll = rng.random()
            if roll < 0.4:
                stack.ddb.put_item(
                    TableName=table,
                    Item={**key, "TYPE": {"S": rng.choice("xyz")}, "n": {"N": str(n)}},
                )
            elif roll < 0.75:
                stack.ddb.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET #t = :t, n = :n",
                    ExpressionAttributeNames={"#t": "TYPE"},
                    ExpressionAttributeValues={":t": {"S": rng.choice("xy")}, ":n": {"N": str(n)}},
                )
            else:
                stack.ddb.delete_item(TableName=table, Key=key)

    follower = threading.Thread(target=follow)
    writer = threading.Thread(target=write)
    follower.start()
    writer.start()
    try:
        # The table keeps changing while it is counted: verification allows for that.
        summary = reload(stack, settings, tmp_path, verify_tolerance=400)
    finally:
        stop.set()
        writer.join(timeout=30)
        follower.join(timeout=60)
    assert summary.verified
    # The follower stopped with the writer; catch up on the last writes as it would have.
    run_stream(
        stack.ddb,
        streams_client(stack),
        stack.es,
        settings,
        list(settings.tables),
        StreamOptions(
            state_path=live_state,
            until_caught_up=True,
            poll_interval=0.05,
            failures_path=tmp_path / "live-failures.ndjson",
        ),
    )
    assert not [i for i in stack.indices() if i.endswith("-rebuilding")]
    expected = table_documents(stack, table)
    actual = alias_documents(stack)
    assert set(actual) - set(expected) == set(), "orphans"
    assert set(expected) - set(actual) == set(), "missing documents"
    assert actual == expected


class LosesConnection:
    """The real client, but bulk requests fail after the first `allowed` ones."""

    def __init__(self, client: Any, allowed: int) -> None:
        self._client = client
        self.allowed = allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        from opensearchpy.exceptions import ConnectionError as OSConnectionError

        self.allowed -= 1
        if self.allowed < 0:
            raise OSConnectionError("N/A", "Connection refused", None)
        return self._client.bulk(*args, **kwargs)


def test_interrupted_blue_green_keeps_serving_old_data_and_resumes(
    stack: Stack, tmp_path: Path
) -> None:
    from ddb2es_cli.errors import ConnectionFailed
    from ddb2es_cli.sink import BulkOptions

    table = stack.create_table("resume")
    stack.put_items(table, sample_items(200, types=("r",)))
    settings = stack.settings(table)
    reload(stack, settings, tmp_path)
    before = alias_targets(stack)
    stack.put_items(table, sample_items(50, types=("r",), key_prefix="more-"))
    small = reindex_options(
        tmp_path, state_path=None, page_limit=20, bulk=BulkOptions(chunk_size=20)
    )
    options = ReloadOptions(marker_wait=0.2, reindex=small)
    # As the CLI does it: plan, show, then run that plan.
    plan = plan_reload(stack.es, ENGINE, stack.ddb, settings, list(settings.tables), options)
    with pytest.raises(ConnectionFailed):
        run_reload(
            LosesConnection(stack.es, 3),
            ENGINE,
            stack.ddb,
            streams_client(stack),
            settings,
            list(settings.tables),
            options,
            plan=plan,
        )
    assert alias_targets(stack) == before  # the old generation still serves
    assert stack.es.count(index=f"{stack.prefix}r")["count"] == 200
    resumed = ReloadOptions(marker_wait=0.2, reindex=replace(small, resume=True))
    summary = run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), resumed
    )
    assert summary.verified and summary.reindex is not None and summary.reindex.resumed
    assert stack.es.count(index=f"{stack.prefix}r")["count"] == 250
    assert alias_targets(stack)[f"{stack.prefix}r"] == [f"{stack.prefix}r{plan.generation}"]
    assert not [i for i in stack.indices() if i.endswith("-rebuilding")]
