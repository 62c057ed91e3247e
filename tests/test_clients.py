"""Clients against the real local servers: engine detection, the right library per engine, the
compatibility header on the wire, connection failures, DynamoDB without credentials, and secrets
that never reach stdout, stderr, a repr or an error message."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import elasticsearch
import opensearchpy
import pytest
from click.testing import CliRunner

from ddb2es_cli.cli import cli
from ddb2es_cli.clients import (
    LOCAL_REGION,
    Engine,
    _api_key_token,
    detect_engine,
    helpers_for,
    make_dynamodb_client,
    make_search_client,
)
from ddb2es_cli.config import (
    DynamoSettings,
    SearchSettings,
    Settings,
    load_settings,
    redact,
    redact_url,
)
from ddb2es_cli.errors import ConfigError, ConnectionFailed
from tests.conftest import Stack
from tests.servers import free_port

SECRET = "s3cr3t-Pa55"
# Fragments too: a leak cut by line wrapping or quoting would still show one of them.
SECRET_FRAGMENTS = (SECRET, "s3cr3t", "Pa55")


pytestmark = pytest.mark.usefixtures("clean_env")


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for fragment in SECRET_FRAGMENTS:
            assert fragment not in text, f"secret fragment {fragment!r} leaked in:\n{text}"


# --- engine detection and the client per engine ------------------------------------------------


def test_engine_properties() -> None:
    assert Engine("opensearch", "3.8.0").client_library == "opensearch-py"
    assert Engine("opensearch", "1.3.2").major == 1
    assert Engine("elasticsearch", "7.10.2").client_library == "opensearch-py"
    assert Engine("elasticsearch", "8.15.3").client_library == "elasticsearch-py"
    assert Engine("elasticsearch", "9.1.0").client_library == "elasticsearch-py"
    assert str(Engine("elasticsearch", "8.15.3")) == "elasticsearch 8.15.3"


def test_osmem_is_opensearch_with_opensearch_py(opensearch_url: str) -> None:
    assert detect_engine(SearchSettings(url=opensearch_url)) == Engine("opensearch", "3.8.0")
    client, engine = make_search_client(SearchSettings(url=opensearch_url))
    try:
        assert engine == Engine("opensearch", "3.8.0")
        assert isinstance(client, opensearchpy.OpenSearch)
        assert not isinstance(client, elasticsearch.Elasticsearch)
        assert helpers_for(client) is opensearchpy.helpers
    finally:
        client.close()


def test_noida_is_elasticsearch_8_with_elasticsearch_py(elasticsearch_url: str) -> None:
    engine = detect_engine(SearchSettings(url=elasticsearch_url))
    assert engine.distribution == "elasticsearch"
    assert engine.major == 8
    client, made_for = make_search_client(SearchSettings(url=elasticsearch_url))
    try:
        assert made_for == engine
        assert isinstance(client, elasticsearch.Elasticsearch)
        assert helpers_for(client) is elasticsearch.helpers
    finally:
        client.close()


def test_elasticsearch_client_indexes_bulks_and_counts(es_stack: Stack) -> None:
    client, _ = make_search_client(SearchSettings(url=es_stack.es_url))
    index = f"{es_stack.prefix}orders"
    try:
        client.index(index=index, id="one", document={"n": 1}, refresh=True)
        actions = [{"_index": index, "_id": f"b{i}", "_source": {"n": i}} for i in range(25)]
        ok, errors = helpers_for(client).bulk(client, actions, refresh=True)
        assert (ok, errors) == (25, [])
        assert client.count(index=index)["count"] == 26
        assert client.get(index=index, id="b7")["_source"] == {"n": 7}
    finally:
        client.close()


def test_opensearch_client_indexes_bulks_and_counts(stack: Stack) -> None:
    client, _ = make_search_client(SearchSettings(url=stack.es_url))
    index = f"{stack.prefix}orders"
    try:
        client.index(index=index, id="one", body={"n": 1}, refresh=True)
        actions = [{"_index": index, "_id": f"b{i}", "_source": {"n": i}} for i in range(25)]
        ok, errors = helpers_for(client).bulk(client, actions, refresh=True)
        assert (ok, errors) == (25, [])
        assert client.count(index=index)["count"] == 26
    finally:
        client.close()


class _RecordingProxy:
    """A pass-through HTTP proxy in front of a real server that records the request headers.

    noida-db accepts `compatible-with=9` (real Elasticsearch 8 answers 400 to it), so the only
    way to see that the header is lowered is to look at what goes over the wire.
    """

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                proxy.seen.append((self.command, self.path, headers))
                conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
                try:
                    forward = {k: v for k, v in headers.items() if k not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body, headers=forward)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in (
                            "transfer-encoding",
                            "connection",
                            "content-length",
                        ):
                            self.send_header(name, value)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_proxy(es_stack: Stack) -> Iterator[_RecordingProxy]:
    proxy = _RecordingProxy(es_stack.es_url)
    yield proxy
    proxy.close()


def test_compatibility_header_is_lowered_to_the_server_major(
    es_stack: Stack, recording_proxy: _RecordingProxy
) -> None:
    client, engine = make_search_client(SearchSettings(url=recording_proxy.url))
    index = f"{es_stack.prefix}compat"
    try:
        assert engine.major == 8
        recording_proxy.seen.clear()
        client.index(index=index, id="1", document={"n": 1})
        helpers_for(client).bulk(client, [{"_index": index, "_id": "2", "_source": {"n": 2}}])
        client.indices.refresh(index=index)
        assert client.count(index=index)["count"] == 2
    finally:
        client.close()
    paths = [path for _, path, _ in recording_proxy.seen]
    assert any("_bulk" in p for p in paths), paths
    for method, path, headers in recording_proxy.seen:
        for name in ("accept", "content-type"):
            value = headers.get(name, "")
            assert "compatible-with=9" not in value, (method, path, name, value)
        assert "compatible-with=8" in headers.get("accept", ""), (method, path, headers)
        if int(headers.get("content-length") or 0):
            assert "compatible-with=8" in headers.get("content-type", ""), (method, path)


def test_plain_elasticsearch_py_would_send_its_own_major(
    recording_proxy: _RecordingProxy,
) -> None:
    """The control for the test above: without the lowering, the header names the client's major."""
    client = elasticsearch.Elasticsearch(recording_proxy.url)
    try:
        client.info()
    finally:
        client.close()
    major = elasticsearch.__version__[0]
    assert major >= 9, "with a client of the server's major there is nothing to lower"
    assert f"compatible-with={major}" in recording_proxy.seen[-1][2]["accept"]


