"""`ddb2es doctor` against the real local servers: what it names when all is well, and that a
failed check never hides the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from elasticsearch import Elasticsearch

from ddb2es_cli.cli import cli
from ddb2es_cli.clients import detect_engine
from ddb2es_cli.config import DynamoSettings, SearchSettings, Settings
from ddb2es_cli.doctor import run_doctor
from ddb2es_cli.errors import ExitStatus
from ddb2es_cli.template import apply_template, template_spec
from tests.conftest import Stack
from tests.servers import free_port

pytestmark = pytest.mark.usefixtures("clean_env")


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def doctor(stack: Stack, *args: str, env: dict[str, str] | None = None) -> Result:
    full_env = {**stack.cli_env(), "COLUMNS": "300", **(env or {})}
    return CliRunner().invoke(cli, [*args, "doctor"], env=full_env)


def doctor_json(stack: Stack, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, [*args, "doctor", "--json"], env={**stack.cli_env(), **(env or {})}
    )
    assert result.exit_code in (0, 1), result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["ok"] is (result.exit_code == 0)
    return report


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def configured(stack: Stack, directory: Path) -> list[str]:
    """A config naming this test's template, with the template installed."""
    config = stack.config_file(directory)
    apply_template(
        stack.es, detect_engine(stack.settings().search), template_spec(stack.settings())
    )
    return ["--config", str(config)]


def test_both_servers_pass_and_are_named(any_stack: Stack, tmp_path: Path) -> None:
    expected = {
        "opensearch": "opensearch 3.8.0 via opensearch-py",
        "elasticsearch": "elasticsearch 8.",
    }
    engine = "elasticsearch" if isinstance(any_stack.es, Elasticsearch) else "opensearch"
    args = [*configured(any_stack, tmp_path), "doctor", "--json"]
    result = CliRunner().invoke(cli, args, env=any_stack.cli_env())
    assert result.exit_code == ExitStatus.OK, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["ok"] is True
    found = checks(report)
    assert found["dynamodb"] == {
        "name": "dynamodb",
        "ok": True,
        "detail": f"{any_stack.dynamodb_url} answers",
    }
    detail = found["search"]["detail"]
    assert found["search"]["ok"]
    assert detail.startswith(f"{any_stack.es_url}: {expected[engine]}")
    client = "opensearch-py" if engine == "opensearch" else "elasticsearch-py"
    assert f"via {client}, auth none, cluster status " in detail
    assert found["template"]["detail"].endswith(f"/{any_stack.template_name} matches")
    assert all(c["ok"] for c in report["checks"])


def test_missing_or_changed_template_fails_with_the_way_out(
    any_stack: Stack, tmp_path: Path
) -> None:
    config = ["--config", str(any_stack.config_file(tmp_path))]
    missing = checks(doctor_json(any_stack, *config))["template"]
    assert not missing["ok"]
    assert f"/{any_stack.template_name} missing" in missing["detail"]
    assert "ddb2es template apply" in missing["detail"]

    settings = any_stack.settings()
    engine = detect_engine(settings.search)
    try:
        apply_template(any_stack.es, engine, template_spec(settings, replicas=3))
        report = doctor_json(any_stack, *config)
        assert report["ok"] is False
        changed = checks(report)["template"]
        assert not changed["ok"]
        assert "differs in 1 field:" in changed["detail"], changed
        assert checks(report)["search"]["ok"]
    finally:
        any_stack.es.indices.delete_index_template(name=any_stack.template_name)


def test_text_output_names_engine_version_client_and_auth(any_stack: Stack, tmp_path: Path) -> None:
    result = doctor(any_stack, *configured(any_stack, tmp_path), "--es-api-key", "id:key")
    assert result.exit_code == ExitStatus.OK, result.output
    text = result.stdout
    for word in ("dynamodb", "search", "ok", any_stack.es_url, "auth api-key", "via "):
        assert word in text, text
    assert ("opensearch 3.8.0" in text) or ("elasticsearch 8." in text), text
    assert "FAIL" not in text


