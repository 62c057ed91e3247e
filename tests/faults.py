"""Fault injection for the tests: wrappers around the real clients and a TCP proxy.

The servers answer everything for real; these only withhold or break what a test names.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def _bulk_lines(kwargs: dict[str, Any]) -> tuple[str, list[str]]:
    """The bulk body's lines, and which keyword carried them (the two libraries differ)."""
    if "operations" in kwargs:
        operations = kwargs["operations"]
        if isinstance(operations, str | bytes):  # the whole body as one text
            text = operations.decode() if isinstance(operations, bytes) else operations
            return "operations", [ln for ln in text.split("\n") if ln]
        lines = [ln.decode() if isinstance(ln, bytes) else str(ln) for ln in operations]
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


class ClientWrapper:
    """The real search client, seen by ddb2es as itself (helpers pick the library by class)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._client)

    def options(self, **_: Any) -> ClientWrapper:
        return self  # elasticsearch-py's helpers call client.options() before bulk


class HoldDocument(ClientWrapper):
    """A search client whose bulk answers 429 for one document id until `released()` is true.

    The held document is taken out of the request, so the server never sees it; every other
    document of the request goes to the server as sent. `index` narrows the hold to one index.
    """

    def __init__(self, client: Any, doc_id: str, index: str | None = None) -> None:
        super().__init__(client)
        self.doc_id = doc_id
        self.index = index
        self.held = 0
        self.held_event = threading.Event()
        self.released: Callable[[], bool] = lambda: False

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


class FaultProxy:
    """A loopback TCP proxy in front of a search server that breaks chosen bulk requests.

    `plan(n)` decides the fate of the n-th bulk request (1-based): "pass", "reset" (half of it
    reaches the server, then both connections are reset), "503" (the server never sees it;
    the client gets 503 Service Unavailable) or "stall" (the server never sees it and the client
    gets no answer until it gives up). Everything else passes untouched.
    """

    def __init__(self, upstream_port: int, plan: Callable[[int], str]) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.bulks = 0
        self.faults: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._upstream, args=(client, server), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client), daemon=True).start()

    def _fate(self, data: bytes) -> str:
        if b"/_bulk" not in data.split(b"\r\n", 1)[0]:
            return "pass"
        with self._lock:
            self.bulks += 1
            fate = self.plan(self.bulks)
            if fate != "pass":
                self.faults.append(fate)
        return fate

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                fate = self._fate(data) if data[:4] in (b"POST", b"PUT ") else "pass"
                if fate == "reset":
                    server.sendall(data[: len(data) // 2])
                    _reset(client, server)
                    return
                if fate == "stall":
                    while client.recv(65536):  # swallow the rest until the client hangs up
                        pass
                    return
                if fate == "503":
                    client.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
                    )
                    _reset(client, server)
                    return
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, server)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        _close(source, target)


def _reset(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(*sockets)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
