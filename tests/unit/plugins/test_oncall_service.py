"""The on-call service's pure decisions on KFP 2.17-shaped runs: steps by pipeline path with the
failed step's log tail, terminated runs blame no step, and when "Terminate KFP run" is offered."""

from __future__ import annotations

from kfp_bridge.plugins.service import _run_note, step_views, terminate_refusal
from kfp_bridge.utils.states import RunStatus
from tests.unit.utils.argo_nodes import N, container, task_details


def _status(state: str, nodes: list[N], run_phase: str, **kwargs) -> RunStatus:
    details = task_details("p-abcde", nodes, run_phase)
    return RunStatus.from_api({"run_id": "r1", "state": state, "run_details": {"task_details": details}}, **kwargs)


def test_failed_step_row_carries_its_log_tail_and_other_rows_none():
    nodes = [*container("prepare"), *container("train", "Failed", deps=["prepare"])]
    status = _status("FAILED", nodes, "Failed")
    rows = {row.name: row for row in step_views(status.steps, status.failed_steps, {"train": "ValueError: bad lr"})}
    assert set(rows) == {"prepare", "train"}  # no driver, executor, root or workflow rows
    assert (rows["train"].state, rows["train"].log_tail, rows["train"].error) == ("FAILED", "ValueError: bad lr", "ValueError: bad lr")
    assert rows["prepare"].log_tail is None and rows["prepare"].error is None


def test_run_terminated_by_airflow_is_noted_and_blames_no_step():
    nodes = [*container("prepare"), N("train-driver", deps=["prepare"]),
             N("train", "Failed", [N("executor", "Omitted")], deps=["train-driver"])]
    status = _status("FAILED", nodes, "Failed", terminated_by_airflow="the task was killed")
    assert _run_note(status) == "Terminated by Airflow (the task was killed); no step failed."
    assert [row.log_tail for row in step_views(status.steps, status.failed_steps)] == [None, None]


def test_terminate_is_offered_only_for_a_running_run_of_a_stopped_task():
    running = _status("RUNNING", [*container("train", "Running")], "Running")
    assert terminate_refusal(running, "failed") is None
    assert "mark the task failed" in terminate_refusal(running, "deferred")
    done = _status("SUCCEEDED", container("train"), "Succeeded")
    assert "already SUCCEEDED" in terminate_refusal(done, "failed")
