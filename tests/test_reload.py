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
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.reload import ReloadOptions, ReloadRefused, plan_reload, rollback, run_reload
from ddb2es_cli.stream_runner import StreamOptions, run_stream
from tests.conftest import Stack, wait_for
from tests.test_reindex import options as reindex_options
from tests.test_reindex import sample_items
from tests.test_stream import table_documents

ENGINE = Engine("opensearch", "3.8.0")


@pytest.fixture(autouse=True)
def state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reload keeps its state under ./.ddb2es: give each test its own working directory; and
    the stream handler looks for rebuild markers often, so reload need not wait long."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("ddb2es_cli.stream_indices.REBUILD_CHECK_SECONDS", 0.1)


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


def run_handler(
    stack: Stack,
    settings: Settings,
    tmp_path: Path,
    stop: threading.Event | None = None,
    start: str | None = None,
) -> None:
    """The deployed stream handler: from the stream's start (or `start`, or its checkpoint in
    tmp_path), until `stop`, or without `stop` until caught up (the last writes after a follower
    stopped)."""
    run_stream(
        stack.ddb,
        streams_client(stack),
        stack.es,
        settings,
        list(settings.tables),
        StreamOptions(
            start=start,
            state_path=tmp_path / "live-stream.json",
            until_caught_up=stop is None,
            poll_interval=0.05,
            failures_path=tmp_path / "live-failures.ndjson",
        ),
        stop,
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
    result = rollback(
        stack.es, stack.ddb, streams_client(stack), settings, list(settings.tables), segments=2
    )
    moves = [m.as_dict() for m in result.moves]
    assert [(m["alias"], m["from"], m["to"]) for m in moves] == [(name, gen2[0], gen1[0])]
    assert alias_targets(stack)[name] == gen1
    # Brought current after the move (no stream here: by a reindex of the table).
    stack.es.indices.refresh(index=name)
    assert stack.es.count(index=name)["count"] == 21


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
    stop = threading.Event()
    crashed: list[BaseException] = []
    # The handler starts reading only after the writer's first writes (a lagging handler); it
    # reads from the stream's start, as one deployed before the reload. At LATEST it would miss
    # those writes, and a type first written then (z: key-00218 is the 14th write) would be
    # kept by nobody: reload leaves unplanned types to the handler and drops their generation.
    lagging = threading.Event()

    def follow() -> None:  # the deployed handler, keeping the aliases current
        lagging.wait()
        try:
            run_handler(stack, settings, tmp_path, stop)
        except BaseException as exc:  # a dead handler would show up as missing documents
            crashed.append(exc)
            raise

    def write() -> None:  # inserts, updates (with TYPE changes) and deletes, all the time
        try:
            _write()
        finally:
            lagging.set()  # the follower starts even when the writer stopped early

    def _write() -> None:
        rng = random.Random(3)
        n = 0
        while not stop.is_set():
            n += 1
            if n == 20:
                lagging.set()
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
    # Still running, either would race the catch-up run below (or its state file).
    assert not writer.is_alive() and not follower.is_alive(), "writer or follower did not stop"
    assert not crashed, f"the follower failed: {crashed}"
    assert summary.verified
    # The follower stopped with the writer; catch up on the last writes as it would have.
    run_handler(stack, settings, tmp_path)
    assert not [i for i in stack.indices() if i.endswith("-rebuilding")]
    expected = table_documents(stack, table)
    actual = alias_documents(stack)
    assert set(actual) - set(expected) == set(), "orphans"
    assert set(expected) - set(actual) == set(), "missing documents"
    assert actual == expected


class LosesConnection:
    """The real client, but bulk requests fail after the first `allowed` ones (for longer than
    the tests' retry budget, `retry_for=0.2`)."""

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
        tmp_path, state_path=None, page_limit=20, bulk=BulkOptions(chunk_size=20, retry_for=0.2)
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
    after = alias_targets(stack)
    # The old generation still serves; the marker stays so the stream keeps the new one current.
    assert after.pop(f"{stack.prefix}r-rebuilding") == [f"{stack.prefix}r{plan.generation}"]
    assert after == before
    assert stack.es.count(index=f"{stack.prefix}r")["count"] == 200
    resumed = ReloadOptions(marker_wait=0.2, reindex=replace(small, resume=True))
    summary = run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), resumed
    )
    assert summary.verified and summary.reindex is not None and summary.reindex.resumed
    assert stack.es.count(index=f"{stack.prefix}r")["count"] == 250
    assert alias_targets(stack)[f"{stack.prefix}r"] == [f"{stack.prefix}r{plan.generation}"]
    assert not [i for i in stack.indices() if i.endswith("-rebuilding")]


