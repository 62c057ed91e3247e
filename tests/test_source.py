"""Scan-side pieces that need no server: the capacity limiter and key shapes."""

from __future__ import annotations

from ddb2es_cli.source import CapacityLimiter, key_for_request, key_for_state


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
