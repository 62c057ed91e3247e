"""`reindex --retry-failures`: documents that failed get another go, from a fresh read."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ddb2es_cli.cli import cli
from tests.conftest import Stack


def test_retry_failures_writes_what_is_fixed_and_keeps_what_still_fails(
    stack: Stack, tmp_path: Path
) -> None:
    table = stack.create_table("retry", hash_key="id", hash_type="N")
    index = f"{stack.prefix}thing"
    stack.es.indices.create(index=index, body={"mappings": {"properties": {"n": {"type": "long"}}}})
    items = [{"id": {"N": str(k)}, "TYPE": {"S": "thing"}, "n": {"N": str(k)}} for k in range(10)]
    for k in (3, 4, 5):
        items[k]["n"] = {"S": f"not a number {k}"}  # refused by the mapping
    stack.put_items(table, items)
    config = stack.config_file(tmp_path, table)
    failures = tmp_path / "failures.ndjson"
    runner = CliRunner()
    args = ["--config", str(config), "reindex", table, "--failures", str(failures), "--quiet"]
    first = runner.invoke(cli, args, env=stack.cli_env())
    assert first.exit_code == 4, first.output
    assert sorted(json.loads(line)["key"]["id"] for line in failures.read_text().splitlines()) == [
        3,
        4,
        5,
    ]
    # The operator fixes item 3, deletes item 4 and leaves item 5 as it is.
    stack.ddb.put_item(
        TableName=table, Item={"id": {"N": "3"}, "TYPE": {"S": "thing"}, "n": {"N": "33"}}
    )
    stack.ddb.delete_item(TableName=table, Key={"id": {"N": "4"}})
    retry = ["--config", str(config), "--json", "reindex", "--retry-failures", str(failures)]
    second = runner.invoke(cli, retry, env=stack.cli_env())
    assert second.exit_code == 4, second.output
    summary = json.loads(second.stdout)
    assert (summary["retried"], summary["written"], summary["gone"], summary["still_failing"]) == (
        3,
        1,
        1,
        1,
    )
    left = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [f["key"] for f in left] == [{"id": 5}] and "n" in left[0]["reason"]
    stack.es.indices.refresh(index=index)
    assert stack.es.get(index=index, id='{"id":3}')["_source"]["n"] == 33
    assert not stack.es.exists(index=index, id='{"id":4}')
    # Once item 5 is fixed too, the file empties and the run exits 0.
    stack.ddb.put_item(
        TableName=table, Item={"id": {"N": "5"}, "TYPE": {"S": "thing"}, "n": {"N": "55"}}
    )
    third = runner.invoke(cli, retry, env=stack.cli_env())
    assert third.exit_code == 0, third.output
    assert failures.read_text() == ""


def test_a_file_that_is_no_failures_file_is_one_clear_error(stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"table": "t"}\n')
    result = CliRunner().invoke(cli, ["reindex", "--retry-failures", str(bad)], env=stack.cli_env())
    assert result.exit_code == 2
    assert "line 1" in result.stderr and "Traceback" not in result.output
