"""The run-lifecycle decisions of KfpHook that need no server: 409 on retry (fidelity.md K5,
backend/src/common/util/workflow.go GenerateRetryExecution answers 409 for any workflow that is
not Failed/Error), the pick among several runs with one tag (K10), and filter encoding (K1)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from kfp_bridge.hooks.kfp import KfpApiError, KfpHook, KfpRetryError, encode_filter, pick_run


class ScriptedHook(KfpHook):
    """retry_run answers with ``outcomes`` in order; get_run with ``states`` in order (last repeats)."""

    def __init__(self, outcomes: list[Exception | None], states: list[str]) -> None:
        super().__init__("unused")
        self.outcomes = list(outcomes)
        self.states = list(states)
        self.retries = 0

    def retry_run(self, run_id: str) -> None:
        self.retries += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome

    def get_run(self, run_id: str) -> dict:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"run_id": run_id, "state": state}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def conflict() -> KfpApiError:
    return KfpApiError("retry run r", 409, "Workflow must be Failed/Error to retry")


def _retry(hook: KfpHook, clock: Clock, **kwargs) -> dict:
    return hook.retry_and_confirm("r", sleep=clock.sleep, clock=clock, **kwargs)


def test_409_while_canceling_waits_until_it_has_stopped():
    clock = Clock()
    hook = ScriptedHook([conflict(), conflict(), None], ["CANCELING", "CANCELING", "RUNNING"])
    assert _retry(hook, clock)["state"] == "RUNNING"
    assert hook.retries == 3


def test_409_on_a_run_already_running_again_is_not_an_error():
    hook = ScriptedHook([conflict()], ["RUNNING"])
    assert _retry(hook, Clock())["state"] == "RUNNING"
    assert hook.retries == 1


def test_409_on_a_failed_run_gives_up_fast_with_the_reason():
    clock = Clock()
    hook = ScriptedHook([conflict()] * 100, ["FAILED"])
    with pytest.raises(KfpRetryError, match="Workflow must be Failed/Error.*on_rerun='new_run'"):
        _retry(hook, clock)
    assert clock.now <= 11  # a short grace for a lagging report, not the 60 s confirm window


def test_409_on_a_canceled_run_fails_at_once():
    hook = ScriptedHook([conflict()], ["CANCELED"])
    with pytest.raises(KfpRetryError, match="CANCELED"):
        _retry(hook, Clock())
    assert hook.retries == 1


def test_other_errors_are_not_retried():
    hook = ScriptedHook([KfpApiError("retry run r", 500, "offloaded status")], ["FAILED"])
    with pytest.raises(KfpApiError, match="500"):
        _retry(hook, Clock())


def test_accepted_retry_that_never_leaves_failed_is_reported():
    clock = Clock()
    hook = ScriptedHook([None], ["FAILED"])
    with pytest.raises(KfpRetryError, match="still FAILED after 5s.*11329"):
        _retry(hook, clock, confirm_seconds=5)


def test_pick_run_is_latest_created_then_most_alive():
    runs = [
        {"run_id": "a", "state": "FAILED", "created_at": "2026-01-01T00:00:01Z"},
        {"run_id": "b", "state": "RUNNING", "created_at": "2026-01-01T00:00:01Z"},
        {"run_id": "c", "state": "SUCCEEDED", "created_at": "2026-01-01T00:00:00Z"},
    ]
    assert pick_run(runs)["run_id"] == "b"
    assert pick_run(list(reversed(runs)))["run_id"] == "b"
    assert pick_run([]) is None


def test_filter_is_url_encoded_once():
    # The real server URL-unescapes filter a second time (K1): "+" must arrive as %2B.
    flt = {"predicates": [{"operation": "EQUALS", "key": "description", "string_value": "a+b c%"}]}
    encoded = encode_filter(flt)
    assert "+" not in encoded and " " not in encoded and "{" not in encoded
    assert '"a+b c%"' in unquote(encoded)


def test_multi_user_extra_without_namespace_fails_before_any_request(monkeypatch):
    # No server listens on this port: the check must not need one (K9, before any side effect).
    body = '{"conn_type": "kfp", "host": "http://127.0.0.1:9", "extra": {"multi_user": true}}'
    monkeypatch.setenv("AIRFLOW_CONN_KFP_MU_UNIT", body)
    from kfp_bridge.utils.kfp_connection import KfpConnectionError

    with pytest.raises(KfpConnectionError, match="multi-user.*set the connection extra 'namespace'"):
        KfpHook("kfp_mu_unit").check_namespace()
    KfpHook("kfp_mu_unit", namespace="team-a").check_namespace()  # a namespace: nothing to check
