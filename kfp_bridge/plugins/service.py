"""What the on-call view shows and what "Retry failed steps" does, apart from HTTP.

Runs inside the Airflow api-server. Database work happens in short sessions of its own, never
across a KFP call: on SQLite an open read transaction would hold up the scheduler while KFP answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kfp_bridge.utils.run_tags import task_identity
from kfp_bridge.utils.states import RETRYABLE_STATES, RunState, RunStatus, is_terminal
from kfp_bridge.utils.steps import Step

# kfp_bridge.operators.kfp.RUN_ID_KEY / TERMINATED_KEY (not imported: that module pulls in the operator stack)
RUN_ID_KEY = "kfp_run_id"
TERMINATED_KEY = "kfp_terminated_by_airflow"
DEFAULT_CONN_ID = "kfp_default"
KFP_TASK_TYPES = frozenset({"KfpRunOperator"})
KFP_TASK_MODULES = frozenset({"kfp_bridge.operators.kfp"})
# Airflow task states in which the task is (about to be) doing something: clearing it now would
# kill it or race with it, so the action refuses.
BUSY_TASK_STATES = frozenset(
    {"running", "queued", "scheduled", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)
# The api-server's threads must not wait long on KFP: a retry is confirmed (or not) within this.
RETRY_CONFIRM_SECONDS = 8.0
TERMINATE_WAIT_SECONDS = 8.0
AUDIT_EVENT = "kfp_bridge.retry_failed_steps"
TERMINATE_AUDIT_EVENT = "kfp_bridge.terminate_kfp_run"


class OnCallError(Exception):
    """A refusal or failure with the HTTP status the API answers with and a reason for on-call."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True)
class TaskRef:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @property
    def tag_map_index(self) -> int | None:
        return None if self.map_index < 0 else self.map_index


@dataclass
class TaskInfo:
    """What the database says about the task instance and its task."""

    ref: TaskRef
    state: str | None
    try_number: int
    operator: str | None
    is_kfp_task: bool
    conn_id: str
    namespace: str | None
    stored_run_id: str | None
    terminated_by_airflow: dict[str, Any] | None = None  # TERMINATED_KEY: {"run_id", "reason"}
    kubernetes_conn_id: str | None = None  # the task's connection for executor log tails


@dataclass
class StepView:
    name: str
    state: str
    error: str | None
    start_time: str | None
    end_time: str | None
    duration_seconds: float | None
    attempts: int = 1
    log_tail: str | None = None  # last lines of a failed step's main container log, or where it is

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "error": self.error,
            "log_tail": self.log_tail,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration_seconds": self.duration_seconds,
            "attempts": self.attempts,
        }


@dataclass
class RunView:
    """The on-call view of one task instance: its KFP run, steps and whether it can be retried."""

    ref: TaskRef
    task_state: str | None
    try_number: int
    is_kfp_task: bool
    conn_id: str
    run_id: str | None = None
    run_found_by: str | None = None
    run_state: str | None = None
    run_name: str | None = None
    run_error: str | None = None
    run_url: str | None = None
    steps: list[StepView] = field(default_factory=list)
    retryable: bool = False
    reason: str | None = None  # why the action is not available, for the page and the 409
    terminable: bool = False  # "Terminate KFP run": the task stopped, its run did not
    terminate_reason: str | None = None  # why Terminate is not available
    problem: str | None = None  # the KFP API could not be asked
    kfp_unreachable: bool = False  # ... because KFP gave no answer or a transient one (an outage)

    @property
    def failed_steps(self) -> list[str]:
        return [step.name for step in self.steps if step.state in ("FAILED", "CANCELED") and step.log_tail is not None]

    @property
    def active(self) -> bool:
        """Something is still changing: the page refreshes itself while this is true."""
        run_active = self.run_state is not None and not is_terminal(RunState.parse(self.run_state))
        return run_active or (self.task_state in BUSY_TASK_STATES) or self.task_state is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.ref.dag_id,
            "dag_run_id": self.ref.run_id,
            "task_id": self.ref.task_id,
            "map_index": self.ref.map_index,
            "task_state": self.task_state,
            "try_number": self.try_number,
            "is_kfp_task": self.is_kfp_task,
            "kfp_conn_id": self.conn_id,
            "kfp_run_id": self.run_id,
            "kfp_run_found_by": self.run_found_by,
            "kfp_run_state": self.run_state,
            "kfp_run_name": self.run_name,
            "kfp_run_error": self.run_error,
            "kfp_run_url": self.run_url,
            "steps": [step.as_dict() for step in self.steps],
            "failed_steps": self.failed_steps,
            "retryable": self.retryable,
            "reason": self.reason,
            "terminable": self.terminable,
            "terminate_reason": self.terminate_reason,
            "problem": self.problem,
        }