# --- connection failures ------------------------------------------------------------------------


def test_connection_refused_is_one_line_naming_the_url() -> None:
    url = closed_url()
    for call in (detect_engine, make_search_client):
        with pytest.raises(ConnectionFailed) as caught:
            call(SearchSettings(url=url))
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"cannot reach {url}")
        assert "refused" in message.lower()


def test_connection_failure_with_credentials_in_url_names_the_redacted_url() -> None:
    url = closed_url()
    port = urlsplit(url).port
    settings = SearchSettings(
        url=f"http://user:{SECRET}@127.0.0.1:{port}",
        auth="api-key",
        api_key=SECRET,
    )
    with pytest.raises(ConnectionFailed) as caught:
        make_search_client(settings)
    message = str(caught.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}")
    assert_no_secret(message)


# --- secrets ------------------------------------------------------------------------------------


def test_search_settings_repr_hides_password_and_api_key() -> None:
    settings = SearchSettings(
        url="https://search.example.com", auth="basic", username="bob", password=SECRET
    )
    keyed = SearchSettings(url="https://search.example.com", auth="api-key", api_key=SECRET)
    for text in (repr(settings), str(settings), repr(keyed), repr(Settings(search=settings))):
        assert_no_secret(text)
    assert "bob" in repr(settings)
    assert settings.secrets() == [SECRET]
    assert keyed.secrets() == [SECRET]