def test_configured_table_shows_its_keys(tmp_path: Path, stack: Stack) -> None:
    composite = stack.create_table("orders", range_key="sk", stream=True)
    simple = stack.create_table("customers", hash_key="id")
    stack.put_items(simple, [{"id": {"S": f"c{i}"}} for i in range(3)])
    config = stack.config_file(tmp_path, composite, simple)
    found = checks(doctor_json(stack, "--config", str(config)))
    assert found[f"table {composite}"]["ok"]
    detail = found[f"table {composite}"]["detail"]
    assert detail.startswith("keys pk (HASH), sk (RANGE);")
    assert "stream NEW_AND_OLD_IMAGES" in detail
    assert found[f"table {simple}"] == {
        "name": f"table {simple}",
        "ok": True,
        "detail": found[f"table {simple}"]["detail"],
    }
    assert found[f"table {simple}"]["detail"].startswith("keys id (HASH);")
    assert "stream no stream" in found[f"table {simple}"]["detail"]


def test_missing_table_and_unreachable_search_list_every_check(
    tmp_path: Path, stack: Stack
) -> None:
    present = stack.create_table("present")
    missing = stack.table_name("missing")
    # The missing table first: the table after it must still be checked.
    config = stack.config_file(tmp_path, missing, present)
    dead = closed_url()
    args = ["--config", str(config), "--es-url", dead]

    report = doctor_json(stack, *args)
    assert report["ok"] is False
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == ["dynamodb", f"table {missing}", f"table {present}", "search"]
    found = checks(report)
    assert found["dynamodb"]["ok"]
    assert found[f"table {present}"]["ok"]
    assert not found[f"table {missing}"]["ok"]
    assert "\n" not in found[f"table {missing}"]["detail"]
    assert "ResourceNotFoundException" in found[f"table {missing}"]["detail"]
    assert not found["search"]["ok"]
    assert found["search"]["detail"].startswith(f"{dead} (auth none): cannot reach {dead}")
    assert "Connection refused" in found["search"]["detail"]

    text = doctor(stack, *args)
    assert text.exit_code == ExitStatus.ERROR
    assert text.stdout.count("FAIL") == 2, text.stdout
    for name in ("dynamodb", f"table {present}", f"table {missing}", "search"):
        assert name in text.stdout


def test_missing_table_alone_exits_1(tmp_path: Path, any_stack: Stack) -> None:
    config = any_stack.config_file(tmp_path, any_stack.table_name("absent"))
    result = CliRunner().invoke(
        cli, ["--config", str(config), "doctor", "--json"], env=any_stack.cli_env()
    )
    assert result.exit_code == ExitStatus.ERROR
    found = checks(json.loads(result.stdout))
    assert not found[f"table {any_stack.table_name('absent')}"]["ok"]
    assert found["dynamodb"]["ok"] and found["search"]["ok"]


def test_no_aws_region_still_checks_search(stack: Stack) -> None:
    """DynamoDB on AWS without a region fails its check; search is checked all the same."""
    env = {"DDB2ES_ES_URL": stack.es_url}  # no endpoint, no region
    result = CliRunner().invoke(cli, ["doctor", "--json"], env=env)
    assert result.exit_code == ExitStatus.ERROR, result.output
    found = checks(json.loads(result.stdout))
    assert not found["dynamodb"]["ok"]
    assert "region" in found["dynamodb"]["detail"]
    assert found["search"]["ok"]


def test_elasticsearch_8_refuses_sigv4(es_stack: Stack) -> None:
    env = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    report = doctor_json(es_stack, "--es-aws-sigv4", env=env)
    search = checks(report)["search"]
    assert not search["ok"]
    assert "not elasticsearch 8." in search["detail"]
    assert report["ok"] is False


def test_run_doctor_as_a_library(tmp_path: Path, stack: Stack) -> None:
    table = stack.create_table("lib", range_key="sk")
    settings = stack.settings(table)
    apply_template(stack.es, detect_engine(settings.search), template_spec(settings))
    report = run_doctor(settings, state_dir=tmp_path / "state")
    assert report.ok, report.as_dict()
    assert [c.name for c in report.checks][:3] == ["dynamodb", f"table {table}", "search"]
    assert report.checks[1].detail.startswith("keys pk (HASH), sk (RANGE);")

    broken = Settings(
        dynamodb=DynamoSettings(endpoint=stack.dynamodb_url),
        search=SearchSettings(url=closed_url()),
        tables=(settings.tables[0], settings.table(stack.table_name("gone"))),
    )
    report = run_doctor(broken, state_dir=tmp_path / "state")
    assert not report.ok
    assert [c.ok for c in report.checks][:4] == [True, True, False, False]
    assert report.as_dict()["ok"] is False
