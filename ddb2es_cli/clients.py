"""The one place that builds DynamoDB and Elasticsearch/OpenSearch clients (the DynamoDB side is
in dynamodb_client.py).

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
import json
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from ddb2es_cli.config import DynamoSettings, SearchSettings
from ddb2es_cli.dynamodb_client import LOCAL_REGION as LOCAL_REGION
from ddb2es_cli.dynamodb_client import aws_error as aws_error
from ddb2es_cli.dynamodb_client import dynamodb_where as dynamodb_where
from ddb2es_cli.dynamodb_client import make_boto_session as make_boto_session
from ddb2es_cli.dynamodb_client import make_dynamodb_client as make_dynamodb_client
from ddb2es_cli.errors import ConfigError, ConnectionFailed, Ddb2esError
from ddb2es_cli.redaction import redact
from ddb2es_cli.retry import is_connection_error, status_of
from ddb2es_cli.transport_warnings import warn_transport

log = logging.getLogger("ddb2es.clients")


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


# --- search -----------------------------------------------------------------------------------


def _aws_auth(settings: SearchSettings, region: str | None) -> Any:
    from opensearchpy import Urllib3AWSV4SignerAuth

    # The same session as DynamoDB's: `--profile` signs both sides.
    session = make_boto_session(DynamoSettings(region=region, profile=settings.aws_profile))
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
    info = _quick_root(settings)
    if info is not None:
        return engine_of(settings, info)
    client = _opensearch_client(settings, region, timeout=15)
    try:
        info = call_search(settings, client.transport.perform_request, "GET", "/")
    except Ddb2esError:
        raise
    except Exception as exc:
        raise _not_a_search_server(settings, exc) from None
    finally:
        client.close()
    return engine_of(settings, info)


def _quick_root(settings: SearchSettings) -> Any:
    """`GET /` with urllib3 alone, or None for anything but a JSON answer with HTTP 200.

    opensearch-py costs about 0.3 s of CPU to import, which an Elasticsearch run would pay only to
    ask this one question. Any failure (and SigV4, which needs the client's signer) goes the
    client's way instead, so errors read exactly as before.
    """
    if settings.auth == "aws-sigv4":
        return None
    import urllib3

    headers = {"accept": "application/json"}
    if settings.auth == "basic":
        headers.update(urllib3.make_headers(basic_auth=f"{settings.username}:{settings.password}"))
    elif settings.auth == "api-key":
        headers["authorization"] = f"ApiKey {_api_key_token(settings.api_key)}"
    options: dict[str, Any] = {"timeout": urllib3.Timeout(15), "retries": False}
    if settings.url.startswith("https://"):
        options["cert_reqs"] = "CERT_REQUIRED" if settings.verify_certs else "CERT_NONE"
        if settings.ca_certs:
            options["ca_certs"] = settings.ca_certs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unverified TLS: warn_transport said it once
            with urllib3.PoolManager(**options) as pool:
                answer = pool.request("GET", settings.url.rstrip("/") + "/", headers=headers)
        if answer.status != 200:
            return None
        return json.loads(answer.data)
    except Exception:
        return None


def engine_of(settings: SearchSettings, info: Any) -> Engine:
    """The engine a `GET /` answer describes, or one line saying the server is not one."""
    version = info.get("version") if isinstance(info, dict) else None
    number = version.get("number") if isinstance(version, dict) else None
    if not isinstance(number, str) or not number[:1].isdigit():
        what = (
            "a JSON " + type(info).__name__.replace("dict", "object").replace("str", "text")
            if not isinstance(info, dict)
            else "no version number"
        )
        raise ConnectionFailed(
            f"{settings.safe_url} is not an Elasticsearch/OpenSearch server (GET / answered {what})"
        )
    distribution = version.get("distribution") if isinstance(version, dict) else None
    return Engine(str(distribution or "elasticsearch"), number)


def _not_a_search_server(settings: SearchSettings, exc: Exception) -> ConnectionFailed:
    status = status_of(exc)
    if isinstance(status, int):
        answer = f"HTTP {status}"
    elif "Serializ" in type(exc).__name__ or isinstance(exc, ValueError):
        answer = "something that is not JSON"
    else:
        answer = type(exc).__name__
    return ConnectionFailed(
        f"{settings.safe_url} is not an Elasticsearch/OpenSearch server (GET / answered {answer})"
    )


def make_search_client(
    settings: SearchSettings, region: str | None = None, *, timeout: float = 120
) -> tuple[Any, Engine]:
    """The right client for the server at `settings.url`, and what the server is."""
    warn_transport(settings)
    engine = detect_engine(settings, region)
    if engine.client_library == "elasticsearch-py":
        return _elasticsearch_client(settings, engine, timeout), engine
    return _opensearch_client(settings, region, timeout), engine


def is_elasticsearch_client(client: Any) -> bool:
    """True for elasticsearch-py's client (its API takes `operations=`), False for opensearch-py.

    Looks only at a library already imported: a client of it exists only if it was, and
    importing elasticsearch-py costs about 0.4 s of CPU that an OpenSearch run never needs.
    """
    module = sys.modules.get("elasticsearch")
    cls = getattr(module, "Elasticsearch", None)
    return isinstance(cls, type) and isinstance(client, cls)


def helpers_for(client: Any) -> ModuleType:
    """The bulk helpers that belong to the client's library."""
    if is_elasticsearch_client(client):
        from elasticsearch import helpers as es_helpers

        return es_helpers
    from opensearchpy import helpers as os_helpers

    return os_helpers


def call_search(settings: SearchSettings, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the client; turn connection and auth failures into one-line, secret-free errors."""
    try:
        return func(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        # A DynamoDB failure inside a search step: name DynamoDB, not the search server.
        raise aws_error(exc, None) from None
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


def search_library_errors() -> tuple[type[Exception], ...]:
    """The search client libraries' error bases, of those imported (none imported: none)."""
    found: list[type[Exception]] = []
    for module, names in (
        ("opensearchpy.exceptions", ("OpenSearchException",)),
        ("elasticsearch.exceptions", ("ApiError", "TransportError")),
        ("elastic_transport", ("TransportError",)),
    ):
        loaded = sys.modules.get(module)
        found.extend(getattr(loaded, n) for n in names if loaded and hasattr(loaded, n))
    return tuple(found)


def search_error(exc: Exception, settings: SearchSettings | None) -> Ddb2esError:
    """A search engine answer no core function expected, as one line (no traceback)."""
    status = status_of(exc)
    where = settings.safe_url if settings else "the search engine"
    secrets = settings.secrets() if settings else ()
    text = redact(" ".join(str(exc).split())[:300], secrets) or type(exc).__name__
    answered = f"answered HTTP {status}" if status else "failed"
    return Ddb2esError(f"{where} {answered}: {type(exc).__name__}: {text}")


def run_stopped(exc: Exception, settings: SearchSettings) -> Ddb2esError:
    """Connection loss and auth errors stop a run with one clear line (its state is saved)."""

    def reraise() -> None:
        raise exc

    try:
        call_search(settings, reraise)
    except Ddb2esError as known:
        return ConnectionFailed(f"{known}; progress is saved: rerun with --resume")
    except Exception:
        pass
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return Ddb2esError(
        f"reindex stopped: {type(exc).__name__}: {text}; progress is saved: rerun with --resume"
    )
