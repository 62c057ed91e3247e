"""`local seed` never drops tables anywhere but a loopback endpoint without being told, and
never drops existing tables without asking; DynamoDB Local runs with one shared database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from ddb2es_cli import local, seed
from ddb2es_cli.cli import cli
from ddb2es_cli.errors import ExitStatus, LocalStackError
from tests.servers import free_port

CREDS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1"}


def _client(url: str, key: str = "local", region: str = "us-east-1") -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=key,
    )


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.mark.parametrize(
    "url, loopback",
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://127.8.9.10", True),
        ("http://10.0.0.5:8000", False),
        ("https://dynamodb.us-east-1.amazonaws.com", False),
        ("http://localhost.example.com:8000", False),
        ("http://127.0.0.1.nip.io:8000", False),
        ("not a url", False),
        ("", False),
        (None, False),
    ],
)
def test_only_loopback_endpoints_count_as_local(url: str | None, loopback: bool) -> None:
    assert local.is_loopback_endpoint(url) is loopback


@pytest.mark.parametrize(
    "env",
    [
        {"DDB2ES_DYNAMODB_ENDPOINT": "http://dynamodb.invalid:8000"},
        {"DDB2ES_DYNAMODB_ENDPOINT": "", "AWS_ENDPOINT_URL_DYNAMODB": "http://dynamodb.invalid"},
        {"DDB2ES_DYNAMODB_ENDPOINT": "http://10.255.255.1:8000"},
    ],
)
def test_seed_refuses_a_remote_endpoint_before_any_call(env: dict[str, str]) -> None:
    # Through the real CLI: a call to the (unresolvable or unroutable) endpoint would be exit 1.
    result = subprocess.run(
        [sys.executable, "-m", "ddb2es_cli", "local", "seed", "--items", "3", "--yes"],
        env={**os.environ, **CREDS, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitStatus.USAGE, result.stderr
    assert "--allow-remote" in result.stderr
    assert "ddb2es-demo-orders" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seed_refuses_aws_itself() -> None:
    result = CliRunner().invoke(
        cli, ["local", "seed"], env={**CREDS, "DDB2ES_DYNAMODB_ENDPOINT": ""}
    )
    assert result.exit_code == ExitStatus.USAGE
    assert "AWS" in result.output and "--allow-remote" in result.output


def test_allow_remote_lets_the_call_through() -> None:
    result = CliRunner().invoke(
        cli,
        ["local", "seed", "--items", "3", "--allow-remote", "--yes"],
        env={**CREDS, "DDB2ES_DYNAMODB_ENDPOINT": "http://dynamodb.invalid:1"},
    )
    assert result.exit_code == ExitStatus.ERROR  # the call was made, and failed


def test_existing_tables_are_listed_and_kept_without_yes(dynamodb_url: str) -> None:
    prefix = _prefix()
    env = {**CREDS, "DDB2ES_DYNAMODB_ENDPOINT": dynamodb_url}
    first = CliRunner().invoke(cli, ["local", "seed", "--items", "30", "--prefix", prefix], env=env)
    assert first.exit_code == 0, first.output  # nothing existed: no question
    again = CliRunner().invoke(cli, ["local", "seed", "--items", "6", "--prefix", prefix], env=env)
    assert again.exit_code == ExitStatus.USAGE
    for name in seed.table_names(prefix):
        assert name in again.output
    assert "--yes" in again.output
    ddb = _client(dynamodb_url)
    count = ddb.scan(TableName=f"{prefix}orders", Select="COUNT", ConsistentRead=True)["Count"]
    assert count == 10  # not dropped
    forced = CliRunner().invoke(
        cli, ["local", "seed", "--items", "6", "--prefix", prefix, "--yes"], env=env
    )
    assert forced.exit_code == 0, forced.output
    count = ddb.scan(TableName=f"{prefix}orders", Select="COUNT", ConsistentRead=True)["Count"]
    assert count == 2


def test_dynamodb_local_shares_one_database_across_credentials(dynamodb_url: str) -> None:
    name = f"{_prefix()}shared"
    _client(dynamodb_url, "demo", "us-east-1").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    other = _client(dynamodb_url, "someoneElse42", "eu-west-1")
    assert name in other.list_tables(Limit=100, ExclusiveStartTableName=name[:-1])["TableNames"]


def test_state_dir_is_per_user_not_per_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DDB2ES_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    here = local.default_state_dir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert local.default_state_dir() == here == tmp_path / "xdg" / "ddb2es" / "local"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert local.default_state_dir() == Path.home() / ".local" / "state" / "ddb2es" / "local"


def test_port_clash_names_the_make_variables(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(LocalStackError, match=r"DEMO_DYNAMODB_PORT=.*DEMO_ES_PORT="):
            local.up(tmp_path, dynamodb_port=taken, es_port=free_port())


def _listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* spells them) of sockets listening on port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs /proc/net")
def test_dynamodb_local_listens_on_loopback_only(dynamodb_url: str) -> None:
    port = int(dynamodb_url.rsplit(":", 1)[1])
    addresses = _listen_addresses(port)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
    assert addresses and addresses <= loopback, addresses


def test_without_javac_dynamodb_local_still_starts_and_says_it_listens_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    real = local.ensure_dynamodb_local()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / real.name).symlink_to(real)  # the emulator, but no compiled launcher
    java = shutil.which("java")
    assert java is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java)  # java without javac
    monkeypatch.setenv("PATH", str(bin_dir))
    proc = local.start_dynamodb(free_port(), tmp_path / "state", cache_dir=cache)
    try:
        assert "listens on every interface" in caplog.text
        assert _client(proc.url).list_tables()["TableNames"] == []
    finally:
        local.stop(proc)
