"""What the on-call view shows and what "Retry failed steps" does, apart from HTTP.

Runs inside the Airflow api-server. Database work happens in short sessions of its own, never
across a KFP call: on SQLite an open read transaction would hold up the scheduler while KFP answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kfp_bridge.utils.run_tags import run_tag
from kfp_bridge.utils.states import RETRYABLE_STATES, RunState, RunStatus, StepStatus, is_terminal

RUN_ID_KEY = "kfp_run_id"  # kfp_bridge.operators.kfp.RUN_ID_KEY (not imported: that module imports the SDK)
DEFAULT_CONN_ID = "kfp_default"
KFP_TASK_TYPES = frozenset({"KfpRunOperator"})
KFP_TASK_MODULES = frozenset({"kfp_bridge.operators.kfp"})
# Airflow task states in which the task is (about to be) doing something: clearing it now would
# kill it or race with it, so the action refuses.
BUSY_TASK_STATES = frozenset(
    {"running", "queued", "scheduled", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)
RETRY_CONFIRM_SECONDS = 30.0
AUDIT_EVENT = "kfp_bridge.retry_failed_steps"


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


@dataclass
class StepView:
    name: str
    state: str
    error: str | None
    start_time: str | None
    end_time: str | None
    duration_seconds: float | None
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "error": self.error,
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
    problem: str | None = None  # the KFP API could not be asked

    @property
    def failed_steps(self) -> list[str]:
        return [step.name for step in self.steps if step.state in ("FAILED", "CANCELED")]

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


def step_views(steps: tuple[StepStatus, ...]) -> list[StepView]:
    """One row per step name, in the order KFP reports them; a retried step shows its latest attempt."""
    groups: dict[str, list[StepView]] = {}
    for step in steps:
        start, end = parse_time(step.start_time), parse_time(step.end_time)
        duration = (end - start).total_seconds() if start and end and end >= start else None
        view = StepView(step.name, step.state.value, step.error, step.start_time, step.end_time, duration)
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
        stored = session.scalar(
            select(TaskStateStoreModel.value).where(
                TaskStateStoreModel.dag_id == ref.dag_id,
                TaskStateStoreModel.run_id == ref.run_id,
                TaskStateStoreModel.task_id == ref.task_id,
                TaskStateStoreModel.map_index == ref.map_index,
                TaskStateStoreModel.key == RUN_ID_KEY,
            )
        )
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
        )


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
    from kfp_bridge.hooks.kfp import KfpHook

    return KfpHook(kfp_conn_id=info.conn_id, namespace=info.namespace)


def find_run(hook: Any, info: TaskInfo) -> tuple[dict[str, Any] | None, str | None]:
    """The task instance's KFP run: by the id it saved (task_state_store), else by its run tag."""
    from kfp_bridge.hooks.kfp import KfpApiError

    ref = info.ref
    if info.stored_run_id:
        try:
            return hook.get_run(info.stored_run_id), f"task_state_store key {RUN_ID_KEY!r}"
        except KfpApiError as err:
            if err.status != 404:
                raise
    tag = run_tag(ref.dag_id, ref.task_id, ref.run_id, ref.tag_map_index)
    runs = hook.find_runs_by_tag(tag)
    if runs:
        return hook.get_run(runs[0]["run_id"]), "run tag"
    return None, None


def build_view(ref: TaskRef, *, hook_factory: Callable[[TaskInfo], Any] = make_hook) -> RunView:
    info = load_task(ref)
    view = RunView(
        ref=ref,
        task_state=info.state,
        try_number=info.try_number,
        is_kfp_task=info.is_kfp_task,
        conn_id=info.conn_id,
    )
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
            return view
        status = RunStatus.from_api(run)
        view.run_id = status.run_id
        view.run_found_by = found_by
        view.run_state = status.state.value
        view.run_name = status.display_name
        view.run_error = status.error
        view.run_url = hook.settings.run_url(status.run_id)
        view.steps = step_views(status.steps)
        view.reason = refusal_reason(status, info.state)
        view.retryable = view.reason is None
    except Exception as err:  # KfpApiError, KfpConnectionError, connection lookup errors
        view.problem = f"Could not read the KFP run through connection '{info.conn_id}': {err}"
        view.reason = view.problem
    return view


# ----- the action -------------------------------------------------------------------------------
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
    """KFP retry of the task instance's run, then clear it (and its failed downstream) so it follows the run."""
    info = load_task(ref)
    if not info.is_kfp_task:
        raise OnCallError(
            409, f"Task {ref.task_id} is a {info.operator or 'non-KFP'} task, not a KfpRunOperator task."
        )
    hook = hook_factory(info)
    try:
        run, _ = find_run(hook, info)
    except Exception as err:
        raise OnCallError(
            502, f"Could not read the KFP run through connection '{info.conn_id}': {err}"
        ) from None
    if run is None:
        raise OnCallError(409, "No KFP run was found for this task instance: there is nothing to retry.")
    status = RunStatus.from_api(run)
    reason = refusal_reason(status, info.state)
    if reason:
        raise OnCallError(409, reason)
    failed = [step.name for step in status.failed_steps]
    _request_retry(hook, status.run_id, confirm_seconds)
    state = _wait_until_retried(hook, status.run_id, confirm_seconds)
    if state in RETRYABLE_STATES:
        raise OnCallError(
            502,
            f"KFP accepted the retry of run {status.run_id} but it is still {state.value} after "
            f"{confirm_seconds:.0f}s (kubeflow/pipelines#11329); the Airflow task was not cleared.",
        )
    cleared = clear_task(ref)
    message = (
        f"KFP is retrying run {status.run_id} (failed steps: {', '.join(failed) or 'none reported'}); "
        f"cleared {', '.join(cleared)} so the task follows the retried run."
    )
    record_audit(ref, user_name, {"kfp_run_id": status.run_id, "retried_steps": failed, "cleared": cleared})
    return RetryResult(status.run_id, state.value, failed, cleared, message)


def _request_retry(hook: Any, run_id: str, confirm_seconds: float) -> None:
    """KFP retry; a 409 means the run is still shutting down (KFP answers Aborted), so ask again briefly."""
    from kfp_bridge.hooks.kfp import KfpApiError

    give_up = time.monotonic() + min(confirm_seconds, 10.0)
    while True:
        try:
            hook.retry_run(run_id)
            return
        except KfpApiError as err:
            if err.status == 409 and time.monotonic() < give_up:
                time.sleep(1.0)
                continue
            code = 409 if err.status == 409 else 502
            raise OnCallError(code, f"KFP refused to retry run {run_id}: {err}") from None
        except Exception as err:
            raise OnCallError(502, f"KFP refused to retry run {run_id}: {err}") from None


def _wait_until_retried(hook: Any, run_id: str, confirm_seconds: float) -> RunState:
    give_up = time.monotonic() + confirm_seconds
    while True:
        state = RunState.parse(hook.get_run(run_id).get("state"))
        if state not in RETRYABLE_STATES or time.monotonic() >= give_up:
            return state
        time.sleep(0.5)


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


def record_audit(ref: TaskRef, user_name: str, extra: dict[str, Any]) -> None:
    """An entry in Airflow's audit log (Browse → Audit Log) naming who retried what."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        entry = Log(event=AUDIT_EVENT, owner=user_name, owner_display_name=user_name, extra=json.dumps(extra))
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
