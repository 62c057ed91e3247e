"""Settings: flags > environment > ddb2es.toml > defaults, tables and their overrides, auth
inference, and configuration errors as one line with exit code 2.

Precedence is checked through the real CLI where a command shows the result (`doctor --json`
names the search URL and the DynamoDB endpoint or region; `reindex --dry-run --json` the
per-table settings), against the real local servers; the rest calls `load_settings` directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ddb2es_cli.cli import cli
from ddb2es_cli.config import (
    SearchSettings,
    Settings,
    TableSettings,
    load_settings,
)
from ddb2es_cli.errors import ConfigError, ExitStatus
from ddb2es_cli.transform import DEFAULT_OVERLAP_MS
from tests.conftest import Stack
from tests.servers import free_port

pytestmark = pytest.mark.usefixtures("clean_env")


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def doctor_json(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = invoke([*args, "doctor", "--json"], env)
    assert result.exit_code in (0, 1), result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["checks"] if c["name"] == name)
    return found


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, nothing on stdout, no traceback; with
    --json, that line is `{"error": ..., "exit_code": 2}` on stdout instead."""
    assert result.exit_code == ExitStatus.USAGE, (result.output, result.exception)
    if result.stdout:
        answer = json.loads(result.stdout)
        assert answer["exit_code"] == ExitStatus.USAGE and result.stderr == ""
        for fragment in fragments:
            assert fragment in answer["error"]
        return
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- precedence through the CLI -----------------------------------------------------------------


def test_search_url_flag_beats_environment_beats_file(
    tmp_path: Path, dynamodb_url: str, opensearch_url: str, elasticsearch_url: str
) -> None:
    # Only the value that should win answers as OpenSearch; the file's URL is a closed port.
    config = write(tmp_path / "cfg.toml", f'[search]\nurl = "{closed_url()}"\n')
    common = ["--config", str(config), "--dynamodb-endpoint", dynamodb_url]
    env = {"DDB2ES_ES_URL": elasticsearch_url}

    flag = check(doctor_json([*common, "--es-url", opensearch_url], env), "search")
    assert flag["ok"], flag
    assert flag["detail"].startswith(f"{opensearch_url}: opensearch 3.8.0 via opensearch-py")

    from_env = check(doctor_json(common, env), "search")
    assert from_env["ok"], from_env
    assert from_env["detail"].startswith(f"{elasticsearch_url}: elasticsearch 8.")
    assert "via elasticsearch-py" in from_env["detail"]

    file_only = write(tmp_path / "file.toml", f'[search]\nurl = "{opensearch_url}"\n')
    from_file = check(
        doctor_json(["--config", str(file_only), "--dynamodb-endpoint", dynamodb_url]), "search"
    )
    assert from_file["ok"], from_file
    assert from_file["detail"].startswith(f"{opensearch_url}: opensearch 3.8.0")


def test_search_url_default(dynamodb_url: str) -> None:
    report = doctor_json(["--dynamodb-endpoint", dynamodb_url])
    assert check(report, "search")["detail"].startswith("http://localhost:9200")


def test_dynamodb_endpoint_flag_beats_environment_beats_file(
    tmp_path: Path, dynamodb_url: str, opensearch_url: str
) -> None:
    port = dynamodb_url.rsplit(":", 1)[1]
    by_name = f"http://localhost:{port}"  # the same server under a second spelling
    config = write(
        tmp_path / "cfg.toml",
        f'[dynamodb]\nendpoint = "{closed_url()}"\n[search]\nurl = "{opensearch_url}"\n',
    )
    env = {"DDB2ES_DYNAMODB_ENDPOINT": dynamodb_url}

    flag = doctor_json(["--config", str(config), "--dynamodb-endpoint", by_name], env)
    assert check(flag, "dynamodb") == {
        "name": "dynamodb",
        "ok": True,
        "detail": f"{by_name} answers",
    }

    from_env = doctor_json(["--config", str(config)], env)
    assert check(from_env, "dynamodb")["detail"] == f"{dynamodb_url} answers"
    assert check(from_env, "dynamodb")["ok"]

    file_only = write(
        tmp_path / "file.toml",
        f'[dynamodb]\nendpoint = "{by_name}"\n[search]\nurl = "{opensearch_url}"\n',
    )
    from_file = doctor_json(["--config", str(file_only)])
    assert check(from_file, "dynamodb")["detail"] == f"{by_name} answers"