# ----- pure helpers ---------------------------------------------------------------------------
def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def step_views(steps: tuple[Step, ...], blamed: tuple[Step, ...] | None = None, tails: dict[str, str] | None = None) -> list[StepView]:
    """One row per step path, in the order KFP reports them; a retried step shows its latest attempt.

    ``blamed``: the steps that failed themselves (``RunStatus.failed_steps``); their rows carry the
    log tail (or where the log is) in ``log_tail``, and, without an error of their own, in ``error``.
    """
    blamed_names = {step.name for step in (blamed if blamed is not None else [s for s in steps if s.blamed])}
    groups: dict[str, list[StepView]] = {}
    for step in steps:
        start, end = parse_time(step.start_time), parse_time(step.end_time)
        duration = (end - start).total_seconds() if start and end and end >= start else None
        tail = (tails or {}).get(step.name) if step.name in blamed_names else None
        if step.name in blamed_names and tail is None:
            tail = ""
        view = StepView(step.name, step.label, step.error or tail or None, step.start_time, step.end_time, duration, log_tail=tail)
        groups.setdefault(step.name, []).append(view)
    rows = []
    for views in groups.values():
        latest = max(views, key=_attempt_key)
        latest.attempts = len(views)
        rows.append(latest)
    return rows


def _attempt_key(view: StepView) -> tuple:
    # Latest attempt wins: by start time, and a running/succeeded attempt over an older failure.
    rank = {"FAILED": 0, "CANCELED": 0, "SKIPPED": 1, "RUNNING": 2, "PENDING": 2, "SUCCEEDED": 3}
    return (view.start_time or "", rank.get(view.state, 1))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def terminate_refusal(status: RunStatus, task_state: str | None) -> str | None:
    """Why "Terminate KFP run" may not run now, or None: only a run left running by a stopped task."""
    if status.is_terminal:
        return f"KFP run {status.run_id} is already {status.state.value}."
    if status.state == RunState.CANCELING:
        return f"KFP run {status.run_id} is already being terminated (CANCELING)."
    if task_state in BUSY_TASK_STATES:
        return (
            f"The Airflow task is {task_state} and follows the run: mark the task failed to stop both "
            "(the task terminates its run when it is killed)."
        )
    return None


def refusal_reason(status: RunStatus, task_state: str | None) -> str | None:
    """Why "Retry failed steps" may not run now, or None when it may."""
    if status.state not in RETRYABLE_STATES:
        return (
            f"KFP run {status.run_id} is {status.state.value}: only a FAILED or CANCELED run can be retried."
        )
    if task_state in BUSY_TASK_STATES:
        return (
            f"The Airflow task is {task_state}: wait until it finishes (or mark it failed) before retrying."
        )
    return None


def is_kfp_task(operator: str | None, task: Any) -> bool:
    if operator in KFP_TASK_TYPES:
        return True
    if task is None:
        return False
    return (
        getattr(task, "task_type", None) in KFP_TASK_TYPES
        or getattr(task, "_task_module", None) in KFP_TASK_MODULES
    )


# ----- database ----------------------------------------------------------------------------------
_DAG_BAG: Any = None