# --- issue 10: ownership, interrupt/resume, rollback, markers, verification ---------------------


class Hooked:
    """The real client; `hook(name, kwargs)` runs before each `indices.<name>` call."""

    def __init__(self, client: Any, hook: Any) -> None:
        self._client = client
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def indices(self) -> Any:
        outer = self

        class _Indices:
            def __getattr__(self, name: str) -> Any:
                real = getattr(outer._client.indices, name)

                def call(*args: Any, **kwargs: Any) -> Any:
                    outer._hook(name, kwargs)
                    return real(*args, **kwargs)

                return call

        return _Indices()


def run_hooked(stack: Stack, settings: Settings, hook: Any, **overrides: Any) -> Any:
    opts = ReloadOptions(
        marker_wait=0.2, reindex=reindex_options(Path.cwd(), state_path=None), **overrides
    )
    return run_reload(
        Hooked(stack.es, hook),
        ENGINE,
        stack.ddb,
        streams_client(stack),
        settings,
        list(settings.tables),
        opts,
    )


def test_a_type_that_appears_during_the_load_never_moves_a_foreign_alias(
    stack: Stack, tmp_path: Path
) -> None:
    """Old code: the swap re-pointed another application's alias at ddb2es's new index."""
    table = stack.create_table("appear")
    stack.put_items(table, sample_items(10, types=("main",)))
    settings = stack.settings(table)
    theirs, alias = f"{stack.prefix}logs-app", f"{stack.prefix}logs"
    stack.es.indices.create(index=theirs)
    stack.es.indices.update_aliases(body={"actions": [{"add": {"index": theirs, "alias": alias}}]})
    added = []

    def hook(name: str, kwargs: dict[str, Any]) -> None:
        if name == "update_aliases" and not added:  # the rebuild markers: the load starts
            added.append(True)
            stack.put_items(table, sample_items(3, types=("logs",), key_prefix="late-"))

    summary = run_hooked(stack, settings, hook)
    assert summary.verified
    assert alias_targets(stack)[alias] == [theirs]
    assert alias in summary.appeared and "left alone" in summary.appeared[alias]
    assert not [i for i in stack.indices() if i.startswith(alias + "-2")]


def test_types_created_during_the_load_pass_verification_with_tolerance_0(
    stack: Stack, tmp_path: Path
) -> None:
    """Old code: the new type had no generation, so verification failed and nothing swapped."""
    table = stack.create_table("busy")
    stack.put_items(table, sample_items(10, types=("b",)))
    settings = stack.settings(table)
    added = []

    def hook(name: str, kwargs: dict[str, Any]) -> None:
        if name == "refresh" and not added:  # the load is written; the table moves on
            added.append(True)
            stack.put_items(table, sample_items(2, types=("newer",), key_prefix="new-"))

    summary = run_hooked(stack, settings, hook, verify_tolerance=0)
    assert summary.verified and summary.swapped == [f"{stack.prefix}b"]
    assert f"{stack.prefix}newer" in summary.appeared


def served_documents(stack: Stack) -> dict[tuple[str, str], Any]:
    """What the application sees: the documents behind the aliases, not behind markers."""
    return {k: v for k, v in alias_documents(stack).items() if not k[0].endswith("-rebuilding")}