def test_region_flag_beats_environment_beats_file(tmp_path: Path, opensearch_url: str) -> None:
    """With no endpoint doctor names the AWS region; without credentials it stops there."""
    config = write(
        tmp_path / "cfg.toml",
        f'[dynamodb]\nregion = "eu-west-1"\n[search]\nurl = "{opensearch_url}"\n',
    )
    base = ["--config", str(config)]
    env = {"AWS_REGION": "eu-west-2", "AWS_DEFAULT_REGION": "eu-central-1"}

    def where(args: list[str], env: dict[str, str] | None) -> str:
        detail: str = check(doctor_json(args, env), "dynamodb")["detail"]
        return detail.split(":")[0]

    assert where([*base, "--region", "eu-west-3"], env) == "AWS (eu-west-3)"
    assert where(base, env) == "AWS (eu-west-2)"
    assert where(base, {"AWS_DEFAULT_REGION": "eu-central-1"}) == "AWS (eu-central-1)"
    assert where(base, None) == "AWS (eu-west-1)"
    assert where(["--es-url", opensearch_url], None) == "AWS (default region)"


def test_config_flag_beats_config_environment_beats_cwd_file(
    tmp_path: Path, dynamodb_url: str, opensearch_url: str, elasticsearch_url: str
) -> None:
    flag_file = write(tmp_path / "flag.toml", f'[search]\nurl = "{opensearch_url}"\n')
    env_file = write(tmp_path / "env.toml", f'[search]\nurl = "{elasticsearch_url}"\n')
    write(tmp_path / "ddb2es.toml", f'[search]\nurl = "{closed_url()}"\n')
    common = ["--dynamodb-endpoint", dynamodb_url]
    env = {"DDB2ES_CONFIG": str(env_file)}

    flag = doctor_json([*common, "--config", str(flag_file)], env)
    assert check(flag, "search")["detail"].startswith(f"{opensearch_url}: opensearch")
    from_env = doctor_json(common, env)
    assert check(from_env, "search")["detail"].startswith(f"{elasticsearch_url}: elasticsearch")
    cwd = doctor_json(common)  # ./ddb2es.toml: a closed port
    assert not check(cwd, "search")["ok"]
    assert not cwd["ok"]


def test_per_table_settings_through_reindex_dry_run(tmp_path: Path, stack: Stack) -> None:
    orders = stack.create_table("orders", range_key="sk")
    events = stack.create_table("events")
    unconfigured = stack.create_table("other")
    config = write(
        tmp_path / "ddb2es.toml",
        "[defaults]\n"
        'type_attribute = "kind"\n'
        'default_type = "misc"\n'
        f'index_prefix = "{stack.prefix}"\n'
        f'[[tables]]\nname = "{orders}"\n'
        f'[[tables]]\nname = "{events}"\n'
        'type_attribute = "TYPE"\n'
        'index_prefix = "events-"\n'
        'default_type = "Unknown"\n',
    )
    args = ["--config", str(config), "reindex", "--dry-run", "--json"]

    result = invoke([*args, "--all"], stack.cli_env())
    assert result.exit_code == 0, result.output
    plans = {p["table"]: p for p in json.loads(result.stdout)["tables"]}
    assert set(plans) == {orders, events}
    assert plans[orders]["type_attribute"] == "kind"
    assert plans[orders]["index_prefix"] == stack.prefix
    assert plans[orders]["default_index"] == f"{stack.prefix}misc"
    assert (plans[orders]["hash_key"], plans[orders]["range_key"]) == ("pk", "sk")
    assert plans[events]["type_attribute"] == "TYPE"
    assert plans[events]["index_prefix"] == "events-"
    assert plans[events]["default_index"] == "events-unknown"

    # A table named on the command line but not in the file gets the [defaults].
    result = invoke([*args, events, unconfigured], stack.cli_env())
    assert result.exit_code == 0, result.output
    plans = {p["table"]: p for p in json.loads(result.stdout)["tables"]}
    assert plans[events]["index_prefix"] == "events-"
    assert plans[unconfigured]["type_attribute"] == "kind"
    assert plans[unconfigured]["index_prefix"] == stack.prefix


