"""The scan side: the capacity limiter, key shapes and the bounded parallel scan."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddb2es_cli.source import (
    CapacityLimiter,
    SegmentTask,
    _with_throttle_retry,
    key_for_request,
    key_for_state,
    scan_pages,
)
from tests.conftest import Stack


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_keeps_consumed_capacity_under_the_cap() -> None:
    clock = FakeClock()
    limiter = CapacityLimiter(5.0, clock=clock, sleep=clock.sleep)
    consumed = 0.0
    for _ in range(20):
        limiter.wait()
        limiter.consume(10.0)  # each page costs 10 RCU, twice the per-second cap
        consumed += 10.0
    # The first second's allowance may be spent at once; everything after is paid for in time.
    assert clock.now >= (consumed - 10.0 - 5.0) / 5.0
    assert clock.now <= consumed / 5.0 + 1.0  # and it does not wait longer than needed


def test_no_cap_never_waits() -> None:
    clock = FakeClock()
    limiter = CapacityLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        limiter.wait()
        limiter.consume(1000.0)
    assert clock.now == 0.0


def test_keys_round_trip_between_request_and_state_shapes() -> None:
    request_key = {"pk": {"B": b"\x00\x01"}, "sk": {"N": "5"}}
    state_key = key_for_state(request_key)
    assert state_key == {"pk": {"B": "AAE="}, "sk": {"N": "5"}}
    assert key_for_request(state_key) == request_key
    assert key_for_state(state_key) == state_key


class CountingDynamo:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.scans = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def scan(self, **kwargs: Any) -> Any:
        self.scans += 1
        return self._client.scan(**kwargs)


def test_pages_read_ahead_are_bounded_whatever_the_table_size(stack: Stack) -> None:
    table = stack.create_table("bounded")
    stack.put_items(table, [{"pk": {"S": f"k{i}"}} for i in range(400)])
    ddb = CountingDynamo(stack.ddb)
    tasks = [SegmentTask(table, s, 4) for s in range(4)]
    taken = 0
    for page in scan_pages(ddb, tasks, workers=4, page_limit=10, max_pages=2):
        taken += 1
        time.sleep(0.01)  # a slow consumer: the scan threads must wait for it
        # Scans sent = pages handed out + at most max_pages read ahead (and the last, empty one).
        assert ddb.scans <= taken + 2
        assert page.table == table
    assert taken >= 40


def _throttled(calls: list[dict[str, Any]], times: int) -> Any:
    def call(**request: Any) -> Any:
        calls.append(request)
        if len(calls) <= times:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            raise ClientError({"Error": error}, "Scan")
        return {"Items": []}

    return call


def test_throttling_is_retried_until_the_call_goes_through() -> None:
    calls: list[dict[str, Any]] = []
    answer = _with_throttle_retry(_throttled(calls, 3), {}, threading.Event(), max_backoff=0.01)
    assert answer == {"Items": []} and len(calls) == 4


def test_throttling_past_its_retry_budget_stops_with_the_error() -> None:
    """botocore's retries, then ours for a bounded time: never an endless loop."""
    calls: list[dict[str, Any]] = []
    with pytest.raises(ClientError):
        _with_throttle_retry(
            _throttled(calls, 10**9), {}, threading.Event(), max_backoff=0.01, give_up_after=0.2
        )
    assert len(calls) >= 2
