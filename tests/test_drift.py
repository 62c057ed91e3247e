"""drift against the real local servers: clean tables are clean, every kind of drift is found
(by the sample when it touches enough of the table, always by the full comparison), and the
repair makes the next run clean."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ddb2es_cli.drift import DriftOptions, DriftReport, run_drift
from ddb2es_cli.drift.compare import canonical, differing_fields, number_text
from ddb2es_cli.errors import ConfigError, ExitStatus
from ddb2es_cli.reindex import ReindexOptions, run_reindex
from ddb2es_cli.transform import TableShape, to_document
from tests.conftest import Stack

LONG_KEY = "L" * 600  # over 512 bytes: the document id is a sha256 and the key is in the doc


def make_item(i: int, kind: str | None = None) -> dict[str, Any]:
    """Numbers that survive a double (the noida-db stand-in re-renders `_source` through one)."""
    return {
        "pk": {"S": f"key-{i:05d}"},
        "sk": {"N": str(i % 7)},
        "TYPE": {"S": kind or ("Order", "Invoice")[i % 2]},
        "amount": {"N": f"{i}.25"},
        "tags": {"SS": ["b", "a"]},
        "nested": {"M": {"n": {"N": "0.1"}, "s": {"S": "x"}}},
        "flag": {"BOOL": i % 3 == 0},
    }


def key_of(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"key-{i:05d}"}, "sk": {"N": str(i % 7)}}


def doc_id(i: int) -> str:
    return json.dumps({"pk": f"key-{i:05d}", "sk": i % 7}, separators=(",", ":"))


@dataclass
class Loaded:
    stack: Stack
    table: str
    shape: TableShape
    tmp_path: Path

    def index(self, kind: str) -> str:
        return f"{self.stack.prefix}{kind.lower()}"

    def drift(self, **options: Any) -> DriftReport:
        values: dict[str, Any] = {"segments": 4, "seed": 1, "refresh": True}
        values.update(options)
        settings = self.stack.settings(self.table)
        return run_drift(
            self.stack.ddb, self.stack.es, settings, list(settings.tables), DriftOptions(**values)
        )

    def http(self, method: str, path: str, body: str | None = None) -> Any:
        request = urllib.request.Request(
            self.stack.es_url + path,
            data=None if body is None else body.encode(),
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def put_doc(self, index: str, doc_id: str, source: str, query: str = "") -> None:
        self.http("PUT", f"/{index}/_doc/{quote(doc_id, safe='')}{query}", source)

    def delete_doc(self, index: str, doc_id: str) -> None:
        assert self.http("DELETE", f"/{index}/_doc/{quote(doc_id, safe='')}") is not None

    def source(self, index: str, doc_id: str) -> Any:
        found = self.http("GET", f"/{index}/_doc/{quote(doc_id, safe='')}")
        return None if found is None else found["_source"]

    # -- drift made by hand --

    def delete_from_index(self, i: int) -> None:
        self.delete_doc(self.index(make_item(i)["TYPE"]["S"]), doc_id(i))

    def change_in_index(self, i: int) -> None:
        doc = to_document(make_item(i), self.shape)
        changed = doc.source.replace(f'"amount":{i}.25', '"amount":-1')
        assert changed != doc.source
        self.put_doc(doc.index, doc.id, changed)

    def delete_from_table(self, i: int) -> None:
        self.stack.ddb.delete_item(TableName=self.table, Key=key_of(i))

    def retype_in_table(self, i: int, kind: str = "Refund") -> None:
        self.stack.ddb.update_item(
            TableName=self.table,
            Key=key_of(i),
            UpdateExpression="SET #t = :t",
            ExpressionAttributeNames={"#t": "TYPE"},
            ExpressionAttributeValues={":t": {"S": kind}},
        )

    def add_ghost(self, n: int) -> str:
        ghost_id = json.dumps({"pk": f"ghost-{n}", "sk": n}, separators=(",", ":"))
        self.put_doc(self.index("Order"), ghost_id, json.dumps({"pk": f"ghost-{n}", "sk": n}))
        return ghost_id


def load(stack: Stack, tmp_path: Path, n: int, extra: list[dict[str, Any]] | None = None) -> Loaded:
    """A table of `n` items (plus `extra`), reindexed into its indices."""
    table = stack.create_table("drift", range_key="sk")
    stack.put_items(table, [make_item(i) for i in range(n)] + (extra or []))
    settings = stack.settings(table)
    summary = run_reindex(
        stack.ddb,
        stack.es,
        settings,
        list(settings.tables),
        ReindexOptions(
            segments=4,
            failures_path=tmp_path / "failures.ndjson",
            state_path=tmp_path / "state.json",
        ),
    )
    assert summary.tables[table].scanned == n + len(extra or [])
    shape = TableShape("pk", "sk", index_prefix=stack.prefix)
    return Loaded(stack, table, shape, tmp_path)


def totals(report: DriftReport, name: str) -> int:
    """A finding count summed over the indices of the (only) table."""
    return sum(getattr(i, name) for i in report.tables[0].indices.values())


def full_totals(report: DriftReport) -> dict[str, int]:
    found = {"missing": 0, "different": 0, "orphans": 0}
    for index in report.tables[0].indices.values():
        assert index.full is not None
        for name in found:
            found[name] += getattr(index.full, name)
    return found


def examples(report: DriftReport) -> list[Any]:
    return [f for i in report.tables[0].indices.values() for f in i.examples]


# --- clean ---------------------------------------------------------------------------------


def test_a_clean_table_is_clean_in_every_mode(any_stack: Stack, tmp_path: Path) -> None:
    invalid = {"pk": {"S": "bad"}, "sk": {"N": "1"}, "TYPE": {"S": "no/slash"}}
    long_key = {"pk": {"S": LONG_KEY}, "sk": {"N": "2"}, "TYPE": {"S": "Order"}}
    loaded = load(any_stack, tmp_path, 120, [invalid, long_key])
    for options in (
        {"sample": 50},
        # The estimate cannot know about the invalid item unless the sample drew it.
        {"sample": 50, "counts": "estimate", "tolerance": 1},
        {"full": True},
    ):
        report = loaded.drift(**options)
        assert not report.drifted, (options, [t.reasons for t in report.tables])
        assert report.exit_status == ExitStatus.OK
        data = json.loads(json.dumps(report.as_dict()))  # JSON-safe as it is
        table = data["tables"][0]
        assert table["drifted"] is False
        counts = {i["index"]: (i["table_count"], i["index_count"]) for i in table["indices"]}
        order, invoice = loaded.index("Order"), loaded.index("Invoice")
        assert counts[order][1] == 61 and counts[invoice][1] == 60
        if options.get("counts") != "estimate":
            assert counts[order] == (61, 61) and counts[invoice] == (60, 60)
            assert table["invalid_index_items"] == 1
            assert table["invalid_index_types"] == {"no/slash": 1}
            rcu = table["rcu"]["full_scan" if options.get("full") else "count_scan"]
            assert rcu > 0  # the output says what the scan cost
        else:
            assert table["items"] == 122 and table["items_estimated"] is True
        assert loaded.index("default") in counts  # the default index always belongs


# --- sampled checks ------------------------------------------------------------------------


def test_each_kind_of_drift_is_found_by_the_sample(any_stack: Stack, tmp_path: Path) -> None:
    loaded = load(any_stack, tmp_path, 300)
    for i in range(0, 30):
        loaded.delete_from_index(i)
    for i in range(30, 60):
        loaded.change_in_index(i)
    for i in range(60, 90):
        loaded.delete_from_table(i)
    for i in range(90, 120):
        loaded.retype_in_table(i)
    for n in range(30):
        loaded.add_ghost(n)
    # noida-db's random_score is not random (it ranks by sequence number): check every document
    # there; osmem draws a real random sample, in random order. Keep every finding as an example:
    # with the default 5 per kind and index, the first five orphans of both indices are all
    # `item_gone` in about 1 run of 200, and `type_changed` would be found but not shown.
    orphans = 100 if "opensearch" in type(any_stack.es).__module__ else 10_000
    report = loaded.drift(sample=100, orphans=orphans, examples=10_000)

    assert report.drifted and report.exit_status == ExitStatus.DIFFERS
    table = report.tables[0]
    assert totals(report, "missing") > 0
    assert totals(report, "different") > 0
    found = examples(report)
    assert {f.fields for f in found if f.kind == "different"} == {("amount",)}
    reasons = {f.reason for f in found if f.kind == "orphan"}
    assert reasons == {"item_gone", "type_changed"}
    refund = table.indices[loaded.index("Refund")]  # the new type's index does not exist yet
    assert refund.table_count == 30 and refund.index_count == 0 and not refund.exists
    assert refund.missing > 0
    assert any(r.startswith(loaded.index("Refund")) for r in table.reasons)
    assert json.loads(json.dumps(report.as_dict()))["drifted"] is True


def test_the_sampled_repair_fixes_what_it_found(any_stack: Stack, tmp_path: Path) -> None:
    loaded = load(any_stack, tmp_path, 60)
    for i in (0, 1):
        loaded.delete_from_index(i)
    for i in (2, 3):
        loaded.change_in_index(i)
    for i in (4, 5):
        loaded.delete_from_table(i)
    for i in (6, 7):
        loaded.retype_in_table(i)
    loaded.add_ghost(1)
    # A sample as large as the table sees everything, so its repair leaves nothing behind.
    report = loaded.drift(sample=1000, repair=True)
    assert report.drifted
    assert report.repair is not None
    assert report.repair.failed == 0 and report.repair.not_verified == 0
    assert report.repair.indexed == 6  # 2 missing, 2 different, 2 in their new index
    assert report.repair.deleted == 5  # 2 gone, 2 in their old index, 1 ghost
    assert report.repair.verified == 11
    after = loaded.drift(sample=1000)
    assert not after.drifted, [t.reasons for t in after.tables]
    assert not loaded.drift(full=True).drifted


def test_the_same_seed_draws_the_same_sample(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 200)
    for counts in ("exact", "estimate"):
        first = loaded.drift(sample=40, seed=7, counts=counts).tables[0]
        again = loaded.drift(sample=40, seed=7, counts=counts).tables[0]
        other = loaded.drift(sample=40, seed=8, counts=counts).tables[0]
        assert len(first.sample_keys) == 40
        assert first.sample_keys == again.sample_keys
        assert first.sample_keys != other.sample_keys
    randomly_seeded = loaded.drift(sample=10, seed=None)
    assert isinstance(randomly_seeded.seed, int)  # reported, so the run can be repeated
    repeated = loaded.drift(sample=10, seed=randomly_seeded.seed)
    assert repeated.tables[0].sample_keys == randomly_seeded.tables[0].sample_keys


@pytest.mark.parametrize("counts", ["exact", "estimate"])
def test_the_sample_is_uniform(stack: Stack, tmp_path: Path, counts: str) -> None:
    """One key range, 20% of the table, is drifted: the sample sees about 20% drifted."""
    loaded = load(stack, tmp_path, 500)
    for i in range(100):
        loaded.delete_from_index(i)
    shares = []
    for seed in (1, 2, 3):
        report = loaded.drift(sample=100, orphans=0, seed=seed, counts=counts)
        table = report.tables[0]
        assert table.sample_checked == 100
        shares.append(totals(report, "missing") / table.sample_checked)
    # Hypergeometric, n=100 of N=500: sd 0.036 per run. Loose bounds: about 4 sd per run.
    assert all(0.05 <= share <= 0.36 for share in shares), shares
    assert 0.12 <= sum(shares) / len(shares) <= 0.28, shares


class StaleCountDynamo:
    """The real client, but DescribeTable's ItemCount is wrong, as it is on AWS for hours
    after a table grows or shrinks (DynamoDB Local's is always exact)."""

    def __init__(self, client: Any, item_count: int) -> None:
        self._client = client
        self.item_count = item_count
        self.scanned_segments: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_table(self, **kwargs: Any) -> Any:
        answer = self._client.describe_table(**kwargs)
        answer["Table"]["ItemCount"] = self.item_count
        return answer

    def scan(self, **kwargs: Any) -> Any:
        self.scanned_segments.append((kwargs["Segment"], kwargs["TotalSegments"]))
        return self._client.scan(**kwargs)


@pytest.mark.parametrize("item_count", [0, 5000])
def test_segment_sampling_survives_a_wrong_item_count(
    stack: Stack, tmp_path: Path, item_count: int
) -> None:
    loaded = load(stack, tmp_path, 300)
    ddb = StaleCountDynamo(stack.ddb, item_count)
    settings = stack.settings(loaded.table)
    options = DriftOptions(segments=4, seed=1, sample=60, orphans=0, counts="estimate")
    report = run_drift(ddb, stack.es, settings, list(settings.tables), options)
    table = report.tables[0]
    assert table.sample_drawn == 60 and table.sample_checked == 60
    assert table.total_segments is not None and table.total_segments > 4
    # Never a whole-table scan at the final cut: only some of its segments were read.
    final = [s for s, total in ddb.scanned_segments if total == table.total_segments]
    assert 0 < len(set(final)) < table.total_segments


# --- full comparison and repair ---------------------------------------------------------------


def make_every_kind_of_drift(loaded: Loaded) -> None:
    """Two of each kind; `key-00004/5` move to a new type in the table only."""
    for i in (0, 1):
        loaded.delete_from_index(i)
    for i in (2, 3):
        loaded.change_in_index(i)
    for i in (6, 7):
        loaded.delete_from_table(i)
    for i in (4, 5):
        loaded.retype_in_table(i)
    loaded.add_ghost(1)
    loaded.add_ghost(2)


def test_full_finds_every_drift_exactly_and_repair_fixes_it(
    any_stack: Stack, tmp_path: Path
) -> None:
    long_key = {"pk": {"S": LONG_KEY}, "sk": {"N": "2"}, "TYPE": {"S": "Order"}}
    loaded = load(any_stack, tmp_path, 150, [long_key])
    make_every_kind_of_drift(loaded)
    # The long key's document differs too: its id is a hash, its key is in `_ddb2es_key`.
    long_doc = to_document(long_key, loaded.shape)
    loaded.put_doc(long_doc.index, long_doc.id, long_doc.source.replace('"sk":2', '"sk":2,"x":1'))

    report = loaded.drift(full=True)
    assert report.drifted and report.exit_status == ExitStatus.DIFFERS
    assert full_totals(report) == {"missing": 4, "different": 3, "orphans": 6}
    found = examples(report)
    assert {f.fields for f in found if f.kind == "different"} == {("amount",), ("x",)}
    orphans = {(f.id, f.reason) for f in found if f.kind == "orphan"}
    assert (doc_id(6), "item_gone") in orphans
    assert (doc_id(4), "type_changed") in orphans
    assert ('{"pk":"ghost-1","sk":1}', "item_gone") in orphans
    assert report.tables[0].indices[loaded.index("Refund")].full is not None

    repaired = loaded.drift(full=True, repair=True)
    result = repaired.repair
    assert result is not None
    assert (result.indexed, result.deleted, result.failed) == (7, 6, 0)
    assert result.verified == 13 and result.not_verified == 0
    by_reason = {(s.action, s.reason) for s in result.steps}
    assert by_reason == {
        ("index", "missing"),
        ("index", "different"),
        ("delete", "item_gone"),
        ("delete", "type_changed"),
    }
    assert not loaded.drift(full=True).drifted
    assert not loaded.drift(sample=1000).drifted
    assert loaded.source(loaded.index("Refund"), doc_id(4))["TYPE"] == "Refund"
    assert loaded.source(loaded.index("Order"), doc_id(4)) is None


def test_dry_run_lists_the_plan_and_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 40)
    make_every_kind_of_drift(loaded)
    report = loaded.drift(full=True, dry_run=True)
    assert report.repair is not None and report.repair.dry_run
    steps = report.repair.steps
    assert len(steps) == report.repair.planned == 12
    assert all(s.outcome == "planned" for s in steps)
    assert all(s.describe(dry_run=True).startswith("Would ") for s in steps)
    index_steps = [s for s in steps if s.action == "index"]
    assert all(s.source and json.loads(s.source)["pk"] for s in index_steps)
    assert all(s.version > 0 for s in steps)
    again = loaded.drift(full=True)
    assert full_totals(again) == full_totals(report)  # nothing was written
    assert loaded.source(loaded.index("Order"), '{"pk":"ghost-1","sk":1}') is not None


