"""The bad input corpus: every mistake an operator (or an attacker) can make, through the real CLI
in a subprocess. Each case asserts the exit code, one error line that names the cause, no Python
traceback, and that no secret used in the case appears anywhere in the output.

Servers: DynamoDB Local and osmem for the happy sides; small HTTP servers on loopback play a
search URL that is not a search engine (HTML, 404, 500, a JSON list, `{"version": "8"}`) and a
DynamoDB endpoint that answers AccessDenied or ValidationException (DynamoDB Local never does).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ddb2es_cli.errors import ExitStatus
from tests.servers import free_port

PASSWORD = "pw/with?odd#chars"
API_KEY = "QVBJLUtFWS12YWx1ZS0xMjM0NQ"
SESSION_TOKEN = "FwoGZXIvYXdzSESSIONTOKENvalue0123456789abcdef"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"


class FakeHTTP:
    """One loopback server that answers every request with the same status, type and body."""

    def __init__(self, status: int, content_type: str, body: str, root: str | None = None) -> None:
        """`root`: a JSON body that `GET /` answers with 200 instead (a search engine that
        answers its probe, then fails every other request)."""
        payload = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                probe = root is not None and self.command == "GET" and self.path == "/"
                data = root.encode() if probe and root is not None else payload
                self.send_response(200 if probe else status)
                self.send_header("content-type", "application/json" if probe else content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _aws_error(code: str, message: str) -> tuple[int, str, str]:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    return 400, "application/x-amz-json-1.0", body


FAKES = {
    "html": (200, "text/html", "<html><body>Welcome to nginx!</body></html>"),
    "e404": (404, "text/plain", "not found"),
    "e500": (500, "application/json", '{"oops": true}'),
    "list": (200, "application/json", "[1, 2, 3]"),
    "v8": (200, "application/json", '{"version": "8"}'),
    "ddb_validation": _aws_error("ValidationException", "1 validation error detected"),
    "ddb_denied": _aws_error("AccessDeniedException", "User is not authorized"),
    "os500": (
        500,
        "application/json",
        '{"error": {"type": "internal_error", "reason": "disk full"}, "status": 500}',
        '{"version": {"distribution": "opensearch", "number": "2.11.0"}, "tagline": "x"}',
    ),
}


@pytest.fixture(scope="module")
def urls(dynamodb_url: str, opensearch_url: str) -> Iterator[dict[str, str]]:
    fakes = {name: FakeHTTP(*spec) for name, spec in FAKES.items()}  # type: ignore[arg-type]
    found = {name: fake.url for name, fake in fakes.items()}
    found.update(ddb=dynamodb_url, es=opensearch_url, closed=f"http://127.0.0.1:{free_port()}")
    try:
        yield found
    finally:
        for fake in fakes.values():
            fake.close()


def run_cli(
    args: list[str], tmp_path: Path, env: dict[str, str | None] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`python -m ddb2es_cli ARGS` in `tmp_path`, with no AWS or DDB2ES_* setting from outside."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDB2ES_"))}
    base.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        HOME=str(tmp_path),
    )
    for name, value in (env or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", *args],
        capture_output=True,
        text=True,
        env=base,
        cwd=tmp_path,
        timeout=timeout,
    )


@dataclass
class Case:
    id: str
    args: list[str]  # {name} is replaced by the URL of that server (see `urls`)
    exit: ExitStatus
    message: str  # part of the one error line
    env: dict[str, str | None] = field(default_factory=dict)
    config: str | None = None  # ddb2es.toml in the working directory
    files: dict[str, str] = field(default_factory=dict)  # more files in the working directory
    secrets: tuple[str, ...] = ()
    json: bool = False


DDB = ["--dynamodb-endpoint", "{ddb}", "--es-url", "{es}"]
NOT_SEARCH = "is not an Elasticsearch/OpenSearch server (GET / answered"

CASES = [
    # --- DynamoDB endpoint errors ---
    Case(
        "describe-validation-exception",
        ["--dynamodb-endpoint", "{ddb_validation}", "--es-url", "{es}", "drift", "orders"],
        ExitStatus.ERROR,
        "DynamoDB at {ddb_validation} rejected DescribeTable: ValidationException",
    ),
    Case(
        "describe-access-denied",
        ["--dynamodb-endpoint", "{ddb_denied}", "--es-url", "{es}", "reindex", "orders"],
        ExitStatus.ERROR,
        "DynamoDB at {ddb_denied} refused our credentials (DescribeTable: AccessDeniedException",
    ),
    Case(
        "describe-unrecognized-client",
        [*DDB, "drift", "orders"],
        ExitStatus.ERROR,
        "DynamoDB at {ddb} refused our credentials (DescribeTable: UnrecognizedClientException",
        env={"AWS_ACCESS_KEY_ID": "not-alphanumeric", "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        secrets=(SECRET_KEY,),
    ),
    Case(
        "dynamodb-unreachable-drift-blames-dynamodb",
        ["--dynamodb-endpoint", "{closed}", "--es-url", "{es}", "drift", "orders"],
        ExitStatus.ERROR,
        "cannot reach DynamoDB at {closed}",
    ),
    Case(
        "dynamodb-unreachable-reindex",
        ["--dynamodb-endpoint", "{closed}", "--es-url", "{es}", "reindex", "orders"],
        ExitStatus.ERROR,
        "cannot reach DynamoDB at {closed}",
    ),
    Case(
        "no-credentials",
        ["--es-url", "{es}", "drift", "orders"],
        ExitStatus.USAGE,
        "no AWS credentials for DynamoDB (AWS, us-east-1)",
        env={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
    ),
    Case(
        "unknown-profile",
        ["--profile", "no-such-profile", *DDB, "drift", "orders"],
        ExitStatus.USAGE,
        "AWS profile 'no-such-profile' is not in the AWS config or credentials file",
    ),
    Case(
        "dynamodb-endpoint-not-a-url",
        ["--dynamodb-endpoint", "not a url", "--es-url", "{es}", "drift", "orders"],
        ExitStatus.USAGE,
        "--dynamodb-endpoint (DDB2ES_DYNAMODB_ENDPOINT) must start with http:// or https://",
    ),
    # --- a search URL that is not a search engine (every command but doctor) ---
    Case("search-html", [*DDB[:2], "--es-url", "{html}", "drift", "orders"], ExitStatus.ERROR,
         f"{{html}} {NOT_SEARCH} something that is not JSON)"),
    Case("search-404", [*DDB[:2], "--es-url", "{e404}", "reindex", "orders"], ExitStatus.ERROR,
         f"{{e404}} {NOT_SEARCH} HTTP 404)"),
    Case("search-500", [*DDB[:2], "--es-url", "{e500}", "template", "check"], ExitStatus.ERROR,
         f"{{e500}} {NOT_SEARCH} HTTP 500)"),
    Case("search-json-list", [*DDB[:2], "--es-url", "{list}", "reload", "orders"],
         ExitStatus.ERROR, f"{{list}} {NOT_SEARCH} a JSON list)"),
    Case("search-version-8", [*DDB[:2], "--es-url", "{v8}", "template", "apply"],
         ExitStatus.ERROR, f"{{v8}} {NOT_SEARCH} no version number)"),
    # --- usage errors before any network call ---
    Case("table-name-too-short", ["--dynamodb-endpoint", "{closed}", "drift", "ab"],
         ExitStatus.USAGE, "'ab' is not a DynamoDB table name (3-255 characters"),
    Case("table-name-bad-characters", ["--dynamodb-endpoint", "{closed}", "reindex", "a b/c"],
         ExitStatus.USAGE, "'a b/c' is not a DynamoDB table name"),
    Case("seed-negative-items", ["--dynamodb-endpoint", "{closed}", "local", "seed",
         "--items", "-5"], ExitStatus.USAGE, "-5 is not in the range x>=0"),
    # --- malformed state files ---
    Case("state-file-not-json", ["--es-url", "{es}", "--dynamodb-endpoint", "{ddb}", "doctor"],
         ExitStatus.USAGE, "state file .ddb2es/reindex-0123.json is not valid JSON: move it away",
         files={".ddb2es/reindex-0123.json": '{"tables": {'}),
    Case("state-file-wrong-shape", ["--es-url", "{es}", "--dynamodb-endpoint", "{ddb}", "doctor"],
         ExitStatus.USAGE, "state file .ddb2es/reindex-0123.json is not a ddb2es state file",
         files={".ddb2es/reindex-0123.json": '{"tables": {"orders": {"segments": 3}}}'}),
    # --- config validation ---
    Case("config-key-typo", ["drift", "orders"], ExitStatus.USAGE,
         "[defaults] has an unknown key 'index_prefx'; did you mean index_prefix?",
         config='[defaults]\nindex_prefx = "x-"\n'),
    Case("config-section-typo", ["drift", "orders"], ExitStatus.USAGE,
         "unknown section [serach]; did you mean [search]?",
         config='[serach]\nurl = "http://localhost:9200"\n'),
    Case("config-verify-certs-0", ["drift", "orders"], ExitStatus.USAGE,
         "[search] verify_certs must be true or false", config="[search]\nverify_certs = 0\n"),
    Case("config-verify-certs-string", ["drift", "orders"], ExitStatus.USAGE,
         "[search] verify_certs must be true or false",
         config='[search]\nverify_certs = "false"\n'),
    Case("config-endpoint-number", ["drift", "orders"], ExitStatus.USAGE,
         "[dynamodb] endpoint must be a URL string", config="[dynamodb]\nendpoint = 5\n"),
    Case("config-table-name-list", ["drift", "--all"], ExitStatus.USAGE,
         "[[tables]] name must be a string", config='[[tables]]\nname = ["a"]\n'),
    Case("config-table-name-invalid", ["drift", "--all"], ExitStatus.USAGE,
         "[[tables]] 'x' name is not a DynamoDB table name", config='[[tables]]\nname = "x"\n'),
    Case("config-index-prefix-uppercase", ["drift", "orders"], ExitStatus.USAGE,
         "[defaults] index_prefix must be lowercase", config='[defaults]\nindex_prefix = "Ab-"\n'),
    Case("config-index-prefix-comma", ["drift", "orders"], ExitStatus.USAGE,
         "[[tables]] 'orders' index_prefix must not contain",
         config='[[tables]]\nname = "orders"\nindex_prefix = "a,b"\n'),
    Case("config-ca-certs-missing", ["drift", "orders"], ExitStatus.USAGE,
         "[search] ca_certs names a file that does not exist",
         config='[search]\nca_certs = "/no/such/ca.pem"\n'),
    Case("config-password-wrong-type-not-echoed", ["drift", "orders"], ExitStatus.USAGE,
         "[search] password must be a string", config="[search]\npassword = 123456789\n",
         secrets=("123456789",)),
    Case("config-template-unknown-key", ["drift", "orders"], ExitStatus.USAGE,
         "[template] has an unknown key 'replica'; did you mean replicas?",
         config="[template]\nreplica = 1\n"),
    # --- the same checks for DDB2ES_* variables ---
    Case("env-es-url-no-scheme", ["drift", "orders"], ExitStatus.USAGE,
         "--es-url (DDB2ES_ES_URL) must start with http:// or https://",
         env={"DDB2ES_ES_URL": "localhost:9200"}),
    Case("env-verify-certs-garbage", ["drift", "orders"], ExitStatus.USAGE,
         "'maybe' is not a valid boolean", env={"DDB2ES_ES_VERIFY_CERTS": "maybe"}),
    Case("env-dynamodb-endpoint-bad-port", ["drift", "orders"], ExitStatus.USAGE,
         "is not a valid URL (bad host or port)",
         env={"DDB2ES_DYNAMODB_ENDPOINT": "http://localhost:80x0"}),
    # --- secrets in URLs are never echoed ---
    Case("es-url-password-with-slash-bad-port", ["--es-url", f"http://bob:{PASSWORD}@host:92x0",
         "drift", "orders"], ExitStatus.USAGE, "is not a valid URL", secrets=(PASSWORD, "odd#")),
    Case("es-url-password-no-scheme", ["--es-url", f"bob:{PASSWORD}@localhost:9200",
         "drift", "orders"], ExitStatus.USAGE,
         "must start with http:// or https:// (got 'localhost:9200')",
         secrets=(PASSWORD, "odd#")),
    Case("es-url-password-unreachable", ["--dynamodb-endpoint", "{ddb}", "--es-url",
         f"http://bob:{PASSWORD}@127.0.0.1:1", "drift", "orders"], ExitStatus.ERROR,
         "cannot reach http://127.0.0.1:1", secrets=(PASSWORD, "odd#")),
    Case("api-key-refused", [*DDB[:2], "--es-url", "{e404}", "--es-api-key", API_KEY,
         "drift", "orders"], ExitStatus.ERROR, f"{{e404}} {NOT_SEARCH} HTTP 404)",
         secrets=(API_KEY,)),
    # --- a search engine that answers its probe, then fails: one line, no traceback ---
    Case("search-500-after-probe", ["--dynamodb-endpoint", "{ddb}", "--es-url", "{os500}",
         "reindex", "orders"], ExitStatus.ERROR, "{os500} answered HTTP 500"),
    # --- --verbose never shows the session token, the AWS secret or a password ---
    Case("verbose-masks-secrets", [*DDB, "--es-username", "bob", "--es-password", PASSWORD,
         "drift", "--verbose", "no-such-table"], ExitStatus.ERROR,
         "table 'no-such-table' does not exist",
         env={"AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
              "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"},
         secrets=(SESSION_TOKEN, SECRET_KEY, PASSWORD)),
    # --- --json: the error is JSON on stdout ---
    Case("json-error", ["--json", "drift", "ab"], ExitStatus.USAGE,
         "'ab' is not a DynamoDB table name", json=True),
    Case("json-error-after-command", ["--dynamodb-endpoint", "{closed}", "--es-url", "{es}",
         "drift", "orders", "--json"], ExitStatus.ERROR, "cannot reach DynamoDB at {closed}",
         json=True),
    Case("json-click-usage-error", ["reindex", "orders", "--segments", "0", "--json"],
         ExitStatus.USAGE, "Invalid value for '--segments'", json=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, urls: dict[str, str], tmp_path: Path) -> None:
    if case.config is not None:
        (tmp_path / "ddb2es.toml").write_text(case.config)
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    args = [a.format(**urls) if a.startswith("{") else a for a in case.args]
    proc = run_cli(args, tmp_path, case.env)
    message = case.message.format(**urls)
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.exit, output
    assert "Traceback" not in output, output
    for secret in case.secrets:
        assert secret not in output, f"{secret!r} leaked:\n{output}"
    if case.json:
        answer = json.loads(proc.stdout)
        assert answer["exit_code"] == case.exit
        assert message in answer["error"], answer
        assert "\n" not in answer["error"]
        return
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert message in errors[0], proc.stderr
    if not case.id.startswith("verbose"):
        others = [
            line
            for line in proc.stderr.splitlines()
            if line.strip() and not line.startswith(("Error:", "Usage:", "Try ", "WARNING:"))
        ]
        assert not others, proc.stderr
