"""The one place that builds DynamoDB and Elasticsearch/OpenSearch clients.

Which search client to use depends on the server, so `GET /` is asked first:
- OpenSearch 1-3 (and AWS managed domains, and Serverless `aoss`): opensearch-py.
- Elasticsearch 7.x (including AWS's "Elasticsearch 7.10" domains): opensearch-py too. It is the
  7.10 client forked, speaks plain `application/json`, signs SigV4 and has no product check,
  whereas elasticsearch-py 8+ refuses 7.10-7.13 servers and sends compatibility headers they
  do not know.
- Elasticsearch 8/9: elasticsearch-py, with the compatibility header lowered to the server's
  major version (the 9.x client sends `compatible-with=9`, which Elasticsearch 8 rejects).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from ddb2es_cli.config import DynamoSettings, SearchSettings, redact
from ddb2es_cli.errors import ConfigError, ConnectionFailed
from ddb2es_cli.retry import is_connection_error, status_of

LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class Engine:
    """What answered `GET /`."""

    distribution: str  # "opensearch" | "elasticsearch"
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def client_library(self) -> str:
        if self.distribution == "elasticsearch" and self.major >= 8:
            return "elasticsearch-py"
        return "opensearch-py"

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}"


# --- DynamoDB ---------------------------------------------------------------------------------


def make_boto_session(settings: DynamoSettings) -> boto3.session.Session:
    """The default AWS credential chain; a local endpoint works without any credentials."""
    session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    if settings.endpoint and session.get_credentials() is None:
        session = boto3.session.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name=settings.region or LOCAL_REGION,
        )
    return session


def make_dynamodb_client(
    settings: DynamoSettings,
    service: str = "dynamodb",
    max_pool_connections: int = 64,
    max_attempts: int = 10,
) -> Any:
    """A low-level client (`dynamodb` or `dynamodbstreams`) with botocore's standard retries."""
    session = make_boto_session(settings)
    region = session.region_name or (LOCAL_REGION if settings.endpoint else None)
    if region is None:
        raise ConfigError("no AWS region: pass --region or set AWS_REGION")
    config = BotoConfig(
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=60,
    )
    factory: Any = session  # boto3's stubs type `client` per literal service name
    return factory.client(
        service, endpoint_url=settings.endpoint or None, region_name=region, config=config
    )


# --- search -----------------------------------------------------------------------------------


def _aws_auth(settings: SearchSettings, region: str | None) -> Any:
    from opensearchpy import Urllib3AWSV4SignerAuth

    session = boto3.session.Session(region_name=region)
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("AWS SigV4 auth: no AWS credentials found in the default chain")
    if not session.region_name:
        raise ConfigError("AWS SigV4 auth needs a region: pass --region or set AWS_REGION")
    return Urllib3AWSV4SignerAuth(credentials, session.region_name, settings.aws_service)


def _opensearch_client(settings: SearchSettings, region: str | None, timeout: float) -> Any:
    from opensearchpy import OpenSearch, Urllib3HttpConnection

    kwargs: dict[str, Any] = {
        "hosts": [settings.url],
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
        "timeout": timeout,
        "connection_class": Urllib3HttpConnection,
        "http_compress": False,
    }
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.auth == "basic":
        kwargs["http_auth"] = (settings.username, settings.password)
    elif settings.auth == "api-key":
        kwargs["headers"] = {"authorization": f"ApiKey {_api_key_token(settings.api_key)}"}
    elif settings.auth == "aws-sigv4":
        kwargs["http_auth"] = _aws_auth(settings, region)
    return OpenSearch(**kwargs)


def _api_key_token(api_key: str | None) -> str:
    """Accept the encoded key, or `id:key` which Elasticsearch wants base64-encoded."""
    key = api_key or ""
    if ":" in key:
        return base64.b64encode(key.encode()).decode()
    return key