def test_a_newer_write_in_flight_is_not_overwritten(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 20)
    doc = to_document(make_item(3), loaded.shape)
    newer = doc.source.replace('"amount":3.25', '"amount":4')
    loaded.put_doc(doc.index, doc.id, newer, f"?version={10**17}&version_type=external_gte")
    report = loaded.drift(full=True, repair=True)
    assert report.repair is not None
    assert report.repair.newer_write_in_flight == 1
    assert report.repair.indexed == 0 and report.repair.failed == 0
    assert report.repair.steps[0].outcome == "newer_write_in_flight"
    assert loaded.source(doc.index, doc.id)["amount"] == 4  # left alone


# --- exit semantics, numbers, refresh, shared indices ---------------------------------------


def test_tolerance_decides_the_exit_status(stack: Stack, tmp_path: Path) -> None:
    loaded = load(stack, tmp_path, 50)
    loaded.delete_from_index(0)
    loaded.delete_from_index(2)
    strict = loaded.drift(sample=1000)
    assert strict.drifted and strict.exit_status == ExitStatus.DIFFERS
    assert any("documents for" in r for r in strict.tables[0].reasons)
    assert totals(strict, "missing") == 2
    lenient = loaded.drift(sample=1000, tolerance=2)
    assert not lenient.drifted and lenient.exit_status == ExitStatus.OK
    assert totals(lenient, "missing") == 2  # still reported, only accepted


