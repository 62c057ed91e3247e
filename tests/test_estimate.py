"""Estimates of a full scan: the pure arithmetic, then `reindex`/`reload --dry-run --json` against
DynamoDB Local (whose DescribeTable figures are current, unlike the service's 6-hourly ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.estimate import (
    STALENESS_NOTE,
    TableSize,
    estimate,
    estimate_scan,
    human_bytes,
    human_duration,
    human_number,
    scan_pages,
    scan_rcu,
)
from tests.conftest import Stack
from tests.test_reindex import sample_items

GB = 1024**3


def test_half_a_read_unit_per_started_4_kb() -> None:
    assert scan_rcu(0) == 0
    assert scan_rcu(1) == 0.5
    assert scan_rcu(4096) == 0.5
    assert scan_rcu(4097) == 1.0
    assert scan_rcu(GB) == GB / 4096 / 2  # 131,072 RCU for 1 GB


def test_pages_end_at_the_item_limit_or_at_one_megabyte() -> None:
    # 10,000 items of 1 KB in 250-item pages: the item limit ends pages first.
    assert scan_pages(10_000, 10_000 * 1024, segments=4, page_limit=250) == 40 + 4
    # 1 GB of 400 KB items: the 1 MB read limit ends pages first.
    assert scan_pages(2621, GB, segments=4, page_limit=250) == 1024 + 4
    # No page limit (DynamoDB's own 1 MB pages).
    assert scan_pages(10_000, 10 * 1024 * 1024, segments=8, page_limit=None) == 10 + 8
    # An empty table still answers one page per segment.
    assert scan_pages(0, 0, segments=4, page_limit=250) == 4


def test_the_upper_bound_adds_half_a_unit_per_page() -> None:
    e = estimate_scan(10_000, 10_000 * 1024, segments=4, page_limit=250, max_rcu=None)
    assert e.rcu == 1250.0  # 10,000 KB / 4 KB / 2
    assert e.rcu_max == 1250.0 + 0.5 * 44
    assert e.min_duration_s is None


def test_the_minimum_duration_is_the_capacity_over_the_cap() -> None:
    e = estimate_scan(1_000_000, GB, segments=16, page_limit=250, max_rcu=500)
    assert e.min_duration_s == pytest.approx(131_072 / 500, abs=0.1)


def test_totals_add_up_and_one_cap_covers_every_table() -> None:
    tables = [TableSize("a", 100, 400 * 1024), TableSize("b", 300, 4 * 1024 * 1024)]
    est = estimate(tables, segments=4, page_limit=250, max_rcu=10)
    a, b = est.tables["a"], est.tables["b"]
    assert a.rcu == 50 and b.rcu == 512
    assert est.total.items == 400 and est.total.size_bytes == 400 * 1024 + 4 * 1024 * 1024
    assert est.total.rcu == 562 and est.total.rcu_max == a.rcu_max + b.rcu_max
    assert est.total.pages == a.pages + b.pages
    assert est.total.min_duration_s == 56.2
    data = est.as_dict()
    assert [t["table"] for t in data["tables"]] == ["a", "b"]
    assert data["note"] == STALENESS_NOTE and data["max_rcu"] == 10
    lines = est.lines()
    assert lines[0].startswith("Estimate a: ~100 items, 400.0 KB; a full scan reads ~50 RCU")
    assert lines[2].startswith("Estimate total: ~400 items")
    assert "at --max-rcu 10: at least 57s" in lines[2]  # rounded up
    assert lines[-1] == STALENESS_NOTE


def test_one_table_has_no_total_line_and_no_cap_no_duration() -> None:
    lines = estimate([TableSize("a", 1, 10)], 1, 250, None).lines()
    assert len(lines) == 2 and "max-rcu" not in lines[0]


def test_human_figures() -> None:
    assert human_bytes(10) == "10 B"
    assert human_bytes(1536) == "1.5 KB"
    assert human_bytes(GB) == "1.0 GB"
    assert human_bytes(5 * 1024**5) == "5120.0 TB"
    assert human_number(6_291_456.0) == "6,291,456"
    assert human_number(568.5) == "568.5"
    assert human_duration(0.2) == "1s"
    assert human_duration(61) == "1m 01s"
    assert human_duration(262.2) == "4m 23s"
    assert human_duration(3 * 3600 + 5) == "3h 00m 05s"


def _invoke(stack: Stack, tmp_path: Path, *args: str) -> dict[str, object]:
    config = str(stack.config_file(tmp_path, *[a for a in args if a.startswith(stack.prefix)]))
    result = CliRunner().invoke(cli, ["--config", config, *args], env=stack.cli_env())
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def _seeded(stack: Stack, name: str, count: int) -> str:
    table = stack.create_table(name)
    stack.put_items(table, sample_items(count, types=("e",)))
    size = stack.ddb.describe_table(TableName=table)["Table"]["TableSizeBytes"]
    assert size > 0, "DynamoDB Local reports the table size at once"
    return table


def _check(data: dict[str, object], stack: Stack, tables: dict[str, int]) -> None:
    est = data["estimate"]
    assert isinstance(est, dict)
    by_name = {t["table"]: t for t in est["tables"]}
    assert set(by_name) == set(tables)
    for name, count in tables.items():
        size = stack.ddb.describe_table(TableName=name)["Table"]["TableSizeBytes"]
        row = by_name[name]
        assert row["items"] == count and row["size_bytes"] == size
        assert row["rcu"] == scan_rcu(size)
        assert row["rcu_max"] > row["rcu"]
        assert row["min_duration_s"] == round(row["rcu"] / 2, 1)
    assert est["total"]["items"] == sum(tables.values())
    assert est["max_rcu"] == 2
    assert "6 hours" in est["note"]


def test_reindex_dry_run_prints_the_estimate(stack: Stack, tmp_path: Path) -> None:
    a, b = _seeded(stack, "esta", 30), _seeded(stack, "estb", 12)
    data = _invoke(stack, tmp_path, "--json", "reindex", a, b, "--dry-run", "--max-rcu", "2")
    _check(data, stack, {a: 30, b: 12})
    assert stack.indices() == []
    text = CliRunner().invoke(
        cli,
        ["--config", str(tmp_path / "ddb2es.toml"), "reindex", a, "--dry-run", "--max-rcu", "2"],
        env=stack.cli_env(),
    )
    assert text.exit_code == 0, text.output
    assert f"Estimate {a}: ~30 items" in text.output and "at least" in text.output
    assert "6 hours" in text.output


def test_reload_dry_run_prints_the_estimate(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # reload keeps its state under ./.ddb2es
    table = _seeded(stack, "estr", 20)
    args = ("reload", table, "--dry-run", "--max-rcu", "2")
    data = _invoke(stack, tmp_path, "--json", *args)
    _check(data, stack, {table: 20})
    assert data["strategy"] == "blue-green"  # what reload printed before is still there
    assert stack.indices() == []
    config = str(tmp_path / "ddb2es.toml")
    text = CliRunner().invoke(cli, ["--config", config, *args], env=stack.cli_env())
    assert text.exit_code == 0, text.output
    assert f"Estimate {table}: ~20 items" in text.output and "6 hours" in text.output


def _consumed(stack: Stack, table: str, segments: int, limit: int | None) -> tuple[float, int]:
    """Read capacity and pages a full parallel scan is charged, as DynamoDB reports it."""
    used, pages = 0.0, 0
    for segment in range(segments):
        request: dict[str, object] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": segments,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if limit:
            request["Limit"] = limit
        while True:
            page = stack.ddb.scan(**request)
            pages += 1
            used += page["ConsumedCapacity"]["CapacityUnits"]
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return used, pages


def test_the_estimate_brackets_what_a_scan_is_charged(stack: Stack) -> None:
    """DynamoDB Local charges a Scan like the service: 0.5 RCU per 4 KB, rounded up per page."""
    table = stack.create_table("charged")
    stack.put_items(table, sample_items(1200))
    described = stack.ddb.describe_table(TableName=table)["Table"]
    for segments, limit in ((1, None), (4, 250), (16, 100)):
        e = estimate_scan(
            described["ItemCount"], described["TableSizeBytes"], segments, limit, None
        )
        used, pages = _consumed(stack, table, segments, limit)
        assert e.rcu <= used <= e.rcu_max, (segments, limit, e, used)
        assert pages <= e.pages, (segments, limit, e, pages)
