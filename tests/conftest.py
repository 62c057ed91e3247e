"""Real servers for the suite: DynamoDB Local and osmem (OpenSearch) for the session, noida-db
(Elasticsearch 8) on demand. Every test gets its own table names and index prefix, so tests never
see each other's data."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ddb2es_cli import local
from ddb2es_cli.clients import make_dynamodb_client, make_search_client
from ddb2es_cli.config import (
    DynamoSettings,
    SearchSettings,
    Settings,
    TableSettings,
    TemplateSettings,
)
from tests.servers import free_port, start_elasticsearch


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 90.0) -> None:
    """Poll until `condition()` holds: tests wait for conditions, never for durations."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def dynamodb_url(servers_dir: Path) -> Iterator[str]:
    proc = local.start_dynamodb(free_port(), servers_dir)
    try:
        yield proc.url
    finally:
        local.stop(proc)


@pytest.fixture(scope="session")
def opensearch_url(servers_dir: Path) -> Iterator[str]:
    proc = local.start_search(free_port(), servers_dir)
    try:
        yield proc.url
    finally:
        local.stop(proc)


@pytest.fixture(scope="session")
def elasticsearch_url(servers_dir: Path) -> Iterator[str]:
    proc = start_elasticsearch(free_port(), servers_dir, servers_dir / "noida-data")
    try:
        yield proc.url
    finally:
        local.stop(proc)


@dataclass
class Stack:
    """One test's view of the servers: its own table names and index prefix."""

    dynamodb_url: str
    es_url: str
    prefix: str
    ddb: Any
    es: Any

    def table_name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def settings(self, *tables: str, **table_options: str) -> Settings:
        return Settings(
            dynamodb=DynamoSettings(endpoint=self.dynamodb_url, region="us-east-1"),
            search=SearchSettings(url=self.es_url),
            tables=tuple(
                TableSettings(name=t, index_prefix=self.prefix, **table_options) for t in tables
            ),
            index_prefix=self.prefix,
            template=TemplateSettings(name=self.template_name),
        )

    @property
    def template_name(self) -> str:
        """Each test its own template, so tests never rewrite one another's."""
        return f"{self.prefix}single-shard"

    def config_file(self, directory: Path, *tables: str) -> Path:
        """A ddb2es.toml naming `tables`, with this test's index prefix."""
        path = directory / "ddb2es.toml"
        lines = ["[defaults]", f'index_prefix = "{self.prefix}"', ""]
        lines += ["[template]", f'name = "{self.template_name}"', ""]
        for table in tables:
            lines += ["[[tables]]", f'name = "{table}"', ""]
        path.write_text("\n".join(lines))
        return path

    def cli_env(self) -> dict[str, str]:
        return {
            "DDB2ES_DYNAMODB_ENDPOINT": self.dynamodb_url,
            "DDB2ES_ES_URL": self.es_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }

    def create_table(
        self,
        name: str,
        hash_key: str = "pk",
        hash_type: str = "S",
        range_key: str | None = None,
        range_type: str = "N",
        stream: bool = False,
        view: str = "NEW_AND_OLD_IMAGES",
    ) -> str:
        keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        attrs = [{"AttributeName": hash_key, "AttributeType": hash_type}]
        if range_key:
            keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
            attrs.append({"AttributeName": range_key, "AttributeType": range_type})
        extra: dict[str, Any] = {}
        if stream:
            extra["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": view,
            }
        full = self.table_name(name)
        self.ddb.create_table(
            TableName=full,
            KeySchema=keys,
            AttributeDefinitions=attrs,
            BillingMode="PAY_PER_REQUEST",
            **extra,
        )
        self.ddb.get_waiter("table_exists").wait(TableName=full)
        return full

    def put_items(self, table: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            pending: dict[str, Any] = {table: batch}
            while pending:
                pending = self.ddb.batch_write_item(RequestItems=pending)["UnprocessedItems"]

    def indices(self) -> list[str]:
        found = self.es.indices.get(index=f"{self.prefix}*", expand_wildcards="open")
        return sorted(found)

    def cleanup(self) -> None:
        for table in self.ddb.list_tables()["TableNames"]:
            if table.startswith(self.prefix):
                self.ddb.delete_table(TableName=table)
        for index in self.indices():
            self.es.indices.delete(index=index)


def _stack(dynamodb_url: str, es_url: str) -> Iterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    ddb = make_dynamodb_client(DynamoSettings(endpoint=dynamodb_url, region="us-east-1"))
    es, _ = make_search_client(SearchSettings(url=es_url))
    stack = Stack(dynamodb_url, es_url, prefix, ddb, es)
    try:
        yield stack
    finally:
        stack.cleanup()
        es.close()


@pytest.fixture
def stack(dynamodb_url: str, opensearch_url: str) -> Iterator[Stack]:
    """DynamoDB Local + the OpenSearch-compatible server (opensearch-py path)."""
    yield from _stack(dynamodb_url, opensearch_url)


@pytest.fixture
def es_stack(dynamodb_url: str, elasticsearch_url: str) -> Iterator[Stack]:
    """DynamoDB Local + the Elasticsearch 8 stand-in (elasticsearch-py path)."""
    yield from _stack(dynamodb_url, elasticsearch_url)


@pytest.fixture(params=["opensearch", "elasticsearch"])
def any_stack(request: pytest.FixtureRequest) -> Stack:
    """The same test against both engines."""
    name = "stack" if request.param == "opensearch" else "es_stack"
    stack: Stack = request.getfixturevalue(name)
    return stack


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS or DDB2ES_* settings from the outer environment, no ~/.aws, no ./ddb2es.toml."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "DDB2ES_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(tmp_path)