def test_numbers_are_compared_with_every_digit(stack: Stack, tmp_path: Path) -> None:
    """osmem keeps `_source` bytes as sent (like Elasticsearch and OpenSearch)."""
    item = make_item(0)
    item["big"] = {"N": "1234567890123456789012345678.0123456789"}
    item["padded"] = {"N": "1.50"}
    table = load(stack, tmp_path, 0, [item])
    assert not table.drift(sample=10).drifted  # 1.50 and 1.5 are the same number
    doc = to_document(item, table.shape)
    table.put_doc(doc.index, doc.id, doc.source.replace("0123456789,", "0123456788,"))
    report = table.drift(sample=10)
    assert [f.fields for f in examples(report)] == [("big",)]
    assert full_totals(table.drift(full=True))["different"] == 1


def test_counts_need_a_refresh_on_elasticsearch(es_stack: Stack, tmp_path: Path) -> None:
    loaded = load(es_stack, tmp_path, 30)
    loaded.delete_from_index(1)
    stale = loaded.drift(sample=1000, refresh=False).tables[0].indices[loaded.index("Invoice")]
    assert stale.difference == 0  # the delete is not visible to _count yet
    assert stale.missing == 1  # but mget is real-time
    fresh = loaded.drift(sample=1000, refresh=True).tables[0].indices[loaded.index("Invoice")]
    assert fresh.difference == -1