def test_search_settings_repr_hides_a_password_inside_the_url() -> None:
    settings = SearchSettings(url=f"https://bob:{SECRET}@search.example.com")
    assert_no_secret(repr(settings), repr(Settings(search=settings)))


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("http://user:pw@127.0.0.1:9200", "http://127.0.0.1:9200"),
        (
            "https://user:pw@search.example.com/prefix?x=1#f",
            "https://search.example.com/prefix?x=1#f",
        ),
        ("https://user@search.example.com:443", "https://search.example.com:443"),
        ("https://:pw@search.example.com", "https://search.example.com"),
        ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
        ("https://search.example.com/x", "https://search.example.com/x"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe
    assert SearchSettings(url=url).safe_url == safe


def test_redact_url_keeps_ipv6_brackets() -> None:
    assert redact_url("http://user:pw@[::1]:9200/") == "http://[::1]:9200/"


def test_redact_replaces_every_secret() -> None:
    text = f"auth failed for {SECRET} with key KEY-1 ({SECRET})"
    assert redact(text, [SECRET, "KEY-1"]) == "auth failed for *** with key *** (***)"
    assert redact(text, []) == text


def test_api_key_token() -> None:
    assert _api_key_token("id:key") == "aWQ6a2V5"  # base64("id:key")
    assert _api_key_token("aWQ6a2V5") == "aWQ6a2V5"


def _secret_cases(port: int) -> list[list[str]]:
    """Global options that carry SECRET, for a search server at 127.0.0.1:port."""
    url = f"http://127.0.0.1:{port}"
    return [
        ["--es-url", url, "--es-username", "bob", "--es-password", SECRET],
        ["--es-url", url, "--es-api-key", SECRET],
        ["--es-url", url, "--es-api-key", f"keyid:{SECRET}"],
        ["--es-url", f"http://bob:{SECRET}@127.0.0.1:{port}"],
        # basic auth without a user: a usage error, which must not echo the password either
        ["--es-url", url, "--es-password", SECRET],
    ]


def _target_port(target: str, request: pytest.FixtureRequest) -> int:
    if target == "closed":
        return free_port()
    url: str = request.getfixturevalue(f"{target}_url")
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.mark.parametrize("target", ["closed", "opensearch", "elasticsearch"])
def test_doctor_never_prints_secrets(
    target: str, request: pytest.FixtureRequest, dynamodb_url: str
) -> None:
    port = _target_port(target, request)
    runner = CliRunner()
    env = {"COLUMNS": "500"}  # no wrapping in the text table: a leak would show whole
    for options in _secret_cases(port):
        for output in (["--json"], []):
            args = ["--dynamodb-endpoint", dynamodb_url, *options, "doctor", *output]
            result = runner.invoke(cli, args, env=env)
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                result.exception
            )
            assert result.exit_code in (0, 1, 2), (args, result.output)
            assert_no_secret(result.stdout, result.stderr)
            if "--json" in output and result.exit_code != 2:
                report = json.loads(result.stdout)
                search = next(c for c in report["checks"] if c["name"] == "search")
                assert search["detail"].startswith(f"http://127.0.0.1:{port}")
                assert search["ok"] is (target != "closed")
            if result.exit_code == 2 and "--json" in output:
                assert json.loads(result.stdout)["exit_code"] == 2
            elif result.exit_code == 2:
                assert result.stderr.startswith("Error: ")
            else:
                # Open targets may still fail the template check, which the test does not set up.
                assert result.exit_code == 1 or target != "closed", result.output
                assert f"http://127.0.0.1:{port}" in result.stdout


def test_doctor_never_prints_secrets_from_the_environment(opensearch_url: str) -> None:
    env = {"DDB2ES_ES_URL": opensearch_url, "DDB2ES_ES_API_KEY": SECRET, "COLUMNS": "500"}
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert "api-key" in result.stdout
    assert_no_secret(result.stdout, result.stderr)


@pytest.mark.parametrize("target", ["closed", "opensearch"])
def test_doctor_subprocess_never_logs_secrets(
    target: str, request: pytest.FixtureRequest, dynamodb_url: str
) -> None:
    """A real process: whatever the client libraries log on stderr must not carry the secret."""
    port = _target_port(target, request)
    url = f"http://127.0.0.1:{port}"
    # One process per way to give a secret (a process costs ~1 s), text and JSON both covered.
    cases = [
        ["--es-url", url, "--es-username", "bob", "--es-password", SECRET, "doctor"],
        ["--es-url", url, "--es-api-key", SECRET, "doctor", "--json"],
        ["--es-url", f"http://bob:{SECRET}@127.0.0.1:{port}", "doctor"],
    ]
    for options in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "ddb2es_cli", "--dynamodb-endpoint", dynamodb_url, *options],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "500"},
        )
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        assert proc.returncode == 1 or target != "closed", proc.stdout
        assert "Traceback" not in proc.stderr
        assert f"127.0.0.1:{port}" in proc.stdout
        assert_no_secret(proc.stdout, proc.stderr)


# --- DynamoDB -----------------------------------------------------------------------------------


def test_dynamodb_local_needs_no_credentials(dynamodb_url: str) -> None:
    assert not any(name.startswith("AWS_ACCESS") for name in os.environ)
    client = make_dynamodb_client(DynamoSettings(endpoint=dynamodb_url))
    assert client.meta.region_name == LOCAL_REGION
    assert "TableNames" in client.list_tables(Limit=1)
    streams = make_dynamodb_client(DynamoSettings(endpoint=dynamodb_url), "dynamodbstreams")
    assert "Streams" in streams.list_streams(Limit=1)


def test_dynamodb_local_keeps_a_given_region(dynamodb_url: str) -> None:
    client = make_dynamodb_client(DynamoSettings(endpoint=dynamodb_url, region="eu-west-1"))
    assert client.meta.region_name == "eu-west-1"
    assert "TableNames" in client.list_tables(Limit=1)


