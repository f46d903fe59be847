"""Run and task state bookkeeping: apply executor events to a run document, finish and reset runs.

Pure functions over the stored run document, so the state machine is unit-testable without
processes. Tasks are keyed by their path inside the pipeline ("exit-handler-1/train"); the task id
is derived from run id + path so it stays the same across retries.
"""

from __future__ import annotations

import uuid
from typing import Any

from kfp_bridge.local.kfp.wire import UNKNOWN, status

RESTART_MESSAGE = (
    "the KFP stand-in server restarted while this run was executing, so the run was stopped; "
    "retry it with POST /apis/v2beta1/runs/{run_id}:retry (kfp.Client().runs.run_service_retry_run)"
)


def task_id(run_id: str, path: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfp-stand-in:{run_id}/{path}"))


def transition(holder: dict[str, Any], state: str, now: float, error: dict[str, Any] | None = None) -> None:
    """Set ``state`` and record it in ``state_history`` (runs and tasks alike)."""
    holder["state"] = state
    entry: dict[str, Any] = {"update_time": now, "state": state}
    if error:
        entry["error"] = error
    holder.setdefault("state_history", []).append(entry)


def _find(doc: dict[str, Any], path: str) -> dict[str, Any] | None:
    for task in doc.get("task_details") or []:
        if task.get("_path") == path:
            return task
    return None


def ensure_task(doc: dict[str, Any], path: str, now: float) -> dict[str, Any]:
    """The task entry for ``path``, created PENDING (and linked to its parent) when new."""
    task = _find(doc, path)
    if task is not None:
        return task
    run_id = doc["run_id"]
    parent_path, _, name = path.rpartition("/")
    task = {
        "_path": path,
        "run_id": run_id,
        "task_id": task_id(run_id, path),
        "display_name": name,
        "create_time": now,
        "state": "PENDING",
        "state_history": [{"update_time": now, "state": "PENDING"}],
    }
    if parent_path:
        parent = ensure_task(doc, parent_path, now)
        task["parent_task_id"] = parent["task_id"]
        children = parent.setdefault("child_tasks", [])
        if task["task_id"] not in children:
            children.append(task["task_id"])
    doc.setdefault("task_details", []).append(task)
    return task


def add_root_tasks(doc: dict[str, Any], names: list[str], now: float) -> None:
    for name in names:
        ensure_task(doc, name, now)


def apply_event(doc: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one executor event (see child.py) into the run document."""
    kind = event.get("type")
    now = float(event.get("time") or 0)
    if kind == "task_started":
        task = ensure_task(doc, event["path"], now)
        task["start_time"] = now
        task.pop("end_time", None)
        task.pop("error", None)
        transition(task, "RUNNING", now)
    elif kind == "task_finished":
        task = ensure_task(doc, event["path"], now)
        if event.get("cached") and task.get("state") == "SUCCEEDED":
            return  # a retry reused this task's earlier outputs; it did not run again
        state = event.get("state", "FAILED")
        error = status(UNKNOWN, event["error"]) if state == "FAILED" and event.get("error") else None
        task.setdefault("start_time", now)
        task["end_time"] = now
        if error:
            task["error"] = error
        transition(task, state, now, error)
        for child in event.get("children") or []:
            child_task = ensure_task(doc, f"{event['path']}/{child}", now)
            if child_task["state"] == "PENDING":
                child_task["end_time"] = now
                transition(child_task, "SKIPPED", now)
    elif kind == "run_finished":
        doc["_outcome"] = {"state": event.get("state", "FAILED"), "error": event.get("error", "")}


def finish(doc: dict[str, Any], state: str, now: float, error: str = "") -> None:
    """Close the run: unfinished tasks become SKIPPED/CANCELED/FAILED, then the run state."""
    for task in doc.get("task_details") or []:
        if task["state"] == "RUNNING":
            if state == "CANCELED":
                task_state, task_error = "CANCELED", status(UNKNOWN, "the run was terminated")
            else:
                task_state, task_error = "FAILED", status(UNKNOWN, error or "the run ended while this task was running")
            task["end_time"] = now
            task["error"] = task_error
            transition(task, task_state, now, task_error)
        elif task["state"] == "PENDING":
            task["end_time"] = now
            transition(task, "CANCELED" if state == "CANCELED" else "SKIPPED", now)
    run_error = status(UNKNOWN, error) if error and state in ("FAILED", "CANCELED") else None
    if run_error:
        doc["error"] = run_error
    doc["finished_at"] = now
    doc.pop("_pid", None)
    transition(doc, state, now, run_error)


def reset_for_retry(doc: dict[str, Any], now: float) -> None:
    """Prepare a FAILED/CANCELED run to run again: only tasks that did not succeed go back to PENDING."""
    doc["_attempt"] = int(doc.get("_attempt", 1)) + 1
    doc["_event_offset"] = 0
    doc.pop("_outcome", None)
    doc.pop("error", None)
    doc["finished_at"] = 0.0
    for task in doc.get("task_details") or []:
        if task["state"] != "SUCCEEDED":
            task.pop("error", None)
            task.pop("end_time", None)
            task.pop("start_time", None)
            transition(task, "PENDING", now)
    transition(doc, "RUNNING", now)


def failure_summary(doc: dict[str, Any]) -> str:
    """Name the innermost failed tasks and their errors, for the run-level error message."""
    failed = [t for t in doc.get("task_details") or [] if t["state"] == "FAILED" and not t.get("child_tasks")]
    parts = [f"task '{t['_path']}' failed: {(t.get('error') or {}).get('message', 'no error message')}" for t in failed]
    return "; ".join(parts)