def test_shared_indices_and_other_tables_documents(stack: Stack, tmp_path: Path) -> None:
    """Three configured tables feed one index. Checked together they are clean. Checked alone,
    the others' documents are never orphans, whatever their keys look like, and a repair
    leaves them alone: another key shape is foreign at once, the same key shape is looked up in
    the other configured tables first."""
    first = load(stack, tmp_path, 30)
    mirror = stack.create_table("mirror", range_key="sk")  # the same key schema
    stack.put_items(mirror, [make_item(100 + i, "Order") for i in range(6)])
    devices = stack.create_table("devices", hash_key="device")  # another key schema
    stack.put_items(devices, [{"device": {"S": f"d{i}"}, "TYPE": {"S": "Order"}} for i in range(8)])
    settings = stack.settings(first.table, mirror, devices)
    run_reindex(
        stack.ddb,
        stack.es,
        settings,
        [settings.table(mirror), settings.table(devices)],
        ReindexOptions(segments=2, failures_path=None, state_path=tmp_path / "s2.json"),
    )
    order_index = first.index("Order")

    def check(tables: list[str], **options: Any) -> DriftReport:
        values: dict[str, Any] = {"segments": 4, "seed": 1, "refresh": True, "sample": 1000}
        values.update(options)
        selected = [settings.table(t) for t in tables]
        return run_drift(stack.ddb, stack.es, settings, selected, DriftOptions(**values))

    for full in (False, True):
        together = check([devices, mirror, first.table], full=full)
        assert not together.drifted, [t.reasons for t in together.tables]
        order = together.tables[2].indices[order_index]
        assert order.shared_with == [devices, mirror] and order.index_count == 29
        assert order.foreign == 0 and order.orphans == 0

    for full in (False, True):
        alone = check([first.table], repair=True, full=full)
        order = alone.tables[0].indices[order_index]
        assert order.foreign == 14, full  # 8 by their key shape, 6 found in `mirror`
        assert order.orphans == 0 and (order.full is None or order.full.orphans == 0)
        assert alone.repair is not None and alone.repair.deleted == 0
        assert order.maybe_shared_with == [mirror, devices]
        # Fed by tables outside the run: not comparable, and not drift (issue 10.6).
        assert not order.comparable and order.not_comparable_tables == [devices, mirror]
        assert order.index_count == 29 and order.difference is None
        assert not alone.drifted, alone.tables[0].reasons
    assert stack.es.count(index=order_index)["count"] == 29

    # An orphan in an index that only the tables of this key shape can feed is found once
    # (`mirror` has the same key attributes, so the index is in its scope too: ids alone cannot
    # tell the two tables apart, which is what `doctor` warns about).
    invoice_index = first.index("Invoice")
    first.put_doc(invoice_index, '{"pk":"ghost-9","sk":9}', '{"pk":"ghost-9","sk":9}')
    report = check([devices, mirror, first.table], full=True)
    found = [t.indices[invoice_index] for t in report.tables if invoice_index in t.indices]
    assert sum(i.full.orphans for i in found if i.full is not None) == 1
    assert invoice_index not in report.tables[0].indices  # devices: another key shape


