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


def test_events_build_nested_tasks_with_stable_ids():
    doc = _run()
    progress.apply_event(doc, {"type": "task_started", "path": "train", "time": 2.0})
    progress.apply_event(doc, {"type": "task_started", "path": "train/step", "time": 2.5})
    progress.apply_event(doc, {"type": "task_finished", "path": "train/step", "state": "FAILED",
                               "error": "ValueError: bad", "time": 3.0})
    progress.apply_event(doc, {"type": "task_finished", "path": "train", "state": "FAILED", "error": "inner",
                               "children": ["step", "other"], "time": 3.0})
    tasks = {t["_path"]: t for t in doc["task_details"]}
    assert tasks["train/step"]["parent_task_id"] == tasks["train"]["task_id"] == progress.task_id("r1", "train")
    assert tasks["train/step"]["error"] == {"code": 2, "message": "ValueError: bad"}
    assert tasks["train/other"]["state"] == "SKIPPED"  # never started inside a finished DAG
    progress.finish(doc, "FAILED", 4.0, "step failed")
    assert tasks["deploy"]["state"] == "SKIPPED"  # never reached before the run failed
    assert doc["state"] == "FAILED" and doc["error"]["message"] == "step failed" and doc["finished_at"] == 4.0
    assert progress.failure_summary(doc) == "task 'train/step' failed: ValueError: bad"


def test_retry_resets_only_unsuccessful_tasks_and_reopens_the_run():
    doc = _run()
    for path, state in (("train", "SUCCEEDED"), ("deploy", "FAILED")):
        progress.apply_event(doc, {"type": "task_started", "path": path, "time": 2.0})
        progress.apply_event(doc, {"type": "task_finished", "path": path, "state": state, "error": "x", "time": 3.0})
    progress.finish(doc, "FAILED", 4.0, "deploy failed")
    progress.reset_for_retry(doc, 5.0)
    states = {t["_path"]: t["state"] for t in doc["task_details"]}
    assert states == {"train": "SUCCEEDED", "deploy": "PENDING"}
    assert doc["state"] == "RUNNING" and "error" not in doc and doc["_attempt"] == 2
    # A cache hit on retry leaves the succeeded task untouched.
    before = [dict(t) for t in doc["task_details"] if t["_path"] == "train"]
    progress.apply_event(doc, {"type": "task_finished", "path": "train", "state": "SUCCEEDED", "cached": True, "time": 6})
    assert [t for t in doc["task_details"] if t["_path"] == "train"] == before
    wire = render_run(doc, {"pipelineInfo": {"name": "p"}})
    assert wire["finished_at"] == "1970-01-01T00:00:00Z"
    assert [s["state"] for s in wire["state_history"]] == ["PENDING", "FAILED", "RUNNING"]
    assert all("_path" not in t for t in wire["run_details"]["task_details"])


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
