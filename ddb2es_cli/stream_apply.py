"""Applying one planned batch with one bulk request (more only past the size cap): a refused
document is a permanent failure, an overload or a lost connection leaves its records retryable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ddb2es_cli.ownership import deployment_name
from ddb2es_cli.retry import CONFLICT_STATUS
from ddb2es_cli.sink import BulkOptions, BulkWriter
from ddb2es_cli.stream_indices import create_indices, rebuild_copies
from ddb2es_cli.stream_records import PlannedOp, StreamConfig, StreamResult, plan_batch


def apply_batch(
    es: Any, records: Sequence[Mapping[str, Any]], config: StreamConfig
) -> StreamResult:
    """Apply one batch of stream records with one bulk request (more only past the size cap).

    Never raises for the cluster's sake: a document the engine refused is a permanent failure,
    an overload answer or a client exception (lost connection, timeout) leaves the documents it
    concerns as retryable.
    """
    result = StreamResult()
    ops = plan_batch(records, config, result)
    create_indices(es, ops, deployment_name(config.deployment, config.index_prefix))
    try:
        ops += rebuild_copies(es, ops, config.index_prefix)
    except Exception as exc:  # the marker lookup failed: nothing was written yet
        reason = f"alias lookup failed: {exception_text(exc)}"
        for op in ops:
            result.retry(op.position, records[op.position], reason)
        return result
    writer = BulkWriter(
        es,
        BulkOptions(
            chunk_size=max(1, len(ops)),
            max_chunk_bytes=config.max_bulk_bytes,
            initial_backoff=0.2,
            max_backoff=2.0,
            retry_for=5.0,  # then the record is reported and retried as a whole
        ),
    )
    answered: set[int] = set()
    started = time.monotonic()
    try:
        for outcome in writer.write((op.action, n) for n, op in enumerate(ops)):
            if not isinstance(outcome.tag, int):
                continue  # an answer we cannot match: its op counts as unanswered below
            answered.add(outcome.tag)
            _record_outcome(result, records, ops[outcome.tag], outcome)
    except Exception as exc:  # raised by the client: connection lost, timeout, request refused
        reason = f"bulk request failed: {exception_text(exc)}"
    else:
        reason = "no answer from the cluster for this document"
    finally:
        result.bulk_seconds = time.monotonic() - started
    for n, op in enumerate(ops):
        if n not in answered:
            result.retry(op.position, records[op.position], reason, _op_index(op))
    return result


def _record_outcome(
    result: StreamResult, records: Sequence[Mapping[str, Any]], op: PlannedOp, outcome: Any
) -> None:
    is_delete = "delete" in op.action[0]
    status = outcome.status
    if op.rebuild_copy and status == 404 and not is_delete:
        # The generation is gone (a failed reload cleaned up): nothing to keep current.
        return
    if status == CONFLICT_STATUS:
        result.conflicts += 1
    elif is_delete and status == 404:
        result.deleted += 1  # already gone: the external version still rules
    elif outcome.error is None:
        if is_delete:
            result.deleted += 1
        else:
            result.indexed += 1
    elif outcome.retryable:  # 429/502/503/504: the cluster was busy or away
        result.retry(op.position, records[op.position], f"{status} {outcome.error}", outcome.index)
    else:
        result.fail(op.position, records[op.position], f"{status} {outcome.error}", outcome.index)


def _op_index(op: PlannedOp) -> str:
    return str(next(iter(op.action[0].values()))["_index"])


def exception_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
