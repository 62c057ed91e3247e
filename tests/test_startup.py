"""Start-up cost: what a command imports before it needs it (issue 14). No timings: the tests
look at which heavy libraries got imported, which is what the start-up time is made of."""

from __future__ import annotations

import subprocess
import sys
import tempfile

HEAVY = ("boto3", "botocore", "rich", "elasticsearch", "opensearchpy")


def _imported_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(sorted(n for n in {HEAVY!r} if n in sys.modules)))"
    with tempfile.TemporaryDirectory() as cwd:  # not the checkout: the installed package
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=cwd,
        )
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
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            cwd=cwd,
        )
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
