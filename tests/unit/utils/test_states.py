from __future__ import annotations

import pytest

from kfp_bridge.utils.states import RunState, RunStatus, is_retryable, is_success, is_terminal


@pytest.mark.parametrize(
    ("state", "terminal", "success", "retryable"),
    [
        ("PENDING", False, False, False),
        ("RUNNING", False, False, False),
        ("CANCELING", False, False, False),
        ("PAUSED", False, False, False),  # paused can resume: never success, never final
        ("SUCCEEDED", True, True, False),
        ("SKIPPED", True, True, False),
        ("FAILED", True, False, True),
        ("CANCELED", True, False, True),  # kfp's own wait loop misses this one
        ("RUNTIME_STATE_UNSPECIFIED", False, False, False),
    ],
)
def test_predicates(state, terminal, success, retryable):
    parsed = RunState.parse(state)
    assert is_terminal(parsed) is terminal
    assert is_success(parsed) is success
    assert is_retryable(parsed) is retryable


def test_unknown_state_keeps_waiting():
    assert RunState.parse("SOMETHING_NEW") is RunState.UNSPECIFIED
    assert RunState.parse(None) is RunState.UNSPECIFIED
    assert RunState.parse("succeeded") is RunState.SUCCEEDED


RUN = {
    "run_id": "r-1",
    "state": "FAILED",
    "experiment_id": "e-1",
    "pipeline_version_reference": {"pipeline_id": "p-1", "pipeline_version_id": "v-1"},
    "run_details": {
        "task_details": [
            {"display_name": "load", "state": "SUCCEEDED", "start_time": "2026-01-01T00:00:00Z",
             "end_time": "2026-01-01T00:00:05Z"},
            {"display_name": "train", "state": "FAILED", "error": {"code": 2, "message": "ValueError: bad lr"},
             "end_time": "1970-01-01T00:00:00Z"},
        ]
    },
}


def test_from_api_reads_steps_and_failure():
    status = RunStatus.from_api(RUN)
    assert status.pipeline_version_id == "v-1"
    assert [s.name for s in status.failed_steps] == ["train"]
    assert status.steps[1].end_time is None  # the epoch means "unset"
    message = status.failure_message()
    assert "step 'train' failed: ValueError: bad lr" in message
    assert "load" not in message
    assert status.step_states() == {"load": "SUCCEEDED", "train": "FAILED"}


def test_progress_key_changes_with_step_state():
    before = RunStatus.from_api({**RUN, "state": "RUNNING"})
    after = RunStatus.from_api(
        {**RUN, "state": "RUNNING", "run_details": {"task_details": RUN["run_details"]["task_details"][:1]}}
    )
    assert before.progress_key() != after.progress_key()
    assert "1/2 steps finished" not in before.progress_line()
    assert "2/2 steps finished" in before.progress_line()


def test_canceled_message_says_so():
    status = RunStatus.from_api({"run_id": "r", "state": "CANCELED"})
    assert "terminated" in status.failure_message()
