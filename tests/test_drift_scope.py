"""Drift sees every index the table feeds (issue 10.6): indices of retired types, shared
indices that cannot be compared in a partial run, consistent sample reads, the exit status of a
repair, and the key collisions `doctor` warns about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.config import TableSettings
from ddb2es_cli.doctor import run_doctor
from ddb2es_cli.drift import DriftOptions, DriftReport, run_drift
from ddb2es_cli.errors import ExitStatus
from ddb2es_cli.ownership import create_owned_index, deployment_name
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.transform import to_document
from tests.conftest import Stack
from tests.test_drift import Loaded, doc_id, key_of, load, make_item


def reindex(stack: Stack, tmp_path: Path, *tables: str) -> None:
    settings = stack.settings(*tables)
    run_reindex(
        stack.ddb,
        stack.es,
        settings,
        list(settings.tables),
        ReindexOptions(segments=2, failures_path=None, state_path=tmp_path / "reindex.json"),
    )


def cli_drift(stack: Stack, config: Path, *args: str) -> Any:
    base = ["--config", str(config), "--json", "drift", "--seed", "1", "--refresh"]
    return CliRunner().invoke(cli, [*base, *args], env=stack.cli_env())


# --- retired types ----------------------------------------------------------------------------


def test_an_index_of_a_retired_type_is_checked_and_repaired(
    any_stack: Stack, tmp_path: Path
) -> None:
    """Every Invoice becomes a Refund in the table; the reindex writes the Refund documents but
    nothing deletes the Invoice ones. No item maps to the invoice index any more: today drift
    never looks at it and `drift --full` exits 0."""
    loaded = load(any_stack, tmp_path, 40)
    for i in range(1, 40, 2):
        loaded.retype_in_table(i, "Refund")
    reindex(any_stack, tmp_path, loaded.table)
    invoice = loaded.index("Invoice")
    # Not ours, or not live: never in scope, whatever they hold.
    stranger = f"{any_stack.prefix}legacy"
    any_stack.es.indices.create(index=stranger)
    old_generation = f"{any_stack.prefix}old-20260101t000000000z"
    assert create_owned_index(any_stack.es, old_generation, deployment_name(None, any_stack.prefix))
    for index in (stranger, old_generation):
        loaded.put_doc(index, doc_id(1), '{"pk":"key-00001","sk":1}', "?refresh=true")

    full = loaded.drift(full=True)
    assert full.drifted and full.exit_status == ExitStatus.DIFFERS
    table = full.tables[0]
    assert table.indices[invoice].discovered
    assert table.indices[invoice].full is not None and table.indices[invoice].full.orphans == 20
    assert any(r.startswith(f"{invoice}: 20 documents for 0 items") for r in table.reasons)
    assert stranger not in table.indices and old_generation not in table.indices

    sampled = loaded.drift(sample=100)
    assert sampled.drifted and sampled.tables[0].indices[invoice].orphans == 20
    estimated = loaded.drift(sample=100, counts="estimate")
    assert estimated.drifted

    config = any_stack.config_file(tmp_path, loaded.table)
    failures = str(tmp_path / "drift-failures.ndjson")
    repaired = cli_drift(
        any_stack, config, loaded.table, "--full", "--repair", "--yes", "--failures", failures
    )
    assert repaired.exit_code == 0, repaired.output
    assert json.loads(repaired.stdout)["repair"]["deleted"] == 20
    assert any_stack.es.count(index=invoice)["count"] == 0
    clean = cli_drift(any_stack, config, loaded.table, "--full")
    assert clean.exit_code == 0, clean.output
    assert loaded.source(stranger, doc_id(1)) is not None  # never touched
    assert loaded.source(old_generation, doc_id(1)) is not None


# --- shared indices ---------------------------------------------------------------------------


def test_a_shared_default_index_is_not_comparable_in_a_partial_run(
    stack: Stack, tmp_path: Path
) -> None:
    """Two configured tables put their items without a type into `default`. Checked alone,
    each sees the other's documents there: "not comparable", not drift (exit 0); checked
    together, the index is compared, and a missing document there is drift again."""
    orders = stack.create_table("orders", range_key="sk")
    users = stack.create_table("users", hash_key="user")
    stack.put_items(orders, [make_item(i) for i in range(10)])
    stack.put_items(orders, [{**key_of(100 + i), "x": {"N": "1"}} for i in range(6)])
    stack.put_items(users, [{"user": {"S": f"u{i}"}} for i in range(4)])
    reindex(stack, tmp_path, orders, users)
    config = stack.config_file(tmp_path, orders, users)
    default = f"{stack.prefix}default"
    assert stack.es.count(index=default)["count"] == 10

    for table in (orders, users):
        alone = cli_drift(stack, config, table)
        assert alone.exit_code == 0, alone.output
        data = json.loads(alone.stdout)["tables"][0]
        (shared,) = [i for i in data["indices"] if i["index"] == default]
        assert shared["comparable"] is False and shared["difference"] is None
        assert "not in this run" in shared["not_comparable"]
        assert any("counts not comparable" in n for n in data["notes"])
    together = cli_drift(stack, config, orders, users)
    assert together.exit_code == 0, together.output
    for data in json.loads(together.stdout)["tables"]:
        (shared,) = [i for i in data["indices"] if i["index"] == default]
        assert shared["comparable"] is True and shared["difference"] == 0

    stack.es.delete(index=default, id='{"user":"u1"}', refresh=True)
    assert cli_drift(stack, config, orders, users, "--sample", "0").exit_code == 3
    assert cli_drift(stack, config, orders, "--sample", "0").exit_code == 0


# --- consistent sample reads --------------------------------------------------------------------


class LaggingDynamo:
    """The real client, but eventually consistent reads answer an older image of the items in
    `stale` (AWS serves those for a moment after a write; DynamoDB Local never does)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.stale: dict[str, dict[str, Any]] = {}  # pk -> old item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _age(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.stale.get(item["pk"]["S"], item) for item in items]

    def batch_get_item(self, **kwargs: Any) -> Any:
        answer = self._client.batch_get_item(**kwargs)
        (request,) = kwargs["RequestItems"].values()
        if not request.get("ConsistentRead"):
            for name, items in answer.get("Responses", {}).items():
                answer["Responses"][name] = self._age(items)
        return answer

    def scan(self, **kwargs: Any) -> Any:
        answer = self._client.scan(**kwargs)
        if not kwargs.get("ConsistentRead") and "Items" in answer:
            answer["Items"] = self._age(answer["Items"])
        return answer