def test_aws_without_a_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="region"):
        make_dynamodb_client(DynamoSettings())


def test_aws_region_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    client = make_dynamodb_client(DynamoSettings())  # builds; sends nothing
    assert client.meta.region_name == "ap-south-1"
    assert client.meta.endpoint_url == "https://dynamodb.ap-south-1.amazonaws.com"


# --- issue 11: one AWS session, whole-value masking, transport warnings -----------------------


def test_sigv4_signs_with_the_profile_not_the_default_chain(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--profile` picks the identity for both sides: the search request is signed by it."""
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile ops]\naws_access_key_id = AKIDPROFILEOPS\n"
        "aws_secret_access_key = profile-secret-0123456789\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDDEFAULTCHAIN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "default-secret-0123456789")
    proxy = _RecordingProxy(stack.es_url)
    try:
        settings = load_settings(
            None, {"es_url": proxy.url, "es_aws_sigv4": True, "profile": "ops"}
        ).search
        assert settings.aws_profile == "ops"
        client, _engine = make_search_client(settings, "us-east-1")
        client.cluster.health()
        client.close()
    finally:
        proxy.close()
    signed = [h["authorization"] for _m, _p, h in proxy.seen if "authorization" in h]
    assert signed, proxy.seen
    assert all("Credential=AKIDPROFILEOPS/" in a for a in signed), signed


def test_redact_masks_whole_values_only() -> None:
    # A short secret inside other words stays: masking it would show it, and where it is.
    assert redact("about a cab", ["ab"]) == "about a cab"
    assert redact("user ab failed", ["ab"]) == "user *** failed"
    assert redact("http://bob:ab@host", ["ab"]) == "http://bob:***@host"
    assert redact("key=s3cr3t-Pa55;", [SECRET]) == "key=***;"


def test_redact_masks_aws_and_auth_headers_from_any_library() -> None:
    line = (
        "headers={'X-Amz-Security-Token': b'FwoGZXIvYXdzEXAMPLE', 'Authorization': "
        "b'AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, "
        "Signature=abc'}\nx-amz-security-token:FwoGZXIvYXdzEXAMPLE\n"
        "GET /?X-Amz-Credential=AKID%2F2026&X-Amz-Signature=ff00 HTTP/1.1"
    )
    masked = redact(line)
    for value in ("FwoGZXIvYXdzEXAMPLE", "AKID", "Signature=abc", "ff00"):
        assert value not in masked, masked
    assert "'Authorization': b'***'" in masked


@pytest.mark.parametrize(
    ("settings", "warning"),
    [
        (SearchSettings(url="http://search.example:9200", auth="basic", username="u",
                        password="p"), "go over plain http:// to http://search.example:9200"),
        (SearchSettings(url="https://search.example", verify_certs=False),
         "TLS certificate verification is off for https://search.example"),
    ],
)  # fmt: skip
def test_transport_warnings_once(
    settings: SearchSettings, warning: str, caplog: pytest.LogCaptureFixture
) -> None:
    from ddb2es_cli import transport_warnings

    transport_warnings._warned.clear()
    with caplog.at_level(logging.WARNING, logger="ddb2es.clients"):
        transport_warnings.warn_transport(settings)
        transport_warnings.warn_transport(settings)
    found = [r.getMessage() for r in caplog.records if warning in r.getMessage()]
    assert len(found) == 1, caplog.records
    assert "p@" not in found[0]


def test_no_warning_for_loopback_or_verified_tls(caplog: pytest.LogCaptureFixture) -> None:
    from ddb2es_cli.transport_warnings import _warned, warn_transport

    _warned.clear()
    with caplog.at_level(logging.WARNING, logger="ddb2es.clients"):
        warn_transport(SearchSettings(url="http://127.0.0.1:9200", auth="basic"))
        warn_transport(SearchSettings(url="http://localhost:9200", auth="api-key"))
        warn_transport(SearchSettings(url="http://search.example:9200"))  # no secret
        warn_transport(SearchSettings(url="https://search.example", auth="basic"))
    assert not caplog.records


def test_warnings_reach_stderr_once_through_the_cli(tmp_path: Path, opensearch_url: str) -> None:
    """A real process: the warning is printed once, on stderr, without the password."""
    port = urlsplit(opensearch_url).port
    proc = subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", "--es-url", f"https://bob:{SECRET}@localhost.:{port}",
         "--no-es-verify-certs", "template", "check"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stderr.count("go over plain http") == 0
    assert proc.stderr.count("TLS certificate verification is off") == 1, proc.stderr
    assert_no_secret(proc.stdout, proc.stderr)