def _dag_bag() -> Any:
    global _DAG_BAG
    if _DAG_BAG is None:
        from airflow.api_fastapi.common.dagbag import create_dag_bag

        _DAG_BAG = create_dag_bag()
    return _DAG_BAG


def _serialized_task(session: Any, ref: TaskRef) -> Any:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    dag_run = session.scalar(select(DagRun).where(DagRun.dag_id == ref.dag_id, DagRun.run_id == ref.run_id))
    if dag_run is None:
        return None, None
    dag = _dag_bag().get_dag_for_run(dag_run, session=session)
    if dag is None or not dag.has_task(ref.task_id):
        return dag, None
    return dag, dag.get_task(ref.task_id)


def load_task(ref: TaskRef) -> TaskInfo:
    """The task instance, its task's KFP settings and the run id it saved; 404 when it does not exist."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == ref.dag_id,
                TaskInstance.run_id == ref.run_id,
                TaskInstance.task_id == ref.task_id,
                TaskInstance.map_index == ref.map_index,
            )
        )
        if ti is None:
            raise OnCallError(
                404,
                f"Task instance {ref.dag_id}/{ref.run_id}/{ref.task_id} (map index {ref.map_index}) does not exist.",
            )
        _, task = _serialized_task(session, ref)
        stored_rows = dict(
            session.execute(
                select(TaskStateStoreModel.key, TaskStateStoreModel.value).where(
                    TaskStateStoreModel.dag_id == ref.dag_id,
                    TaskStateStoreModel.run_id == ref.run_id,
                    TaskStateStoreModel.task_id == ref.task_id,
                    TaskStateStoreModel.map_index == ref.map_index,
                    TaskStateStoreModel.key.in_([RUN_ID_KEY, TERMINATED_KEY]),
                )
            ).all()
        )
        stored = stored_rows.get(RUN_ID_KEY)
        state = ti.state.value if hasattr(ti.state, "value") else ti.state
        conn_id = getattr(task, "kfp_conn_id", None) or DEFAULT_CONN_ID
        namespace = getattr(task, "namespace", None)
        if isinstance(namespace, str) and "{{" in namespace:
            namespace = None  # templated: the connection's namespace is the best guess here
        return TaskInfo(
            ref=ref,
            state=state,
            try_number=ti.try_number or 0,
            operator=ti.operator,
            is_kfp_task=is_kfp_task(ti.operator, task) or stored is not None,
            conn_id=conn_id,
            namespace=namespace if isinstance(namespace, str) and namespace else None,
            stored_run_id=_json_string(stored),
            terminated_by_airflow=_json_object(stored_rows.get(TERMINATED_KEY)),
            kubernetes_conn_id=_plain_string(getattr(task, "kubernetes_conn_id", None)),
        )


def _json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _plain_string(value: Any) -> str | None:
    return value if isinstance(value, str) and value and "{{" not in value else None


def _json_string(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) and decoded else None


# ----- KFP ------------------------------------------------------------------------------------------
def make_hook(info: TaskInfo) -> Any:
    """A hook with the short policy: the api-server never waits minutes on a KFP outage (issue 13)."""
    from kfp_bridge.hooks.kfp import SHORT_POLICY, KfpHook

    return KfpHook(kfp_conn_id=info.conn_id, namespace=info.namespace, retry_policy=SHORT_POLICY)


def find_run(hook: Any, info: TaskInfo) -> tuple[dict[str, Any] | None, str | None]:
    """The task instance's KFP run (the hook's "find this task's run": saved id, then its tag)."""
    ref = info.ref
    identity = task_identity(ref.dag_id, ref.task_id, ref.run_id, ref.tag_map_index)
    run, found_by = hook.find_task_run(identity, info.stored_run_id)
    if found_by == "saved run id":
        found_by = f"task_state_store key {RUN_ID_KEY!r}"
    return run, found_by


def run_status(hook: Any, info: TaskInfo, run: dict[str, Any]) -> RunStatus:
    """The run with its steps by pipeline path and what the task recorded about terminating it."""
    record = info.terminated_by_airflow or {}
    reason = str(record.get("reason") or "terminated") if record.get("run_id") == run.get("run_id") else None
    return RunStatus.from_api(run, hook.pipeline_spec_of(run), terminated_by_airflow=reason)


def kfp_unreachable(err: Exception) -> bool:
    """KFP gave no answer (status 0) or only transient ones until the hook's short policy ran out."""
    from kfp_bridge.hooks.kfp import KfpApiError
    from kfp_bridge.utils.retry import TRANSIENT_HTTP_STATUSES

    return isinstance(err, KfpApiError) and (err.status == 0 or err.status in TRANSIENT_HTTP_STATUSES)


