from __future__ import annotations

import asyncio

import pytest

from kfp_bridge.utils.retry import RetryPolicy, acall_with_retry, call_with_retry, is_transient


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses(status):
    assert is_transient(HttpError(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 500])
def test_permanent_statuses(status):
    assert not is_transient(HttpError(status))


def test_connection_errors_are_transient():
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError("bad input"))


def test_backoff_is_capped_and_exponential():
    policy = RetryPolicy(initial_backoff=1, max_backoff=5, total_budget=1000)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_retries_until_success():
    clock = FakeClock()
    outcomes = [HttpError(503), HttpError(503), "ok"]

    def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert call_with_retry(call, RetryPolicy(initial_backoff=1), sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [1, 2]


def test_permanent_error_is_not_retried():
    clock = FakeClock()
    calls = []

    def call():
        calls.append(1)
        raise HttpError(403)

    with pytest.raises(HttpError):
        call_with_retry(call, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1
    assert clock.sleeps == []


def test_budget_stops_retries():
    clock = FakeClock()
    policy = RetryPolicy(initial_backoff=1, max_backoff=4, total_budget=10)

    def call():
        raise HttpError(503)

    with pytest.raises(HttpError):
        call_with_retry(call, policy, sleep=clock.sleep, clock=clock)
    assert sum(clock.sleeps) <= 10
    assert clock.sleeps == [1, 2, 4]


def test_async_variant_retries():
    clock = FakeClock()
    outcomes = [HttpError(429), "ok"]

    async def call():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def sleep(seconds):
        clock.sleep(seconds)

    assert asyncio.run(acall_with_retry(call, RetryPolicy(initial_backoff=0.5), sleep=sleep, clock=clock)) == "ok"
    assert clock.sleeps == [0.5]
