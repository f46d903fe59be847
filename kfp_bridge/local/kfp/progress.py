"""Run and step state bookkeeping: fold executor events into a run document, finish and reset runs.

Pure functions over the stored run document, so the state machine is unit-testable without
processes. Steps (what kfp.local executed) are kept privately under ``_steps``, keyed by their path
inside the pipeline ("exit-handler-1/train", "for-loop-2/for-loop-2-iteration-0/square"); the API's
``task_details`` are the Argo nodes derived from them by :func:`refresh` (see argo_nodes.py).

As in KFP 2.17 no error text reaches the API: ``Run.error`` is only set by the real server when it
cannot convert its own record (api_converter.go ``toApiRun``), and task rows never carry one. Why a
run stopped is kept in ``_message`` for the stand-in's own log; the step's error is in its pod log.
"""

from __future__ import annotations

from typing import Any

from kfp_bridge.local.kfp import argo_nodes

RESTART_MESSAGE = (
    "the KFP stand-in server restarted while this run was executing, so the run was stopped; "
    "retry it with POST /apis/v2beta1/runs/{run_id}:retry (kfp.Client().runs.run_service_retry_run)"
)
_WORKFLOW_PHASE = {"RUNNING": "Running", "CANCELING": "Running", "SUCCEEDED": "Succeeded", "FAILED": "Failed"}


def transition(holder: dict[str, Any], state: str, now: float) -> None:
    """Set ``state`` and record it in ``state_history``."""
    holder["state"] = state
    holder.setdefault("state_history", []).append({"update_time": now, "state": state})


def add_root_tasks(doc: dict[str, Any], names: list[str], now: float) -> None:
    """Called at CreateRun. A real run is stored PENDING with no task details until Argo reports
    its first nodes (resource_manager.go CreateRun, fidelity K7), so this only prepares the steps."""
    doc.setdefault("_steps", {})


def apply_event(doc: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one executor event (see child.py) into the run document."""
    kind = event.get("type")
    now = float(event.get("time") or 0)
    steps = doc.setdefault("_steps", {})
    if kind == "run_started":
        doc.setdefault("_started", now)
    elif kind == "task_started":
        steps[event["path"]] = {"state": "RUNNING", "start": now, "end": 0.0, "attempt": int(doc.get("_attempt", 1))}
    elif kind == "task_finished":
        step = steps.get(event["path"])
        if event.get("cached") and step and step["state"] == "SUCCEEDED":
            return  # a retry reused this step's earlier outputs; Argo keeps its succeeded nodes as they were
        if step is None:
            step = steps[event["path"]] = {"start": now, "attempt": int(doc.get("_attempt", 1))}
        step["state"] = event.get("state", "FAILED")
        step["end"] = now
        if event.get("cached"):
            step["cached"] = True
        else:
            step.pop("cached", None)
    elif kind == "run_finished":
        doc["_outcome"] = {"state": event.get("state", "FAILED"), "error": event.get("error", "")}


def finish(doc: dict[str, Any], state: str, now: float, message: str = "") -> None:
    """Close the run. Steps still running fail, as Argo fails the pods it stops (a terminated run
    ends Failed after ``activeDeadlineSeconds=0``: resource_manager.go TerminateRun, fidelity K2)."""
    steps = doc.get("_steps") or {}
    for path, step in list(steps.items()):
        if step.get("state") == "RUNNING" or (step.get("state") == "RETRYING" and state == "FAILED"):
            step["state"] = "FAILED"
            step["end"] = now
        elif step.get("state") == "RETRYING":
            del steps[path]  # not run again in a run that succeeded: nothing of it is left
    if message:
        doc["_message"] = message
    doc.pop("error", None)
    doc["finished_at"] = now
    doc.pop("_pid", None)
    transition(doc, state, now)


def reset_for_retry(doc: dict[str, Any], now: float) -> None:
    """Prepare a FAILED run to run again: succeeded steps keep their nodes, the others run anew
    (common/util/workflow.go GenerateRetryExecution). The caller refreshes the nodes right away."""
    doc["_attempt"] = int(doc.get("_attempt", 1)) + 1
    doc["_event_offset"] = 0
    doc.pop("_outcome", None)
    doc.pop("_message", None)
    doc.pop("error", None)
    doc["finished_at"] = 0.0
    steps = doc.get("_steps") or {}
    for step in steps.values():
        if step.get("state") != "SUCCEEDED":
            # Failed DAG nodes go back to Running, failed pods are deleted (their rows stay as they were).
            step.update(state="RETRYING", end=0.0)
    transition(doc, "RUNNING", now)


def refresh(doc: dict[str, Any], spec: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Rebuild the Argo nodes from the steps and upsert them into ``task_details``; returns the nodes."""
    phase = _WORKFLOW_PHASE.get(doc.get("state", ""))
    if phase is None or not spec:
        return []  # PENDING: no workflow status reported yet
    wf = doc.get("_workflow") or argo_nodes.workflow_name(spec, doc["run_id"])
    doc["_workflow"] = wf
    started = doc.get("_started") or next(
        (h["update_time"] for h in doc.get("state_history") or [] if h["state"] == "RUNNING"), now)
    finished = doc.get("finished_at") if phase != "Running" else 0.0
    nodes = argo_nodes.build(spec, wf, doc.get("_steps") or {}, {"phase": phase, "started": started, "finished": finished})
    argo_nodes.upsert_tasks(doc, nodes, now)
    return nodes


def failed_steps(doc: dict[str, Any]) -> list[str]:
    """Paths of the innermost failed steps, for the stand-in's own messages."""
    steps = doc.get("_steps") or {}
    failed = [p for p, s in steps.items() if s.get("state") == "FAILED"]
    return [p for p in failed if not any(q.startswith(p + "/") for q in failed)]
