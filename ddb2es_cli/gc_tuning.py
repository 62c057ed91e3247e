"""The cyclic garbage collector during a bulk load (issue 14).

A reindex allocates a few dozen containers per item (the decoded Scan page, actions, tags), and
CPython's collector runs a young collection every 700 net allocations and a full one every few
hundred of those. A full collection walks every object the process holds, and after start-up
that is several hundred thousand (botocore's service models, both client libraries): measured
on 100,000 small items, the collector took about 18 us of the client's CPU per item, most of it
in full collections.

So for the length of a load, what exists before it starts is frozen (moved out of the
collector's sight: it lives as long as the process anyway), and young collections run less
often. Cycles made during the load are still collected; items themselves are freed by reference
counting as before, so memory stays bounded by the pages and chunks in flight.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Net allocations of containers between two young collections during a load (CPython's default
# is 700). Items are freed by reference counting, so the count only grows with what stays alive
# (the pages and chunks in flight, some 30,000 containers) or with cyclic garbage: at 200,000 a
# steady load is almost never interrupted, and in-flight pages are not promoted and re-walked.
LOAD_GEN0_THRESHOLD = 200_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None
_unfreeze = False  # only when nothing was frozen before: an embedding program's freeze stays


@contextlib.contextmanager
def collector_tuned_for_load() -> Iterator[None]:
    """Freeze what exists now and collect young objects less often; both undone on exit.

    Nests (a reload runs loads inside a command): only the outermost one changes and restores.
    """
    global _depth, _saved, _unfreeze
    with _lock:
        _depth += 1
        if _depth == 1:
            _saved = gc.get_threshold()
            _unfreeze = gc.get_freeze_count() == 0
            gc.freeze()
            gc.set_threshold(max(_saved[0], LOAD_GEN0_THRESHOLD), _saved[1], _saved[2])
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                if _unfreeze:
                    gc.unfreeze()
                _saved = None
