"""Is a local server ready? A real answer in JSON from the server itself, not just an open port
(a JVM can listen before DynamoDB Local serves; osmem and noida answer `GET /` once ready)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

# DynamoDB Local checks that a key id is present but never verifies the signature, so a fixed
# fake header gets a real 200 answer without needing botocore.
_FAKE_SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def dynamodb_answers(url: str) -> bool:
    """True when DynamoDB itself answers a ListTables call with JSON (any status)."""
    request = urllib.request.Request(
        url,
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Authorization": _FAKE_SIGV4,
        },
    )
    return _answers_json(request)


def root_answers_json(url: str) -> bool:
    """True when `GET /` answers with JSON, as Elasticsearch and OpenSearch do once ready."""
    return _answers_json(urllib.request.Request(url + "/"))


def _answers_json(request: urllib.request.Request) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError):
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


HEALTH: dict[str, Callable[[str], bool]] = {
    "dynamodb": dynamodb_answers,
    "search": root_answers_json,
    "elasticsearch": root_answers_json,
}