def test_sampled_items_are_read_consistently(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 30)
    ddb = LaggingDynamo(stack.ddb)
    for i in range(5):  # the table changed; the stream already brought the index along
        old = make_item(i)
        ddb.stale[old["pk"]["S"]] = old
        new = {**old, "amount": {"N": "7"}}
        stack.put_items(loaded.table, [new])
        doc = to_document(new, loaded.shape)
        loaded.put_doc(doc.index, doc.id, doc.source)
    settings = stack.settings(loaded.table)
    for counts in ("exact", "estimate"):
        options = DriftOptions(
            segments=2, seed=1, sample=100, refresh=True, counts=counts, fast_decode=False
        )
        report = run_drift(ddb, stack.es, settings, list(settings.tables), options)
        found = [f for i in report.tables[0].indices.values() for f in i.examples]
        assert not report.drifted, (counts, found)


# --- the exit status of a repair --------------------------------------------------------------


def test_a_repair_that_leaves_drift_exits_3(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 20)
    doc = to_document(make_item(3), loaded.shape)
    newer = doc.source.replace('"amount":3.25', '"amount":4')
    loaded.put_doc(doc.index, doc.id, newer, f"?version={10**17}&version_type=external_gte")
    loaded.delete_from_index(5)
    report: DriftReport = loaded.drift(full=True, repair=True)
    assert report.repair is not None and report.repair.newer_write_in_flight == 1
    assert report.repair.indexed == 1 and report.repair.verified == 1
    assert report.drift_remains and report.exit_status == ExitStatus.DIFFERS
    assert report.tables[0].remaining == ["the repair left 1 findings as they were"]
    dry = loaded.drift(full=True, dry_run=True)  # a dry run repairs nothing
    assert dry.drift_remains and dry.exit_status == ExitStatus.DIFFERS


def test_count_only_drift_remains_after_a_repair(stack: Stack, tmp_path: Path) -> None:
    """A sample that misses the drift finds it only by count: nothing to repair by key. (Three
    documents go: a one-item sample may draw one of them, never all three.)"""
    loaded: Loaded = load(stack, tmp_path, 60)
    for i in (0, 1, 2):
        loaded.delete_from_index(i)
    report = loaded.drift(sample=1, orphans=0, repair=True)
    assert report.drifted and report.drift_remains
    assert report.exit_status == ExitStatus.DIFFERS


# --- key collisions ---------------------------------------------------------------------------


def test_key_collisions_are_pairs_with_the_same_keys_and_an_index_in_common() -> None:
    from ddb2es_cli.collisions import key_collisions

    a = TableSettings("a")
    b = TableSettings("b")
    c = TableSettings("c", index_prefix="c-")
    d = TableSettings("d", index_prefix="c-")
    found = key_collisions([(a, ["pk", "sk"]), (b, ["sk", "pk"]), (c, ["pk", "sk"]), (d, ["id"])])
    pairs = {(k.first, k.second, k.shared_default) for k in found}
    # An empty prefix reaches every index name: "c-order" is a's type "c-order" too.
    assert pairs == {("a", "b", "default"), ("a", "c", None), ("b", "c", None)}
    assert "give one an index_prefix" in found[0].describe()
    assert (
        key_collisions(
            [
                (TableSettings("x", index_prefix="x-"), ["pk"]),
                (TableSettings("y", index_prefix="y-"), ["pk"]),
            ]
        )
        == []
    )


def test_doctor_warns_about_tables_that_can_overwrite_each_other(
    stack: Stack, tmp_path: Path
) -> None:
    first = stack.create_table("first", range_key="sk")
    second = stack.create_table("second", range_key="sk")
    third = stack.create_table("third", hash_key="id")
    report = run_doctor(stack.settings(first, second, third), tmp_path / "state")
    warnings = [c for c in report.checks if c.warning]
    assert [c.name for c in warnings] == ["shared index keys"]
    assert first in warnings[0].detail and second in warnings[0].detail
    assert third not in warnings[0].detail
    assert warnings[0].ok  # a warning, not a failed check