# --- load_settings: pure cases ------------------------------------------------------------------


def test_defaults_without_any_file() -> None:
    settings = load_settings(None, {})
    assert settings.source is None
    assert settings.search == SearchSettings()
    assert settings.search.url == "http://localhost:9200"
    assert settings.search.auth == "none"
    assert settings.search.verify_certs is True
    assert settings.dynamodb.endpoint is None
    assert settings.dynamodb.region is None
    assert settings.tables == ()
    assert (settings.type_attribute, settings.default_type, settings.index_prefix) == (
        "TYPE",
        "default",
        "",
    )
    assert settings.version_overlap_ms == DEFAULT_OVERLAP_MS


def test_cwd_file_is_read_when_no_path_is_given(tmp_path: Path) -> None:
    write(tmp_path / "ddb2es.toml", '[search]\nurl = "https://from-cwd:9200"\n')
    settings = load_settings(None, {})
    assert settings.search.url == "https://from-cwd:9200"
    assert settings.source == "ddb2es.toml"


# ca_certs must name a file that exists: any file does for settings.
CA_FILE = str(Path(__file__).resolve())
FULL_FILE = f"""
[dynamodb]
region = "eu-west-1"
endpoint = "http://file-ddb:8000"
profile = "file-profile"

[search]
url = "https://file-search:443"
username = "file-user"
password = "file-password"
verify_certs = false
ca_certs = "{CA_FILE}"

[defaults]
type_attribute = "kind"
default_type = "other"
index_prefix = "p-"
version_overlap_ms = 1000
"""


def test_file_over_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path / "c.toml", FULL_FILE), {})
    assert settings.source == str(tmp_path / "c.toml")
    assert settings.dynamodb.region == "eu-west-1"
    assert settings.dynamodb.endpoint == "http://file-ddb:8000"
    assert settings.dynamodb.profile == "file-profile"
    assert settings.search.url == "https://file-search:443"
    assert settings.search.auth == "basic"
    assert settings.search.username == "file-user"
    assert settings.search.password == "file-password"
    assert settings.search.verify_certs is False
    assert settings.search.ca_certs == CA_FILE
    assert (settings.type_attribute, settings.default_type, settings.index_prefix) == (
        "kind",
        "other",
        "p-",
    )
    assert settings.version_overlap_ms == 1000