def _task_view(info: TaskInfo) -> RunView:
    return RunView(
        ref=info.ref,
        task_state=info.state,
        try_number=info.try_number,
        is_kfp_task=info.is_kfp_task,
        conn_id=info.conn_id,
    )


def build_view(ref: TaskRef, *, hook_factory: Callable[[TaskInfo], Any] = make_hook) -> RunView:
    info = load_task(ref)
    view = _task_view(info)
    if not info.is_kfp_task:
        view.reason = f"Task {ref.task_id} is a {info.operator or 'non-KFP'} task, not a KfpRunOperator task."
        return view
    try:
        hook = hook_factory(info)
        run, found_by = find_run(hook, info)
        if run is None:
            view.reason = (
                "No KFP run was found for this task instance (it may have failed before submitting one)."
            )
            view.terminate_reason = view.reason
            return view
        status = run_status(hook, info, run)
        view.run_id = status.run_id
        view.run_found_by = found_by
        view.run_state = status.state.value
        view.run_name = status.display_name
        view.run_error = _run_note(status)
        view.run_url = hook.settings.run_url(status.run_id)
        view.steps = step_views(status.steps, status.failed_steps, _log_tails(hook, info, status))
        view.reason = refusal_reason(status, info.state)
        view.retryable = view.reason is None
        view.terminate_reason = terminate_refusal(status, info.state)
        view.terminable = view.terminate_reason is None
    except Exception as err:  # KfpApiError, KfpConnectionError, connection lookup errors
        view.problem = f"Could not read the KFP run through connection '{info.conn_id}': {err}"
        view.reason = view.terminate_reason = view.problem
        view.kfp_unreachable = kfp_unreachable(err)
    return view


def build_views(refs: list[TaskRef]) -> list[RunView]:
    """The views of several task instances (the DAG run page).

    During a KFP outage each connection costs one short-policy budget, not one per task: once KFP
    did not answer through a connection, the other task instances on it say so without asking (a
    run with many mapped KFP tasks would otherwise hold an api-server thread for minutes).
    """
    unreachable: dict[str, str] = {}  # connection id -> the problem its first task instance met
    views: list[RunView] = []
    for ref in refs:
        if unreachable:
            info = load_task(ref)
            if info.is_kfp_task and info.conn_id in unreachable:
                view = _task_view(info)
                view.problem = view.reason = view.terminate_reason = unreachable[info.conn_id]
                view.kfp_unreachable = True
                views.append(view)
                continue
        view = build_view(ref)
        if view.kfp_unreachable and view.problem:
            unreachable[view.conn_id] = view.problem
        views.append(view)
    return views


def _run_note(status: RunStatus) -> str | None:
    """The run-level line of the view: why it ended when that is not a step's fault."""
    if status.terminated == "airflow":
        return f"Terminated by Airflow ({status.terminated_by_airflow}); no step failed."
    if status.terminated == "elsewhere":
        return "Terminated outside Airflow (KFP UI or API) before it finished; no step failed."
    return status.error