def test_options_are_checked() -> None:
    for bad in (
        DriftOptions(counts="guess"),
        DriftOptions(sample=-1),
        DriftOptions(tolerance=-1),
        DriftOptions(full=True, counts="estimate"),
        DriftOptions(segments=0),
    ):
        with pytest.raises(ConfigError):
            bad.validate()


def test_documents_compare_by_value_and_name_the_fields_that_differ() -> None:
    assert canonical({"b": [Decimal("1.50"), 2], "a": None}) == canonical(
        {"a": None, "b": [1.5, 2]}
    )
    expected = {"a": 1, "m": {"x": "1", "y": [1, 2]}, "gone": True}
    actual = {"a": Decimal("1.0"), "m": {"x": "2", "y": [1, 2]}, "new": 1}
    assert differing_fields(expected, actual) == ["gone", "m.x", "new"]


def test_numbers_keep_all_38_digits_when_compared() -> None:
    """DynamoDB numbers carry 38 significant digits; Decimal's default context has 28."""
    a = Decimal("12345678901234567890123456789012345671")
    b = Decimal("12345678901234567890123456789012345672")
    assert canonical(a) != canonical(b)
    assert differing_fields({"n": a}, {"n": b}) == ["n"]
    assert number_text(Decimal("1.50E+2")) == "150" and number_text(Decimal("-0.0")) == "0"


