from __future__ import annotations

from kfp_bridge.utils.retry import RetryPolicy, next_wait


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


POLICY = RetryPolicy(initial_backoff=1, max_backoff=4, total_budget=10)


def test_transient_failure_waits_the_backoff_of_its_attempt():
    assert [next_wait(POLICY, HttpError(503), attempt, 0.0) for attempt in (1, 2, 3, 4)] == [1, 2, 4, 4]


def test_permanent_failure_is_raised_at_once():
    assert next_wait(POLICY, HttpError(403), 1, 0.0) is None
    assert next_wait(POLICY, ValueError("bad input"), 1, 0.0) is None


def test_wait_may_end_exactly_at_the_budget_but_not_past_it():
    assert next_wait(POLICY, ConnectionRefusedError(), 3, 6.0) == 4
    assert next_wait(POLICY, ConnectionRefusedError(), 3, 6.5) is None
