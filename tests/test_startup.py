"""Start-up cost: what a command imports before it needs it (issue 14). No timings: the tests
look at which heavy libraries got imported, which is what the start-up time is made of."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ddb2es_cli.errors import ExitStatus
from tests.conftest import Stack
from tests.servers import free_port

HEAVY = ("boto3", "botocore", "rich", "elasticsearch", "opensearchpy")


def _fresh_python(
    code: str, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, in `cwd` (default: an empty folder, not the checkout,
    so the installed package is imported), with `env` added to this process's environment."""
    with tempfile.TemporaryDirectory() as empty:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
            cwd=cwd or empty,
            env={**os.environ, **(env or {})},
        )


def _imported_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(sorted(n for n in {HEAVY!r} if n in sys.modules)))"
    done = _fresh_python(probe)
    last = done.stdout.rstrip("\n").rpartition("\n")[2]
    return set(filter(None, last.split(",")))


def test_help_imports_no_aws_search_or_rendering_library() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from ddb2es_cli.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0 and 'reindex' in result.output, result.output\n"
    )
    assert _imported_after(code) == set()


def test_help_imports_no_command_module_and_no_config() -> None:
    """`ddb2es --help` lists the commands without importing their modules (nor config, with
    ownership and transform): those imports were half of its start-up."""
    code = (
        "import subprocess, sys\n"
        "from ddb2es_cli.cli import main\n"
        "sys.argv = ['ddb2es', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "loaded = sorted(n for n in sys.modules if n.startswith('ddb2es_cli.'))\n"
        "print('modules=' + ','.join(loaded))\n"
    )
    done = _fresh_python(code)
    assert "reindex" in done.stdout  # the listing is there
    loaded = done.stdout.rpartition("modules=")[2].strip().split(",")
    commands = [n for n in loaded if n.startswith("ddb2es_cli.cli.") and n not in _CLI_CORE]
    assert commands == []
    assert "ddb2es_cli.config" not in loaded


_CLI_CORE = ("ddb2es_cli.cli.common", "ddb2es_cli.cli.lazy")


def test_a_command_imports_its_module_on_use() -> None:
    code = (
        "from click.testing import CliRunner\n"
        "from ddb2es_cli.cli import cli\n"
        "result = CliRunner().invoke(cli, ['reindex', '--help'])\n"
        "assert result.exit_code == 0 and '--segments' in result.output, result.output\n"
        "import sys\n"
        "assert 'ddb2es_cli.cli.reindex' in sys.modules\n"
        "assert 'ddb2es_cli.cli.drift' not in sys.modules\n"
    )
    _imported_after(code)


def test_an_opensearch_client_never_pulls_in_elasticsearch_py() -> None:
    code = (
        "from opensearchpy import OpenSearch\n"
        "from ddb2es_cli.clients import helpers_for\n"
        "client = OpenSearch(hosts=['http://127.0.0.1:9'])\n"
        "import opensearchpy.helpers\n"
        "assert helpers_for(client) is opensearchpy.helpers\n"
    )
    assert "elasticsearch" not in _imported_after(code)


def test_an_elasticsearch_client_is_recognised() -> None:
    code = (
        "from elasticsearch import Elasticsearch\n"
        "from ddb2es_cli.clients import is_elasticsearch_client\n"
        "assert is_elasticsearch_client(Elasticsearch('http://127.0.0.1:9'))\n"
    )
    assert "elasticsearch" in _imported_after(code)


def test_detecting_elasticsearch_does_not_import_opensearch_py(elasticsearch_url: str) -> None:
    code = (
        "from ddb2es_cli.clients import detect_engine\n"
        "from ddb2es_cli.config import SearchSettings\n"
        f"engine = detect_engine(SearchSettings(url={elasticsearch_url!r}))\n"
        "assert engine.distribution == 'elasticsearch', engine\n"
    )
    assert "opensearchpy" not in _imported_after(code)


def test_detection_errors_still_come_from_the_client(opensearch_url: str) -> None:
    """A server that is not a search engine: the quick probe steps aside, the message is the
    client's (the one the CLI tests pin down)."""
    code = (
        "from ddb2es_cli.clients import detect_engine\n"
        "from ddb2es_cli.config import SearchSettings\n"
        "from ddb2es_cli.errors import ConnectionFailed\n"
        f"url = {opensearch_url!r} + '/no-such-index/_doc/1'\n"
        "try:\n"
        "    detect_engine(SearchSettings(url=url))\n"
        "except ConnectionFailed as exc:\n"
        "    assert 'is not an Elasticsearch/OpenSearch server' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('no error')\n"
    )
    assert "opensearchpy" in _imported_after(code)