# --- the command ---------------------------------------------------------------------------


def test_drift_command_exit_codes_json_and_report(stack: Stack, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ddb2es_cli.cli import cli

    loaded = load(stack, tmp_path, 40)
    config = str(stack.config_file(tmp_path, loaded.table))
    args = ["--config", config, "--json", "drift", loaded.table, "--sample", "40", "--seed", "1"]
    clean = CliRunner().invoke(cli, args, env=stack.cli_env())
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["tables"][0]["drifted"] is False
    loaded.delete_from_index(3)
    report = tmp_path / "report.json"
    found = CliRunner().invoke(cli, [*args, "--report", str(report)], env=stack.cli_env())
    assert found.exit_code == 3, found.output
    assert json.loads(report.read_text())["tables"][0]["drifted"] is True
    refused = CliRunner().invoke(cli, [*args, "--repair"], env=stack.cli_env())
    assert refused.exit_code == 2 and "--yes" in refused.output
    repaired = CliRunner().invoke(cli, [*args, "--repair", "--yes"], env=stack.cli_env())
    # Drift was found, repaired and read back: nothing remains (issue 10.6).
    assert repaired.exit_code == 0, repaired.output
    assert json.loads(repaired.stdout)["drifted"] is True
    assert json.loads(repaired.stdout)["drift_remains"] is False
    assert CliRunner().invoke(cli, args, env=stack.cli_env()).exit_code == 0


def test_a_repair_the_cluster_refuses_goes_to_the_failures_file_with_exit_4(
    stack: Stack, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from ddb2es_cli.cli import cli

    loaded = load(stack, tmp_path, 10)  # `amount` is mapped as a number now
    refused = {**make_item(100, "Order"), "amount": {"S": "not a number"}}
    stack.put_items(loaded.table, [refused])
    config = str(stack.config_file(tmp_path, loaded.table))
    failures = tmp_path / "drift-failures.ndjson"
    args = ["--config", config, "--json", "drift", loaded.table, "--sample", "100", "--seed", "1"]
    args += ["--repair", "--yes", "--failures", str(failures)]
    result = CliRunner().invoke(cli, args, env=stack.cli_env())
    assert result.exit_code == ExitStatus.PARTIAL, result.output
    repair = json.loads(result.stdout)["repair"]
    assert repair["failed"] == 1 and repair["failures_path"] == str(failures)
    (line,) = [json.loads(text) for text in failures.read_text().splitlines()]
    assert line["table"] == loaded.table
    assert line["key"] == {"pk": "key-00100", "sk": 2}
    assert (line["index"], line["id"]) == (loaded.index("Order"), doc_id(100))
    assert line["reason"].startswith("400 ") and "parse" in line["reason"]