def _compat_transport(server_major: int) -> type:
    """A Transport that lowers elasticsearch-py's `compatible-with=N` to the server's major.

    Built on demand so that importing this module (the Lambda handler does) needs no
    elasticsearch-py.
    """
    from elastic_transport import Transport
    from elasticsearch import __version__

    ours = f"compatible-with={__version__[0]}"
    theirs = f"compatible-with={server_major}"

    class CompatTransport(Transport):
        def perform_request(self, method: str, target: str, **kwargs: Any) -> Any:
            headers = kwargs.get("headers")
            if headers:
                for name in ("accept", "content-type"):
                    value = headers.get(name)
                    if value and ours in value:
                        headers[name] = value.replace(ours, theirs)
            return super().perform_request(method, target, **kwargs)

    return CompatTransport


def _elasticsearch_client(settings: SearchSettings, engine: Engine, timeout: float) -> Any:
    from elasticsearch import Elasticsearch

    transport = _compat_transport(engine.major)
    kwargs: dict[str, Any] = {
        "hosts": [settings.url],
        "verify_certs": settings.verify_certs,
        "request_timeout": timeout,
        "transport_class": transport,
    }
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.auth == "basic":
        kwargs["basic_auth"] = (settings.username, settings.password)
    elif settings.auth == "api-key":
        kwargs["api_key"] = _api_key_token(settings.api_key)
    elif settings.auth == "aws-sigv4":
        raise ConfigError(
            f"AWS SigV4 auth is for OpenSearch and Elasticsearch 7.x domains, not {engine}"
        )
    return Elasticsearch(**kwargs)


def detect_engine(settings: SearchSettings, region: str | None = None) -> Engine:
    """Ask `GET /` which engine and version this is (Serverless has no `GET /`: OpenSearch)."""
    if settings.auth == "aws-sigv4" and settings.aws_service == "aoss":
        return Engine("opensearch", "2.0.0")
    client = _opensearch_client(settings, region, timeout=15)
    try:
        info = call_search(settings, client.info)
    finally:
        client.close()
    version = info.get("version", {})
    distribution = version.get("distribution") or "elasticsearch"
    number = version.get("number")
    if not number:
        raise ConnectionFailed(f"{settings.safe_url} did not say which version it runs")
    return Engine(str(distribution), str(number))


def make_search_client(
    settings: SearchSettings, region: str | None = None, *, timeout: float = 120
) -> tuple[Any, Engine]:
    """The right client for the server at `settings.url`, and what the server is."""
    engine = detect_engine(settings, region)
    if engine.client_library == "elasticsearch-py":
        return _elasticsearch_client(settings, engine, timeout), engine
    return _opensearch_client(settings, region, timeout), engine


def helpers_for(client: Any) -> ModuleType:
    """The bulk helpers that belong to the client's library."""
    try:
        from elasticsearch import Elasticsearch
    except ImportError:  # a Lambda package built for OpenSearch only
        Elasticsearch = ()  # type: ignore[assignment,misc]

    if isinstance(client, Elasticsearch):
        from elasticsearch import helpers as es_helpers

        return es_helpers
    from opensearchpy import helpers as os_helpers

    return os_helpers


def call_search(settings: SearchSettings, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the client; turn connection and auth failures into one-line, secret-free errors."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        status = status_of(exc)
        if status in (401, 403):
            raise ConnectionFailed(
                f"{settings.safe_url} refused our credentials (HTTP {status}, auth "
                f"{settings.describe_auth()})"
            ) from None
        if is_connection_error(exc):
            reason = redact(_short_reason(exc), settings.secrets())
            raise ConnectionFailed(f"cannot reach {settings.safe_url}: {reason}") from None
        raise


_ERRNO = re.compile(r"\[Errno -?\d+\] [^)'\"]*")


def _short_reason(exc: Exception) -> str:
    """`[Errno 111] Connection refused` rather than three nested reprs."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    if "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        return "timed out"
    if "SSL" in text or "certificate" in text.lower():
        return "TLS error: " + text.splitlines()[0][:200]
    return type(exc).__name__
