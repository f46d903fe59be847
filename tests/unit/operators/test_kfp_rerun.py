"""Rerun decisions of KfpRunOperator that need no server: the retry request's patience with 409."""

from __future__ import annotations

import pytest

from kfp_bridge.hooks.kfp import KfpApiError
from kfp_bridge.operators import kfp as kfp_operator
from kfp_bridge.operators.kfp import KfpRunOperator


class RetryRecorder:
    """Answers retry_run with the given outcomes in order (an exception or None)."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    def retry_run(self, run_id):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome


@pytest.fixture
def operator(monkeypatch):
    monkeypatch.setattr(kfp_operator.time, "sleep", lambda seconds: None)
    return KfpRunOperator(task_id="t", pipeline="p.yaml")


def test_retry_waits_out_a_run_that_is_still_shutting_down(operator):
    hook = RetryRecorder([KfpApiError("retry run r", 409, "still shutting down")] * 2 + [None])
    operator._request_retry(hook, "r")
    assert hook.calls == 3


def test_retry_of_a_non_retryable_run_fails_at_once(operator):
    hook = RetryRecorder([KfpApiError("retry run r", 400, "run r is SUCCEEDED")])
    with pytest.raises(KfpApiError, match="SUCCEEDED"):
        operator._request_retry(hook, "r")
    assert hook.calls == 1


def test_retry_gives_up_after_the_confirm_window(operator, monkeypatch):
    now = iter(range(0, 10_000, 30))
    monkeypatch.setattr(kfp_operator.time, "monotonic", lambda: next(now))
    hook = RetryRecorder([KfpApiError("retry run r", 409, "busy")] * 10)
    with pytest.raises(KfpApiError, match="409"):
        operator._request_retry(hook, "r")
    assert hook.calls < 10