def _log_tails(hook: Any, info: TaskInfo, status: RunStatus) -> dict[str, str]:
    """Each failed step's log tail when the task has a Kubernetes connection, else where its log is."""
    if not status.failed_steps:
        return {}
    if info.kubernetes_conn_id:
        return hook.step_log_tails(status.run_id, status.failed_steps, kubernetes_conn_id=info.kubernetes_conn_id)
    hint = hook.log_location_hint(status.run_id)
    return {step.name: hint.format(step=step.name, node=step.node_name or "?") for step in status.failed_steps}


# ----- the actions -------------------------------------------------------------------------------
@dataclass
class RetryResult:
    kfp_run_id: str
    kfp_run_state: str
    retried_steps: list[str]
    cleared: list[str]
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kfp_run_id": self.kfp_run_id,
            "kfp_run_state": self.kfp_run_state,
            "retried_steps": self.retried_steps,
            "cleared_task_instances": self.cleared,
            "message": self.message,
        }


def retry_failed_steps(
    ref: TaskRef,
    *,
    user_name: str,
    hook_factory: Callable[[TaskInfo], Any] = make_hook,
    confirm_seconds: float = RETRY_CONFIRM_SECONDS,
) -> RetryResult:
    """KFP retry of the task instance's run, then clear it (and its failed downstream) so it follows the run.

    Every attempt, refused, failed or done, leaves an entry in Airflow's audit log.
    """
    try:
        result = _retry_failed_steps(ref, hook_factory, confirm_seconds)
    except OnCallError as err:
        outcome = "refused" if err.status_code in (404, 409) else "failed"
        record_audit(ref, user_name, {"outcome": outcome, "status": err.status_code, "reason": err.reason})
        raise
    record_audit(
        ref,
        user_name,
        {"outcome": "done", "kfp_run_id": result.kfp_run_id, "retried_steps": result.retried_steps, "cleared": result.cleared},
    )
    return result


def _retry_failed_steps(ref: TaskRef, hook_factory: Callable[[TaskInfo], Any], confirm_seconds: float) -> RetryResult:
    from kfp_bridge.hooks.kfp import KfpRetryError

    info, hook, status = _task_run_status(ref, hook_factory, "retry")
    reason = refusal_reason(status, info.state)
    if reason:
        raise OnCallError(409, reason)
    failed = [step.name for step in status.failed_steps] or [step.name for step in status.interrupted_steps]
    try:
        retried = hook.retry_and_confirm(status.run_id, confirm_seconds=confirm_seconds)
    except KfpRetryError as err:
        raise OnCallError(409 if "refused" in str(err) else 502, f"{err} The Airflow task was not cleared.") from None
    except Exception as err:
        raise OnCallError(502, f"KFP refused to retry run {status.run_id}: {err}") from None
    state = RunState.parse(retried.get("state"))
    cleared = clear_task(ref)
    message = (
        f"KFP is retrying run {status.run_id} (failed steps: {', '.join(failed) or 'none reported'}); "
        f"cleared {', '.join(cleared)} so the task follows the retried run."
    )
    return RetryResult(status.run_id, state.value, failed, cleared, message)


@dataclass
class TerminateResult:
    kfp_run_id: str
    kfp_run_state: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"kfp_run_id": self.kfp_run_id, "kfp_run_state": self.kfp_run_state, "message": self.message}


def terminate_kfp_run(
    ref: TaskRef,
    *,
    user_name: str,
    hook_factory: Callable[[TaskInfo], Any] = make_hook,
    wait_seconds: float = TERMINATE_WAIT_SECONDS,
) -> TerminateResult:
    """Terminate the KFP run of a task instance that is no longer running (e.g. marked failed before its
    trigger started, so nothing terminated the run). Audited like the retry, whatever the outcome."""
    try:
        result = _terminate_kfp_run(ref, hook_factory, wait_seconds)
    except OnCallError as err:
        outcome = "refused" if err.status_code in (404, 409) else "failed"
        record_audit(ref, user_name, {"outcome": outcome, "status": err.status_code, "reason": err.reason}, TERMINATE_AUDIT_EVENT)
        raise
    record_audit(
        ref, user_name, {"outcome": "done", "kfp_run_id": result.kfp_run_id, "state": result.kfp_run_state}, TERMINATE_AUDIT_EVENT
    )
    return result