def _requests_of(args: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """Run `ddb2es <args>` in a fresh interpreter; every HTTP request it makes (urllib3 carries
    botocore's, opensearch-py's and elasticsearch-py's), with whether boto3 was loaded by then,
    and the exit code last."""
    code = (
        "import json, sys\n"
        "import urllib3.connectionpool as pools\n"
        "seen = []\n"
        "urlopen = pools.HTTPConnectionPool.urlopen\n"
        "def spy(self, method, url, *args, **kwargs):\n"
        "    seen.append({'port': self.port, 'method': method, 'url': url,\n"
        "                 'boto3': 'boto3' in sys.modules})\n"
        "    return urlopen(self, method, url, *args, **kwargs)\n"
        "pools.HTTPConnectionPool.urlopen = spy\n"
        "from click.testing import CliRunner\n"
        "from ddb2es_cli.cli import cli\n"
        f"result = CliRunner().invoke(cli, {args!r})\n"
        "seen.append({'exit_code': result.exit_code, 'output': result.output})\n"
        "print('requests=' + json.dumps(seen))\n"
    )
    done = _fresh_python(code, cwd, env)
    found: list[dict[str, Any]] = json.loads(done.stdout.rpartition("requests=")[2])
    return found


def test_the_first_request_asks_the_search_engine_before_boto3_loads(
    stack: Stack, tmp_path: Path
) -> None:
    """Start-up until the first request (issue 14): the engine's `GET /` needs urllib3 only,
    so it goes out before boto3 and botocore's client (about 0.35 s of CPU) are loaded."""
    table = stack.create_table("first")
    stack.put_items(table, [{"pk": {"S": "a"}, "TYPE": {"S": "Order"}}])
    config = stack.config_file(tmp_path, table)
    seen = _requests_of(["--config", str(config), "reindex", table], stack.cli_env(), tmp_path)
    *requests, end = seen
    assert end["exit_code"] == 0, end["output"]
    search_port = urlsplit(stack.es_url).port
    first = requests[0]
    assert (first["port"], first["method"], first["url"]) == (search_port, "GET", "/")
    assert first["boto3"] is False
    assert any(r["port"] == urlsplit(stack.dynamodb_url).port for r in requests)


def test_a_dynamodb_settings_error_is_still_the_one_reported(tmp_path: Path) -> None:
    """The search side goes first, but when it fails too, DynamoDB's settings error (which
    came first when DynamoDB's client was built first) is the one the user reads."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    args = ["--profile", "no-such-profile", "--es-url", closed, "reindex", "orders"]
    *_, end = _requests_of(args, env, tmp_path)
    assert end["exit_code"] == ExitStatus.USAGE, end["output"]
    assert "AWS profile 'no-such-profile' is not in the AWS config" in end["output"]


def test_the_dynamodb_and_streams_clients_share_one_session(stack: Stack, tmp_path: Path) -> None:
    """`stream` (and `reload`) need a DynamoDB and a Streams client: on one boto3 session, as a
    second session would load botocore's data files again (about 0.2 s of CPU)."""
    table = stack.create_table("session", stream=True)
    config = stack.config_file(tmp_path, table)
    args = ["--config", str(config), "stream", table, "--until-caught-up"]
    args += ["--state-file", str(tmp_path / "s.json"), "--failures", str(tmp_path / "f.ndjson")]
    code = (
        "import boto3.session\n"
        "made = []\n"
        "init = boto3.session.Session.__init__\n"
        "def counted(self, *args, **kwargs):\n"
        "    made.append(1)\n"
        "    init(self, *args, **kwargs)\n"
        "boto3.session.Session.__init__ = counted\n"
        "from click.testing import CliRunner\n"
        "from ddb2es_cli.cli import cli\n"
        f"result = CliRunner().invoke(cli, {args!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print(f'sessions={len(made)}')\n"
    )
    done = _fresh_python(code, tmp_path, stack.cli_env(), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.rpartition("sessions=")[2].strip() == "1"
