"""The search side of drift as raw JSON, so numbers compare exactly whichever client is in use."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from ddb2es_cli.errors import ConfigError, ConnectionFailed, Ddb2esError, DriftError
from ddb2es_cli.transform import (
    KEY_FIELD,
)

log = logging.getLogger("ddb2es.drift")

MGET_DOCS = 500  # documents per _mget request
SCROLL_SIZE = 1000  # documents per scroll page
MAX_RESULT_WINDOW = 10_000  # the engines' default limit for one search page

# --- the search side as raw JSON -------------------------------------------------------------

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_ERROR_STATUSES = tuple(range(300, 600))


class SearchJson:
    """A few requests to the search cluster, answered as JSON with Decimal numbers.

    The client's own connection does the work (auth, TLS, SigV4), but its answer is parsed
    here: both client libraries parse floats, and `_source` numbers must keep their digits.
    Connection errors and 429/50x are retried a few times with backoff.
    """

    def __init__(
        self,
        client: Any,
        label: str = "the search cluster",
        *,
        attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        transport = getattr(client, "transport", None)
        self._send: Callable[[str, str, bytes | None, Mapping[str, str] | None], tuple[int, Any]]
        if hasattr(transport, "get_connection"):
            self._send = self._send_opensearch
        elif hasattr(transport, "node_pool"):
            self._send = self._send_elasticsearch
        else:
            raise ConfigError("drift needs an opensearch-py or elasticsearch-py client")
        self.client = client
        self.label = label
        self.attempts = attempts
        self.sleep = sleep

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        allow: Iterable[int] = (),
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        status, raw = 0, b""
        for attempt in range(self.attempts):
            last = attempt == self.attempts - 1
            try:
                status, raw = self._send(method, path, data, params)
            except Exception as exc:
                if not _is_connection_error(exc) or last:
                    if _is_connection_error(exc):
                        raise ConnectionFailed(
                            f"cannot reach {self.label}: {type(exc).__name__}"
                        ) from None
                    raise
                self.sleep(0.5 * 2**attempt)
                continue
            if status in _RETRY_STATUS and not last:
                self.sleep(0.5 * 2**attempt)
                continue
            break
        parsed = json.loads(raw, parse_float=Decimal) if raw else None
        if 200 <= status < 300 or status in set(allow):
            return status, parsed
        if status in (401, 403):
            raise ConnectionFailed(f"{self.label} refused our credentials (HTTP {status})")
        raise DriftError(f"{method} {path}: HTTP {status}: {_error_reason(parsed)}")

    def _send_opensearch(
        self, method: str, path: str, data: bytes | None, params: Mapping[str, str] | None
    ) -> tuple[int, Any]:
        connection = self.client.transport.get_connection()
        headers = {"content-type": "application/json"} if data is not None else None
        status, _headers, raw = connection.perform_request(
            method, path, params=params, body=data, headers=headers, ignore=_ERROR_STATUSES
        )
        return int(status), raw

    def _send_elasticsearch(
        self, method: str, path: str, data: bytes | None, params: Mapping[str, str] | None
    ) -> tuple[int, Any]:
        from elastic_transport import HttpHeaders

        # The client's own headers carry its auth (basic, API key); plain JSON suits 8 and 9.
        headers = HttpHeaders(getattr(self.client, "_headers", None) or {})
        headers["accept"] = "application/json"
        if data is not None:
            headers["content-type"] = "application/json"
        target = path + ("?" + urlencode(params) if params else "")
        node = self.client.transport.node_pool.get()
        response = node.perform_request(method, target, body=data, headers=headers)
        return int(response.meta.status), response.body

    # -- the requests drift makes --

    def refresh(self, indices: Iterable[str]) -> None:
        for name in sorted(set(indices)):
            self.request("POST", f"/{_q(name)}/_refresh", allow=(404,))

    def count(self, index: str) -> int | None:
        """Documents in `index`, or None when it does not exist."""
        status, body = self.request("GET", f"/{_q(index)}/_count", allow=(404,))
        return None if status == 404 else int(body["count"])

    def mget(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """`_source` of each (index, id) that exists; absent pairs (and indices) are left out."""
        found: dict[tuple[str, str], Any] = {}
        for start in range(0, len(pairs), MGET_DOCS):
            chunk = pairs[start : start + MGET_DOCS]
            docs = [{"_index": index, "_id": doc_id} for index, doc_id in chunk]
            _, body = self.request("POST", "/_mget", {"docs": docs})
            for (index, doc_id), doc in zip(chunk, body["docs"], strict=True):
                if doc.get("found"):
                    found[(index, doc_id)] = doc.get("_source", {})
                elif "error" in doc and not _is_index_missing(doc["error"]):
                    raise DriftError(f"mget {index}/{doc_id}: {_error_reason(doc)}")
        return found

    def random_docs(self, index: str, size: int, seed: int) -> list[tuple[str, Any]]:
        """(id, _source with only `_ddb2es_key`) of `size` documents in a seeded random order."""
        body = {
            "size": min(size, MAX_RESULT_WINDOW),
            "_source": [KEY_FIELD],
            "query": {
                "function_score": {
                    "query": {"match_all": {}},
                    "random_score": {"seed": seed, "field": "_seq_no"},
                }
            },
        }
        status, answer = self.request("POST", f"/{_q(index)}/_search", body, allow=(404,))
        if status == 404:
            return []
        return [(hit["_id"], hit.get("_source") or {}) for hit in answer["hits"]["hits"]]

    def scroll(self, index: str) -> Iterator[tuple[str, Any]]:
        """(id, _source) of every document in `index` (none when it does not exist)."""
        status, answer = self.request(
            "POST",
            f"/{_q(index)}/_search",
            {"size": SCROLL_SIZE, "sort": ["_doc"]},
            params={"scroll": "5m"},
            allow=(404,),
        )
        if status == 404:
            return
        scroll_id = answer.get("_scroll_id")
        try:
            while answer["hits"]["hits"]:
                for hit in answer["hits"]["hits"]:
                    yield hit["_id"], hit.get("_source") or {}
                _, answer = self.request(
                    "POST", "/_search/scroll", {"scroll": "5m", "scroll_id": scroll_id}
                )
                scroll_id = answer.get("_scroll_id", scroll_id)
        finally:
            if scroll_id:
                try:
                    self.request(
                        "DELETE", "/_search/scroll", {"scroll_id": [scroll_id]}, allow=(404,)
                    )
                except Ddb2esError as exc:  # the scroll expires by itself
                    log.debug("could not clear a scroll: %s", exc)


def _q(index: str) -> str:
    return quote(index, safe="")


def _is_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "ConnectionTimeout", "SSLError"})


def _is_index_missing(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") == "index_not_found_exception"


def _error_reason(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:300]
        return str(error)[:300]
    return str(body)[:300]