def _task_run_status(ref: TaskRef, hook_factory: Callable[[TaskInfo], Any], action: str) -> tuple[TaskInfo, Any, Any]:
    """The task, its hook and its KFP run's status, for an action (retry, terminate) on that run;
    OnCallError 409 when the task is not a KFP task or has no run, 502 when KFP cannot be read."""
    info = load_task(ref)
    if not info.is_kfp_task:
        raise OnCallError(409, f"Task {ref.task_id} is a {info.operator or 'non-KFP'} task, not a KfpRunOperator task.")
    hook = hook_factory(info)
    try:
        run, _ = find_run(hook, info)
        if run is None:
            raise OnCallError(409, f"No KFP run was found for this task instance: there is nothing to {action}.")
        status = run_status(hook, info, run)
    except OnCallError:
        raise
    except Exception as err:
        raise OnCallError(502, f"Could not read the KFP run through connection '{info.conn_id}': {err}") from None
    return info, hook, status


def _terminate_kfp_run(ref: TaskRef, hook_factory: Callable[[TaskInfo], Any], wait_seconds: float) -> TerminateResult:
    info, hook, status = _task_run_status(ref, hook_factory, "terminate")
    reason = terminate_refusal(status, info.state)
    if reason:
        raise OnCallError(409, reason)
    try:
        final = hook.terminate_and_wait(status.run_id, wait_seconds=wait_seconds)
    except Exception as err:
        raise OnCallError(502, f"KFP did not terminate run {status.run_id}: {err}") from None
    state = str(final.get("state") or "")
    done = "it is now" if state in ("FAILED", "CANCELED", "SUCCEEDED", "SKIPPED") else "it is still"
    return TerminateResult(status.run_id, state, f"Asked KFP to terminate run {status.run_id}; {done} {state}.")


def clear_task(ref: TaskRef) -> list[str]:
    """Clear the task instance and its failed/upstream_failed downstream; the DAG run is queued again."""
    from airflow.models.taskinstance import clear_task_instances, find_relevant_relatives
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        dag, task = _serialized_task(session, ref)
        if dag is None or task is None:
            raise OnCallError(404, f"Task {ref.task_id} is not in the DAG version of run {ref.run_id}.")
        normal: set[str] = set()
        mapped: set[tuple[str, int]] = set()
        if ref.map_index >= 0:
            mapped.add((ref.task_id, ref.map_index))
        else:
            normal.add(ref.task_id)
        relatives = find_relevant_relatives(
            normal, mapped, direction="downstream", dag=dag, run_id=ref.run_id, session=session
        )
        markers: list[str | tuple[str, int]] = [*normal, *mapped]
        markers += [marker for marker in relatives if marker not in markers]
        tis = dag.clear(dry_run=True, task_ids=markers, run_id=ref.run_id, only_failed=True, session=session)
        clear_task_instances(list(tis), session, DagRunState.QUEUED)
        return sorted(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]" for ti in tis)


def record_audit(ref: TaskRef, user_name: str, extra: dict[str, Any], event: str = AUDIT_EVENT) -> None:
    """An entry in Airflow's audit log (Browse → Audit Log) naming who did what, and how it ended."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        entry = Log(event=event, owner=user_name, owner_display_name=user_name, extra=json.dumps(extra))
        entry.dag_id, entry.run_id, entry.task_id, entry.map_index = (
            ref.dag_id,
            ref.run_id,
            ref.task_id,
            ref.map_index,
        )
        session.add(entry)


def kfp_task_instances(dag_id: str, run_id: str) -> list[TaskRef]:
    """The KfpRunOperator task instances of one DAG run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index)
            .where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.operator.in_(sorted(KFP_TASK_TYPES)),
            )
            .order_by(TaskInstance.task_id, TaskInstance.map_index)
        ).all()
    return [TaskRef(dag_id, run_id, task_id, map_index) for task_id, map_index in rows]
