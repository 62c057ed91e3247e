"""The bulk writer against the real servers: outcomes reach the action they belong to."""

from __future__ import annotations

from typing import Any

from ddb2es_cli.sink import BulkOptions, BulkWriter, index_action
from ddb2es_cli.transform import Document
from tests.conftest import Stack
from tests.faults import ClientWrapper, HoldDocument


def test_results_are_charged_to_their_own_action_when_ids_repeat(any_stack: Stack) -> None:
    """Two documents with one id (two tables' keys can be equal) in indices reached through
    aliases: a retried 429 on the first must not swap the outcomes of the two."""
    stack = any_stack
    for name, mapping in (("a", {}), ("b", {"properties": {"n": {"type": "integer"}}})):
        stack.es.indices.create(
            index=f"{stack.prefix}{name}-gen",
            body={"mappings": mapping, "aliases": {f"{stack.prefix}{name}": {}}},
        )
    good = Document(f"{stack.prefix}a", '{"pk":"1"}', '{"n":"text is fine here"}', '{"pk":"1"}')
    bad = Document(f"{stack.prefix}b", '{"pk":"1"}', '{"n":"not a number"}', '{"pk":"1"}')
    es = HoldDocument(stack.es, good.id, index=good.index)
    es.released = lambda: es.held >= 1  # one 429, then the document goes through
    writer = BulkWriter(es, BulkOptions(initial_backoff=0.01, max_backoff=0.02))
    results = {
        r.tag: r
        for r in writer.write([(index_action(good, 1), "good"), (index_action(bad, 1), "bad")])
    }
    assert es.held == 1
    assert results["good"].error is None and results["good"].status in (200, 201)
    assert results["bad"].error is not None and "n" in results["bad"].error


class CountingBulk(ClientWrapper):
    requests = 0

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return self._client.bulk(*args, **kwargs)


def test_the_byte_cap_splits_chunks_without_a_retry(any_stack: Stack) -> None:
    stack = any_stack
    docs = [
        Document(f"{stack.prefix}cap", f'{{"pk":"{n}"}}', f'{{"text":"{"x" * 400}"}}', "")
        for n in range(6)
    ]
    es = CountingBulk(stack.es)
    slept: list[float] = []
    writer = BulkWriter(es, BulkOptions(max_chunk_bytes=1200), sleep=slept.append)
    results = list(writer.write((index_action(d, 1), d.id) for d in docs))
    assert [r.tag for r in results] == [d.id for d in docs]
    assert all(r.error is None for r in results)
    assert es.requests == 3 and slept == []  # two documents per request, no backoff