class Interrupt:
    """Progress that presses Ctrl-C after `pages` pages."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def start(self, table: str, estimated_items: int, done: int = 0) -> None:
        pass

    def advance(self, table: str, items: int) -> None:
        self.pages -= 1
        if self.pages == 0:
            raise KeyboardInterrupt


def test_ctrl_c_then_resume_never_serves_stale_data(stack: Stack, tmp_path: Path) -> None:
    """Old code: Ctrl-C removed the rebuild marker, so writes until --resume never reached
    the new generation, which was then swapped in with old values."""
    table = stack.create_table("ctrlc", stream=True)
    stack.put_items(table, sample_items(300, types=("x", "y")))
    settings = stack.settings(table)
    reload(stack, settings, tmp_path)
    stop_follower, stop_writer = threading.Event(), threading.Event()
    writes = [0]

    def follow() -> None:
        run_handler(stack, settings, tmp_path, stop_follower, start="latest")

    def write() -> None:
        rng = random.Random(5)
        while not stop_writer.is_set():
            writes[0] += 1
            key = {"pk": {"S": f"key-{rng.randrange(300):05d}"}}
            if rng.random() < 0.8:
                stack.ddb.put_item(
                    TableName=table,
                    Item={**key, "TYPE": {"S": rng.choice("xy")}, "n": {"N": str(writes[0])}},
                )
            else:
                stack.ddb.delete_item(TableName=table, Key=key)

    follower = threading.Thread(target=follow)
    writer = threading.Thread(target=write)
    follower.start()
    small = reindex_options(tmp_path, state_path=None, page_limit=20, segments=2)
    sentinel = [0]

    def follower_running() -> bool:
        # It reads from "latest": write until it has applied one write (then it sees all).
        sentinel[0] += 1
        stack.put_items(
            table, [{"pk": {"S": "sentinel"}, "TYPE": {"S": "x"}, "n": {"N": str(sentinel[0])}}]
        )
        return "sentinel" in str(served_documents(stack).keys())

    try:
        wait_for(follower_running, "the follower running")
        writer.start()
        with pytest.raises(KeyboardInterrupt):
            run_reload(
                stack.es,
                ENGINE,
                stack.ddb,
                streams_client(stack),
                settings,
                list(settings.tables),
                ReloadOptions(marker_wait=0.5, verify_tolerance=400, reindex=small),
                Interrupt(pages=4),
            )
        assert [a for a in alias_targets(stack) if a.endswith("-rebuilding")], "marker kept"
        seen = writes[0]
        wait_for(lambda: writes[0] > seen + 150, "more writes after the interruption")
        stop_writer.set()
        writer.join(timeout=30)
        # The follower has applied every write (to the live aliases) before the resume.
        wait_for(
            lambda: served_documents(stack) == table_documents(stack, table), "follower caught up"
        )
        resumed = ReloadOptions(
            marker_wait=0.5, verify_tolerance=0, reindex=replace(small, resume=True)
        )
        summary = run_reload(
            stack.es,
            ENGINE,
            stack.ddb,
            streams_client(stack),
            settings,
            list(settings.tables),
            resumed,
        )
        assert summary.verified and summary.swapped
    finally:
        stop_writer.set()
        stop_follower.set()
        if writer.is_alive():
            writer.join(timeout=30)
        follower.join(timeout=60)
    assert not [a for a in alias_targets(stack) if a.endswith("-rebuilding")]
    assert alias_documents(stack) == table_documents(stack, table)


def test_resume_swaps_every_planned_index_even_without_writes_in_the_resumed_part(
    stack: Stack, tmp_path: Path
) -> None:
    """Old code: only indices written after the resume were swapped; a rare type kept its old
    generation and a leaked marker."""
    from ddb2es_cli.errors import ConnectionFailed
    from ddb2es_cli.sink import BulkOptions

    rare = stack.create_table("a-rare")
    main = stack.create_table("b-main")
    stack.put_items(rare, sample_items(1, types=("rare",), key_prefix="rare-"))
    stack.put_items(main, sample_items(200, types=("r",)))
    settings = stack.settings(rare, main)
    reload(stack, settings, tmp_path)
    small = reindex_options(
        tmp_path,
        state_path=None,
        page_limit=20,
        segments=1,
        bulk=BulkOptions(chunk_size=20, retry_for=0.2),
    )
    options = ReloadOptions(marker_wait=0.2, reindex=small)
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
    resumed = ReloadOptions(marker_wait=0.2, reindex=replace(small, resume=True))
    summary = run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, list(settings.tables), resumed
    )
    assert summary.verified
    targets = alias_targets(stack)
    for name in (f"{stack.prefix}rare", f"{stack.prefix}r"):
        assert targets[name] == [name + plan.generation]
    assert not [a for a in targets if a.endswith("-rebuilding")]


def test_prune_never_deletes_an_aliased_generation_and_keep_is_at_least_1(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("pin")
    stack.put_items(table, sample_items(3, types=("k",)))
    settings = stack.settings(table)
    with pytest.raises(ConfigError):
        plan_reload(
            stack.es, ENGINE, stack.ddb, settings, list(settings.tables), ReloadOptions(keep=0)
        )
    first = reload(stack, settings, tmp_path).plan.generation
    pinned = f"{stack.prefix}k{first}"
    pin = f"{stack.prefix}pinned-report"
    stack.es.indices.update_aliases(body={"actions": [{"add": {"index": pinned, "alias": pin}}]})
    reload(stack, settings, tmp_path, keep=1)
    summary = reload(stack, settings, tmp_path, keep=1)
    assert pinned not in summary.deleted
    assert stack.es.indices.exists(index=pinned)


def test_abandoned_generation_is_deleted_and_rollback_goes_to_what_the_swap_replaced(
    stack: Stack, tmp_path: Path
) -> None:
    """Old code: a partial generation survived, --keep 1 deleted the complete previous one,
    and rollback moved the alias to the partial one (with nothing brought current)."""
    from ddb2es_cli.errors import ConnectionFailed
    from ddb2es_cli.sink import BulkOptions

    table = stack.create_table("roll", stream=True)
    stack.put_items(table, sample_items(120, types=("v",)))
    settings = stack.settings(table)
    name = f"{stack.prefix}v"
    reload(stack, settings, tmp_path)
    small = reindex_options(
        tmp_path,
        state_path=None,
        page_limit=20,
        segments=1,
        bulk=BulkOptions(chunk_size=20, retry_for=0.2),
    )
    with pytest.raises(ConnectionFailed):
        run_reload(
            LosesConnection(stack.es, 2),
            ENGINE,
            stack.ddb,
            streams_client(stack),
            settings,
            list(settings.tables),
            ReloadOptions(marker_wait=0.2, reindex=small),
        )
    partial = [g for g in stack.indices() if g.startswith(name + "-2")][-1]
    before = alias_targets(stack)[name]
    last = reload(stack, settings, tmp_path, keep=1)
    assert partial in last.cleaned and not stack.es.indices.exists(index=partial)
    assert stack.es.indices.exists(index=before[0])  # the rollback target is kept
    # Changes after the swap: the old generation lacks them until rollback brings it current.
    stack.ddb.put_item(
        TableName=table, Item={"pk": {"S": "key-00001"}, "TYPE": {"S": "v"}, "n": {"N": "7"}}
    )
    stack.ddb.delete_item(TableName=table, Key={"pk": {"S": "key-00002"}})
    stack.put_items(table, sample_items(1, types=("v",), key_prefix="after-"))
    config = str(stack.config_file(tmp_path, table))
    dry = CliRunner().invoke(
        cli, ["--config", config, "reload", "rollback", table, "--dry-run"], env=stack.cli_env()
    )
    assert dry.exit_code == 0, dry.output
    assert f"would move {name}" in dry.output and before[0] in dry.output
    assert "lacks every change since" in dry.output
    done = CliRunner().invoke(
        cli,
        ["--config", config, "--json", "reload", "rollback", table, "--yes"],
        env=stack.cli_env(),
    )
    assert done.exit_code == 0, done.output
    assert alias_targets(stack)[name] == before
    assert alias_documents(stack) == table_documents(stack, table)


def test_stale_markers_get_every_copy_and_are_cleaned_before_a_new_load(
    stack: Stack, tmp_path: Path
) -> None:
    """Old code: with two generations marked (kill -9, two reloads), the handler wrote to one
    of them by listing order, and the markers stayed forever."""
    from ddb2es_cli.ownership import create_owned_index
    from ddb2es_cli.stream import StreamConfig, apply_batch
    from tests.test_stream import item, record

    table = stack.create_table("marks")
    stack.put_items(table, sample_items(4, types=("m",)))
    settings = stack.settings(table)
    name = f"{stack.prefix}m"
    stale = [f"{name}-20260101t000000000z", f"{name}-20260102t000000000z"]
    for index in stale:
        create_owned_index(stack.es, index, settings.deployment_name)
    stack.es.indices.update_aliases(
        body={"actions": [{"add": {"index": i, "alias": name + "-rebuilding"}} for i in stale]}
    )
    records = [record("INSERT", {"pk": {"S": "s"}}, 1, 1_700_000_000, new=item("s", "m"))]
    apply_batch(stack.es, records, StreamConfig(index_prefix=stack.prefix))
    for index in stale:
        assert stack.es.get(index=index, id='{"pk":"s"}')["found"], index
    stack.es.indices.delete(index=name)  # as if the stream write never happened
    summary = reload(stack, settings, tmp_path)
    assert summary.verified
    assert not [a for a in alias_targets(stack) if a.endswith("-rebuilding")]
    assert not [i for i in stale if stack.es.indices.exists(index=i)]


def test_blue_green_clean_prune_and_rollback_on_both_engines(
    any_stack: Stack, tmp_path: Path
) -> None:
    """The same flow through elasticsearch-py (noida-db) and opensearch-py (osmem)."""
    stack = any_stack
    table = stack.create_table("both")
    stack.put_items(table, sample_items(8, types=("e",)))
    settings = stack.settings(table)
    name = f"{stack.prefix}e"
    first = reload(stack, settings, tmp_path).plan.generation
    reload(stack, settings, tmp_path)
    third = reload(stack, settings, tmp_path, keep=1)
    assert third.deleted == [name + first]
    before = alias_targets(stack)[name]
    stack.put_items(table, sample_items(1, types=("e",), key_prefix="late-"))
    result = rollback(
        stack.es, stack.ddb, streams_client(stack), settings, list(settings.tables), segments=2
    )
    assert [m.to_index for m in result.moves] != before
    assert alias_targets(stack)[name] == [result.moves[0].to_index]
    stack.es.indices.refresh(index=name)
    assert stack.es.count(index=name)["count"] == 9


def test_resume_plans_once(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan counts the tables with a full scan: `reload --resume` makes the interrupted
    run's plan once (the CLI shows it, the run executes it), never a second time."""
    from ddb2es_cli import reload_plan
    from ddb2es_cli.reload import plan_for_run

    table = stack.create_table("once", stream=True)
    stack.put_items(table, sample_items(120, types=("x", "y")))
    settings = stack.settings(table)
    small = reindex_options(tmp_path, state_path=None, page_limit=20, segments=2)
    with pytest.raises(KeyboardInterrupt):
        run_reload(
            stack.es,
            ENGINE,
            stack.ddb,
            streams_client(stack),
            settings,
            list(settings.tables),
            ReloadOptions(marker_wait=0.5, verify_tolerance=0, reindex=small),
            Interrupt(pages=2),
        )
    scans = []
    counted = reload_plan.type_counts

    def counting(*args: Any, **kwargs: Any) -> Any:
        scans.append(args)
        return counted(*args, **kwargs)

    monkeypatch.setattr(reload_plan, "type_counts", counting)
    resumed = ReloadOptions(
        marker_wait=0.5, verify_tolerance=0, reindex=replace(small, resume=True)
    )
    tables = list(settings.tables)
    plan = plan_for_run(stack.es, ENGINE, stack.ddb, settings, tables, resumed)
    summary = run_reload(
        stack.es, ENGINE, stack.ddb, streams_client(stack), settings, tables, resumed, None, plan
    )
    assert summary.verified and summary.swapped
    # One counting scan for the plan (planning twice would make it 3), one for the verification.
    assert len(scans) == 2
    assert alias_documents(stack) == table_documents(stack, table)
