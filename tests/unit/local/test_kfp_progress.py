"""Run/task bookkeeping of the KFP stand-in and how a component's error line is found (pure parts)."""

from __future__ import annotations

from kfp_bridge.local.kfp import progress
from kfp_bridge.local.kfp.child import error_line
from kfp_bridge.local.kfp.wire import render_run


def _run() -> dict:
    doc = {"run_id": "r1", "created_at": 1.0, "finished_at": 0.0}
    progress.transition(doc, "PENDING", 1.0)
    progress.add_root_tasks(doc, ["train", "deploy"], 1.0)
    return doc


def test_events_become_steps_and_the_run_carries_no_error_text():
    """Steps are private; KFP 2.17 puts no error on a run or its tasks (api_converter.go toApiRun,
    toApiPipelineTaskDetail), so the old per-task ``error``/``parent_task_id`` are gone (fidelity K3/K4)."""
    doc = _run()
    progress.apply_event(doc, {"type": "task_started", "path": "train", "time": 2.0})
    progress.apply_event(doc, {"type": "task_started", "path": "train/step", "time": 2.5})
    progress.apply_event(doc, {"type": "task_finished", "path": "train/step", "state": "FAILED",
                               "error": "ValueError: bad", "time": 3.0})
    assert doc["_steps"]["train/step"] == {"state": "FAILED", "start": 2.5, "end": 3.0, "attempt": 1}
    progress.finish(doc, "FAILED", 4.0, "step failed")
    assert doc["_steps"]["train"]["state"] == "FAILED"  # still running when the run stopped
    assert doc["state"] == "FAILED" and "error" not in doc and doc["finished_at"] == 4.0
    assert doc["_message"] == "step failed"
    assert progress.failed_steps(doc) == ["train/step"]
    assert "error" not in render_run(doc, None)


def test_retry_keeps_only_succeeded_steps_and_reopens_the_run():
    doc = _run()
    for path, state in (("train", "SUCCEEDED"), ("deploy", "FAILED")):
        progress.apply_event(doc, {"type": "task_started", "path": path, "time": 2.0})
        progress.apply_event(doc, {"type": "task_finished", "path": path, "state": state, "error": "x", "time": 3.0})
    progress.finish(doc, "FAILED", 4.0, "deploy failed")
    progress.reset_for_retry(doc, 5.0)
    assert doc["_steps"]["deploy"]["state"] == "RETRYING" and doc["_steps"]["train"]["state"] == "SUCCEEDED"
    assert doc["state"] == "RUNNING" and "_message" not in doc and doc["_attempt"] == 2
    # A retry-cache hit leaves the succeeded step untouched (Argo keeps succeeded nodes).
    before = dict(doc["_steps"]["train"])
    progress.apply_event(doc, {"type": "task_finished", "path": "train", "state": "SUCCEEDED", "cached": True, "time": 6})
    assert doc["_steps"]["train"] == before
    # A cross-run cache hit on a step that never ran in this run is marked cached.
    progress.apply_event(doc, {"type": "task_finished", "path": "deploy", "state": "SUCCEEDED", "cached": True, "time": 6})
    assert doc["_steps"]["deploy"]["cached"] is True
    wire = render_run(doc, {"pipelineInfo": {"name": "p"}})
    assert wire["finished_at"] == "1970-01-01T00:00:00Z"
    assert [s["state"] for s in wire["state_history"]] == ["PENDING", "FAILED", "RUNNING"]


def test_error_line_prefers_the_traceback_exception():
    printed = [
        "some progress\n",
        "Traceback (most recent call last):\n",
        '  File "x.py", line 3, in <module>\n',
        "    raise ValueError('nope')\n",
        "ValueError: nope\n",
        "\n",
    ]
    assert error_line(printed) == "ValueError: nope"
    assert error_line(["exit 3 without traceback\n"]) == "exit 3 without traceback"
    assert "printed nothing" in error_line([])
