"""Streams without old images are refused (issue 9, item 3): a delete never touches another
table's documents. The handler, the runner, the CLI and doctor, on DynamoDB Local and osmem."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.doctor import run_doctor
from ddb2es_cli.errors import ConfigError
from ddb2es_cli.stream import apply_batch, batch_item_failures
from tests.conftest import Stack
from tests.test_stream import ID, KEY, config, item, record, run_once, source


def keys_only(event: str, seq: int) -> dict[str, object]:
    found = record(event, KEY, seq, 1001)
    found["dynamodb"]["StreamViewType"] = "KEYS_ONLY"  # type: ignore[index]
    return found


def test_a_delete_without_old_image_never_touches_another_tables_document(stack: Stack) -> None:
    # Another table's item with the same key lives in another index of the same prefix.
    stack.es.index(index=f"{stack.prefix}invoice", id=ID, body={"pk": "a"}, refresh=True)
    records = [
        record("INSERT", {"pk": {"S": "b"}}, 1, 1000, new=item("b")),
        keys_only("REMOVE", 2),
        keys_only("REMOVE", 3),
    ]
    result = apply_batch(stack.es, records, config(stack))
    assert result.refused is not None and "NEW_AND_OLD_IMAGES" in result.refused
    assert batch_item_failures(records, result) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert source(stack, "invoice", ID) == {"pk": "a"}
    assert source(stack, "order", '{"pk":"b"}') is not None  # the records before it applied


def test_a_record_missing_its_old_image_is_refused_even_without_a_view_type(
    stack: Stack,
) -> None:
    bare = record("REMOVE", KEY, 4, 1001)
    del bare["dynamodb"]["StreamViewType"]
    result = apply_batch(stack.es, [bare], config(stack))
    assert result.refused is not None and result.first_failed == 0


def test_the_lambda_logs_the_refusal_once_per_invocation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ddb2es_cli.stream as stream_module

    monkeypatch.setattr(stream_module, "_CLIENT", None)
    monkeypatch.setenv("DDB2ES_ES_URL", stack.es_url)
    monkeypatch.setenv("DDB2ES_ES_AUTH", "none")
    monkeypatch.setenv("DDB2ES_INDEX_PREFIX", stack.prefix)
    event = {"Records": [keys_only("REMOVE", n) for n in range(5, 9)]}
    with caplog.at_level(logging.INFO, logger="ddb2es.stream"):
        answer = stream_module.lambda_handler(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "5"}]}
    refusals = [r for r in caplog.records if "NEW_AND_OLD_IMAGES" in r.getMessage()]
    assert len(refusals) == 1 and "4 records" in refusals[0].getMessage()


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE"])
def test_the_runner_refuses_other_views_at_start(stack: Stack, tmp_path: Path, view: str) -> None:
    table = stack.create_table(f"view-{view.lower().replace('_', '-')}", stream=True, view=view)
    stack.put_items(table, [item("k")])
    with pytest.raises(ConfigError, match=f"{view} is not supported.*NEW_AND_OLD_IMAGES"):
        run_once(stack, table, tmp_path)


def test_cli_and_doctor_refuse_a_keys_only_stream(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    table = stack.create_table("keysonly", stream=True, view="KEYS_ONLY")
    good = stack.create_table("good", stream=True)
    config_file = stack.config_file(tmp_path, table, good)
    runner = CliRunner()
    done = runner.invoke(
        cli,
        ["--config", str(config_file), "stream", table, "--until-caught-up"],
        env=stack.cli_env(),
    )
    assert done.exit_code == 2, done.output
    (line,) = [x for x in done.output.splitlines() if x.strip()]
    assert line.startswith("Error: ") and "KEYS_ONLY" in line and "NEW_AND_OLD_IMAGES" in line
    report = run_doctor(stack.settings(table, good), tmp_path / "state")
    checks = {c.name: c for c in report.checks}
    assert not checks[f"table {table}"].ok
    assert "KEYS_ONLY is not supported" in checks[f"table {table}"].detail
    assert checks[f"table {good}"].ok and not report.ok
