"""The bulk writer builds the next chunk while a request is in flight (issue 14): the transform
and the scan do not wait for the cluster's answer. No timings: the first request waits (bounded)
until the writer has taken the first action of the second chunk, which a writer that builds
chunks only after each answer never does while a request is open."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ddb2es_cli.sink import Action, BulkOptions, BulkWriter, index_action
from ddb2es_cli.transform import Document
from tests.conftest import Stack
from tests.faults import ClientWrapper

CHUNK = 3


class WaitsForTheNextChunk(ClientWrapper):
    """The first bulk request holds until the writer pulled an action of the second chunk."""

    def __init__(self, client: Any, pulled: threading.Event) -> None:
        super().__init__(client)
        self.pulled = pulled
        self.overlapped: bool | None = None

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        if self.overlapped is None:
            self.overlapped = self.pulled.wait(timeout=20)
        return self._client.bulk(*args, **kwargs)


def test_the_next_chunk_is_built_while_a_request_is_in_flight(any_stack: Stack) -> None:
    stack = any_stack
    pulled = threading.Event()

    def actions() -> Iterator[tuple[Action, Any]]:
        for n in range(3 * CHUNK):
            if n == CHUNK:
                pulled.set()
            doc = Document(f"{stack.prefix}overlap", f'{{"pk":"{n}"}}', f'{{"n":{n}}}', "")
            yield index_action(doc, 1), n

    es = WaitsForTheNextChunk(stack.es, pulled)
    results = list(BulkWriter(es, BulkOptions(chunk_size=CHUNK)).write(actions()))
    assert es.overlapped is True
    assert [r.tag for r in results] == list(range(3 * CHUNK))  # answers still in request order
    assert all(r.error is None for r in results)
