"""Fault injection for the tests: wrappers around the real clients and a TCP proxy.

The servers answer everything for real; these only withhold or break what a test names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def _bulk_lines(kwargs: dict[str, Any]) -> tuple[str, list[str]]:
    """The bulk body's lines, and which keyword carried them (the two libraries differ)."""
    if "operations" in kwargs:
        lines = [ln.decode() if isinstance(ln, bytes) else str(ln) for ln in kwargs["operations"]]
        return "operations", lines
    body = kwargs["body"]
    text = body.decode() if isinstance(body, bytes) else str(body)
    return "body", [ln for ln in text.split("\n") if ln]


def _pairs(lines: list[str]) -> list[list[str]]:
    """Bulk lines grouped per action (`delete` has no source line)."""
    out: list[list[str]] = []
    n = 0
    while n < len(lines):
        meta = json.loads(lines[n])
        size = 1 if "delete" in meta else 2
        out.append(lines[n : n + size])
        n += size
    return out


class HoldDocument:
    """A search client whose bulk answers 429 for one document id until `released()` is true.

    The held document is taken out of the request, so the server never sees it; every other
    document of the request goes to the server as sent. `index` narrows the hold to one index.
    """

    def __init__(self, client: Any, doc_id: str, index: str | None = None) -> None:
        self._client = client
        self.doc_id = doc_id
        self.index = index
        self.held = 0
        self.held_event = threading.Event()
        self.released: Callable[[], bool] = lambda: False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # so helpers_for picks the wrapped client's library
        return type(self._client)

    def options(self, **_: Any) -> HoldDocument:
        return self  # elasticsearch-py's helpers call client.options() before bulk

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        key, lines = _bulk_lines(kwargs)
        pairs = _pairs(lines)
        held = [n for n, pair in enumerate(pairs) if self._holds(json.loads(pair[0]))]
        if not held or self.released():
            return self._client.bulk(*args, **kwargs)
        self.held += len(held)
        self.held_event.set()
        kept = [pair for n, pair in enumerate(pairs) if n not in held]
        items: list[Any] = []
        if kept:
            flat = [line for pair in kept for line in pair]
            sent = dict(kwargs)
            sent[key] = flat if key == "operations" else "\n".join(flat) + "\n"
            response = self._client.bulk(*args, **sent)
            body = getattr(response, "body", response)
            items = list(body["items"])
        for n in held:
            kind = next(iter(json.loads(pairs[n][0])))
            meta = next(iter(json.loads(pairs[n][0]).values()))
            busy = {
                "_index": meta["_index"],
                "_id": meta["_id"],
                "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "held by test"},
            }
            items.insert(n, {kind: busy})
        answer = {"took": 1, "errors": True, "items": items}
        if key == "operations":  # elasticsearch-py's helper reads `.body`
            return SimpleNamespace(body=answer)
        return answer

    def _holds(self, action: dict[str, Any]) -> bool:
        meta = next(iter(action.values()))
        return bool(meta["_id"] == self.doc_id and self.index in (None, meta["_index"]))