def test_overrides_over_file_and_none_means_not_given(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", FULL_FILE)
    settings = load_settings(
        path,
        {
            "es_url": "https://flag-search:9200",
            "region": "us-west-2",
            "dynamodb_endpoint": None,
            "profile": None,
            "es_username": "flag-user",
            "es_password": None,
            "es_verify_certs": True,
            "es_ca_certs": None,
        },
    )
    assert settings.search.url == "https://flag-search:9200"
    assert settings.dynamodb.region == "us-west-2"
    assert settings.dynamodb.endpoint == "http://file-ddb:8000"
    assert settings.dynamodb.profile == "file-profile"
    assert settings.search.username == "flag-user"
    assert settings.search.password == "file-password"
    assert settings.search.verify_certs is True
    assert settings.search.ca_certs == CA_FILE


def test_empty_endpoint_means_aws(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[dynamodb]\nendpoint = ""\nregion = "eu-west-1"\n')
    assert load_settings(path, {}).dynamodb.endpoint is None
    assert load_settings(None, {"dynamodb_endpoint": ""}).dynamodb.endpoint is None


# --- tables -------------------------------------------------------------------------------------

TABLES_FILE = """
[defaults]
type_attribute = "kind"
index_prefix = "global-"

[[tables]]
name = "orders-service"

[[tables]]
name = "customers-service"
type_attribute = "TYPE"

[[tables]]
name = "events-service"
index_prefix = "ev-"
default_type = "event"
"""


@pytest.fixture
def tables_settings(tmp_path: Path) -> Settings:
    return load_settings(write(tmp_path / "ddb2es.toml", TABLES_FILE), {})


def test_per_table_settings_override_defaults(tables_settings: Settings) -> None:
    assert tables_settings.tables == (
        TableSettings("orders-service", "kind", "default", "global-"),
        TableSettings("customers-service", "TYPE", "default", "global-"),
        TableSettings("events-service", "kind", "event", "ev-"),
    )
    # A table named on the command line but not configured: the [defaults].
    assert tables_settings.table("adhoc") == TableSettings("adhoc", "kind", "default", "global-")
    shape = tables_settings.table("events-service").shape("pk", "sk")
    assert (shape.hash_key, shape.range_key) == ("pk", "sk")
    assert (shape.type_attribute, shape.default_type, shape.index_prefix) == (
        "kind",
        "event",
        "ev-",
    )


def test_select_tables(tables_settings: Settings) -> None:
    names = [t.name for t in tables_settings.select_tables((), True)]
    assert names == ["orders-service", "customers-service", "events-service"]
    chosen = tables_settings.select_tables(("events-service", "adhoc"), False)
    assert chosen == [
        TableSettings("events-service", "kind", "event", "ev-"),
        TableSettings("adhoc", "kind", "default", "global-"),
    ]
    with pytest.raises(ConfigError, match="not both"):
        tables_settings.select_tables(("orders-service",), True)
    with pytest.raises(ConfigError, match="at least one table"):
        tables_settings.select_tables((), False)
    with pytest.raises(ConfigError, match=r"\[\[tables\]\]"):
        Settings().select_tables((), True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reindex", "--all", "orders-service"], "not both"),
        (["reindex"], "at least one table"),
    ],
)
def test_select_tables_errors_through_the_cli(
    tmp_path: Path, args: list[str], message: str
) -> None:
    write(tmp_path / "ddb2es.toml", TABLES_FILE)
    assert_usage_error(invoke(args), message)


def test_all_without_configured_tables_through_the_cli(tmp_path: Path) -> None:
    assert_usage_error(invoke(["reindex", "--all"]), "--all needs [[tables]]")


# --- configuration errors: one line, exit 2 -----------------------------------------------------

BAD_CONFIGS = {
    "unknown table key": (
        '[[tables]]\nname = "orders"\ntype_atribute = "kind"\n',
        ["'orders'", "unknown key", "type_atribute", "did you mean type_attribute?"],
    ),
    "duplicate table": (
        '[[tables]]\nname = "orders"\n[[tables]]\nname = "orders"\n',
        ["names a table twice"],
    ),
    "invalid toml": ('[[tables]\nname = "orders"\n', ["is not valid TOML"]),
    "table without name": ('[[tables]]\ntype_attribute = "kind"\n', ["needs a name"]),
    "section not a table": ('search = "https://x"\n', ["[search]", "must be a table"]),
    "unknown auth": ('[search]\nauth = "kerberos"\n', ["auth must be one of", "kerberos"]),
    "unknown aws service": ('[search]\naws_service = "s3"\n', ["aws_service must be one of"]),
    "url without scheme": ('[search]\nurl = "search.example.com:9200"\n', ["http://"]),
    "basic without credentials": ('[search]\nauth = "basic"\n', ["basic auth needs"]),
    "api-key without key": ('[search]\nauth = "api-key"\n', ["api-key auth needs"]),
    "template unknown key": ("[template]\nshards = 2\n", ["[template]", "shards"]),
    "template negative replicas": ("[template]\nreplicas = -1\n", ["[template] replicas"]),
    "template empty name": ('[template]\nname = " "\n', ["[template] name"]),
    "template numbers not bool": (
        '[template]\nnumbers_as_double = "yes"\n',
        ["[template] numbers_as_double"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, fragments = BAD_CONFIGS[case]
    bad = write(tmp_path / "bad.toml", text)
    for command in (["reindex", "--all"], ["doctor"], ["doctor", "--json"]):
        assert_usage_error(invoke(["--config", str(bad), *command]), *fragments)
    with pytest.raises(ConfigError):
        load_settings(bad, {})


def test_bad_cwd_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write(tmp_path / "ddb2es.toml", "[[tables]\n")
    assert_usage_error(invoke(["doctor"]), "ddb2es.toml", "is not valid TOML")


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    for command in (["reindex", "--all"], ["doctor"]):
        assert_usage_error(invoke(["--config", str(missing), *command]), "not found", str(missing))
        env = {"DDB2ES_CONFIG": str(missing)}
        assert_usage_error(invoke(command, env), "not found", str(missing))


def test_template_section_sets_what_every_command_expects(tmp_path: Path) -> None:
    """CI's `template check`, the weekend reload and doctor build the same template from it."""
    from ddb2es_cli.template import template_spec

    path = write(
        tmp_path / "t.toml",
        '[template]\nname = "ours"\nreplicas = 1\npriority = 20\nnumbers_as_double = false\n',
    )
    settings = load_settings(path, {})
    spec = template_spec(settings)
    assert (spec.name, spec.replicas, spec.priority, spec.numbers_as_double) == (
        "ours",
        1,
        20,
        False,
    )
    flags = template_spec(settings, name="flag", replicas=0, priority=0, numbers_as_double=True)
    assert (flags.name, flags.replicas, flags.priority, flags.numbers_as_double) == (
        "flag",
        0,
        0,
        True,
    )


def test_non_integer_overlap_is_a_config_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", '[defaults]\nversion_overlap_ms = "five minutes"\n')
    assert_usage_error(invoke(["--config", str(bad), "doctor"]), "version_overlap_ms")


def test_url_with_credentials_and_a_bad_port_is_a_usage_error() -> None:
    result = invoke(["--es-url", "http://bob:pw@127.0.0.1:99999", "doctor"])
    assert_usage_error(result, "127.0.0.1")


# --- auth inference -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "auth"),
    [
        ({}, "none"),
        ({"es_api_key": "k"}, "api-key"),
        ({"es_username": "bob", "es_password": "pw"}, "basic"),
        ({"es_aws_sigv4": True}, "aws-sigv4"),
        ({"es_aws_sigv4": True, "es_api_key": "k"}, "aws-sigv4"),
        ({"es_aws_sigv4": False}, "none"),
        ({"es_api_key": "k", "es_username": "bob", "es_password": "pw"}, "api-key"),
    ],
)
def test_auth_inferred_from_what_was_given(overrides: dict[str, Any], auth: str) -> None:
    assert load_settings(None, overrides).search.auth == auth


@pytest.mark.parametrize(
    "overrides",
    [{"es_username": "bob"}, {"es_password": "pw"}],
)
def test_basic_without_user_or_password_is_an_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="basic auth needs --es-username and --es-password"):
        load_settings(None, overrides)


def test_auth_from_file_and_the_sigv4_flag(tmp_path: Path) -> None:
    sigv4 = write(tmp_path / "sigv4.toml", '[search]\nauth = "aws-sigv4"\naws_service = "aoss"\n')
    settings = load_settings(sigv4, {})
    assert settings.search.auth == "aws-sigv4"
    assert settings.search.describe_auth() == "aws-sigv4 (service 'aoss')"
    # --no-es-aws-sigv4 turns the file's sigv4 off; what was given decides then.
    assert load_settings(sigv4, {"es_aws_sigv4": False}).search.auth == "none"
    assert load_settings(sigv4, {"es_aws_sigv4": False, "es_api_key": "k"}).search.auth == (
        "api-key"
    )
    assert load_settings(sigv4, {"es_aws_service": "es"}).search.aws_service == "es"
    none = write(tmp_path / "none.toml", '[search]\nauth = "none"\n')
    assert load_settings(none, {"es_aws_sigv4": True}).search.auth == "aws-sigv4"


def test_describe_auth() -> None:
    basic = load_settings(None, {"es_username": "bob", "es_password": "pw"}).search
    assert basic.describe_auth() == "basic (user 'bob')"
    assert load_settings(None, {"es_api_key": "k"}).search.describe_auth() == "api-key"
    assert SearchSettings().describe_auth() == "none"


def test_auth_through_the_cli(dynamodb_url: str, opensearch_url: str) -> None:
    """osmem ignores credentials, so every mode reaches it; doctor names the mode."""
    common = ["--dynamodb-endpoint", dynamodb_url, "--es-url", opensearch_url]
    cases = [
        ([], {}, "auth none"),
        (["--es-api-key", "k"], {}, "auth api-key"),
        ([], {"DDB2ES_ES_API_KEY": "k"}, "auth api-key"),
        (["--es-username", "bob", "--es-password", "pw"], {}, "auth basic (user 'bob')"),
        ([], {"DDB2ES_ES_USERNAME": "eve", "DDB2ES_ES_PASSWORD": "pw"}, "auth basic (user 'eve')"),
        (
            ["--es-aws-sigv4", "--region", "us-east-1"],
            {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
            "auth aws-sigv4 (service 'es')",
        ),
    ]
    for args, env, expected in cases:
        report = doctor_json([*common, *args], env)
        search = check(report, "search")
        assert search["ok"], (args, env, search)
        assert expected in search["detail"], (args, env, search)


def test_sigv4_without_aws_credentials_fails_the_search_check(
    dynamodb_url: str, opensearch_url: str
) -> None:
    args = ["--dynamodb-endpoint", dynamodb_url, "--es-url", opensearch_url, "--es-aws-sigv4"]
    result = invoke([*args, "--region", "us-east-1", "doctor", "--json"])
    assert result.exit_code == ExitStatus.ERROR, result.output
    search = check(json.loads(result.stdout), "search")
    assert not search["ok"]
    assert "no AWS credentials" in search["detail"]


def test_basic_without_password_through_the_cli(opensearch_url: str) -> None:
    result = invoke(["--es-url", opensearch_url, "--es-username", "bob", "doctor"])
    assert_usage_error(result, "basic auth needs")


def test_credentials_given_as_flags_beat_the_files_auth(tmp_path: Path) -> None:
    path = write(tmp_path / "f.toml", '[search]\nauth = "none"\n')
    assert load_settings(path, {"es_api_key": "k"}).search.auth == "api-key"
    assert load_settings(path, {"es_username": "u", "es_password": "p"}).search.auth == "basic"
    assert load_settings(path, {}).search.auth == "none"


def test_credentials_in_the_url_become_basic_auth_and_leave_the_url() -> None:
    search = load_settings(None, {"es_url": "https://bob:p%40ss@search.example.com:443"}).search
    assert (search.auth, search.username, search.password) == ("basic", "bob", "p@ss")
    assert search.url == "https://search.example.com:443"


def test_an_overlap_below_one_second_is_refused(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "[defaults]\nversion_overlap_ms = 999\n")
    assert_usage_error(invoke(["--config", str(bad), "doctor"]), "version_overlap_ms", "999")


def test_a_short_overlap_against_dynamodb_local_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ddb2es_cli.config import load_settings

    path = write(
        tmp_path / "short.toml",
        '[dynamodb]\nendpoint = "http://127.0.0.1:8000"\n[defaults]\nversion_overlap_ms = 5000\n',
    )
    with caplog.at_level("WARNING", logger="ddb2es.config"):
        settings = load_settings(path, {})
    assert settings.version_overlap_ms == 5000
    assert "DynamoDB Local" in caplog.text
