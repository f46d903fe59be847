"""KfpPipelineTaskGroup: one KFP run, shown in the grid as one Airflow task per pipeline step.

The group holds a :class:`~kfp_bridge.operators.kfp.KfpRunOperator` (``kfp_run``: submits, waits,
reattaches, retries) and one lightweight :class:`KfpStepSensor` per top-level step of the compiled
pipeline, wired with the pipeline's own ``dependentTasks``. A mirror waits for its step in the KFP
run (found by the run task's deterministic tag) and ends as the step ended: success, failed (with
the step's error), or skipped when KFP did not execute it. A step downstream of a failed step is
``upstream_failed`` in Airflow, just as it never ran in KFP. So the grid shows which step failed.

Wiring: ``kfp_run >> <root steps>`` with root mirrors on ``trigger_rule="always"`` (they follow the
run while it is running), other mirrors on the default ``all_success`` of their upstream steps.
Every mirror is therefore downstream of ``kfp_run``: clearing it with its downstream (what
"Retry failed steps" and Airflow's Clear do) clears the failed mirrors too.

Parse-time cost: the compiled YAML is read with plain ``yaml`` (no ``kfp`` import); ``kfp`` and the
KFP client are imported only when a task runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, TaskGroup

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.utils.run_tags import task_identity
from kfp_bridge.utils.states import RunState, RunStatus

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kfp_bridge.hooks.kfp import KfpHook

RUN_TASK_ID = "kfp_run"
# Airflow task states after which a task instance does not change without a clear.
_FINISHED_TASK_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_INVALID_TASK_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class PipelineSpecError(ValueError):
    """The compiled pipeline cannot be read into a list of steps."""


@dataclass(frozen=True)
class PipelineStep:
    """One task of the pipeline's root DAG: ``name`` is the key KFP reports it under."""

    name: str
    display_name: str
    dependencies: tuple[str, ...]


def pipeline_steps(path: str | os.PathLike[str]) -> list[PipelineStep]:
    """The top-level steps of a compiled KFP v2 pipeline YAML, in dependency order (plain YAML, no kfp).

    Nested pipelines (a step whose component is itself a DAG) appear as one step, as KFP reports them.
    """
    path = os.fspath(path)
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise PipelineSpecError(
            f"Compiled pipeline {path} does not exist; KfpPipelineTaskGroup needs the YAML at parse time "
            "(compile it with `kfp-bridge compile`)."
        ) from None
    return list(_pipeline_steps_cached(path, mtime))


@lru_cache(maxsize=64)
def _pipeline_steps_cached(path: str, _mtime: int) -> tuple[PipelineStep, ...]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as handle:
            documents = [doc for doc in yaml.load_all(handle, Loader=loader) if isinstance(doc, dict)]
    except yaml.YAMLError as err:
        raise PipelineSpecError(f"Compiled pipeline {path} is not valid YAML: {err}") from None
    spec = next((doc for doc in documents if "root" in doc), None)
    tasks = ((spec or {}).get("root") or {}).get("dag", {}).get("tasks") if spec else None
    if not isinstance(tasks, dict) or not tasks:
        raise PipelineSpecError(f"{path} is not a compiled KFP v2 pipeline: it has no root.dag.tasks.")
    steps = {}
    for name, task in tasks.items():
        task = task or {}
        deps = tuple(task.get("dependentTasks") or ())
        unknown = [dep for dep in deps if dep not in tasks]
        if unknown:
            raise PipelineSpecError(f"{path}: step {name!r} depends on unknown step(s) {unknown}.")
        display = (task.get("taskInfo") or {}).get("name") or name
        steps[name] = PipelineStep(name=name, display_name=display, dependencies=deps)
    return tuple(_topological(steps, path))


def _topological(steps: dict[str, PipelineStep], path: str) -> list[PipelineStep]:
    ordered: list[PipelineStep] = []
    done: set[str] = set()
    remaining = dict(sorted(steps.items()))
    while remaining:
        ready = [name for name, step in remaining.items() if set(step.dependencies) <= done]
        if not ready:
            raise PipelineSpecError(f"{path}: the steps' dependencies form a cycle: {sorted(remaining)}.")
        for name in ready:
            ordered.append(remaining.pop(name))
            done.add(name)
    return ordered


def step_task_id(step_name: str) -> str:
    """An Airflow task id for a KFP step name (KFP names are ``[a-z0-9-]``, already valid)."""
    return _INVALID_TASK_ID_CHARS.sub("_", step_name)


# ----- the mirror sensor ------------------------------------------------------------------------
@dataclass(frozen=True)
class StepOutcome:
    """What a mirror does now: ``wait``, ``success``, ``failed`` or ``skipped``, and why."""

    action: str
    message: str
    final: bool = True  # False: decided only because the run ended, the run task may still change it


def step_outcome(status: RunStatus, step: str) -> StepOutcome:
    """Decide a mirror's state from the run (pure; the rules are unit-tested).

    A step SUCCEEDED in any attempt is a success at once (a KFP retry reruns only failed steps).
    Anything else is decided only when the run is terminal: FAILED/CANCELED step → failed with its
    error; not executed → skipped when the run succeeded (e.g. a condition not taken), failed otherwise.
    """
    entries = [entry for entry in status.steps if entry.name == step]
    if any(entry.state == RunState.SUCCEEDED for entry in entries):
        return StepOutcome("success", f"step '{step}' SUCCEEDED in KFP run {status.run_id}")
    if not status.is_terminal:
        states = ", ".join(entry.state.value for entry in entries) or "not started"
        return StepOutcome(
            "wait", f"step '{step}' is {states}; KFP run {status.run_id} is {status.state.value}"
        )
    failed = [entry for entry in entries if entry.state in (RunState.FAILED, RunState.CANCELED)]
    if failed:
        last = failed[-1]
        inner = [s.name for s in status.failed_steps if s.name == step or s.name.startswith((f"{step}/", f"{step}["))]
        if status.terminated:
            why = "the run was terminated " + ("by Airflow" if status.terminated == "airflow" else "outside Airflow")
        elif inner and inner != [step]:
            why = "failed steps inside it: " + ", ".join(inner)
        else:
            why = last.error or "see the KFP run task's log for the step's log"
        return StepOutcome("failed", f"step '{step}' {last.state.value} in KFP run {status.run_id}: {why}", final=False)
    if status.is_success:
        return StepOutcome(
            "skipped", f"step '{step}' was not executed in KFP run {status.run_id} (it {status.state.value})"
        )
    return StepOutcome(
        "failed",
        f"step '{step}' was not executed: KFP run {status.run_id} ended {status.state.value} before it ran",
        final=False,
    )


class KfpStepSensor(BaseSensorOperator):
    """Mirror one step of the KFP run started by ``run_task_id`` (same DAG run and map index).

    :param step: the step's name in the pipeline (``root.dag.tasks`` key, as KFP reports it).
    :param run_task_id: the full task id of the KfpRunOperator whose run to follow.
    :param kfp_conn_id: ``kfp`` connection; :param namespace: profile namespace (default: the connection's).
    """

    template_fields: Sequence[str] = ("namespace",)
    ui_color = "#f1f8e9"

    def __init__(
        self,
        *,
        step: str,
        run_task_id: str,
        kfp_conn_id: str = "kfp_default",
        namespace: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 10.0)
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.step = step
        self.run_task_id = run_task_id
        self.kfp_conn_id = kfp_conn_id
        self.namespace = namespace

    def _hook(self) -> KfpHook:
        from kfp_bridge.hooks.kfp import KfpHook

        return KfpHook(kfp_conn_id=self.kfp_conn_id, namespace=self.namespace)

    def poke(self, context: Context) -> bool:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        hook = self._hook()
        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        identity = task_identity(
            context["dag"].dag_id,
            self.run_task_id,
            context["run_id"],
            map_index if isinstance(map_index, int) else None,
        )
        run, _ = hook.find_task_run(identity)
        if run is None:
            state = self._run_task_state(context)
            if state in _FINISHED_TASK_STATES:
                raise AirflowFailException(
                    f"Task {self.run_task_id} ended {state} without a KFP run, so step '{self.step}' never ran."
                )
            self.log.info(
                "No KFP run for %s yet (task %s is %s)", identity.tag, self.run_task_id, state or "not started"
            )
            return False
        status = RunStatus.from_api(run, hook.pipeline_spec_of(run))
        outcome = step_outcome(status, self.step)
        self.log.info("%s", outcome.message)
        if outcome.action == "wait":
            return False
        if not outcome.final:
            state = self._run_task_state(context)
            if state not in _FINISHED_TASK_STATES:
                # The run task may still retry the run (Airflow retries, on_rerun="retry"): follow it.
                self.log.info(
                    "Task %s is %s; waiting for it to finish before deciding", self.run_task_id, state
                )
                return False
        if outcome.action == "success":
            return True
        if outcome.action == "skipped":
            raise AirflowSkipException(outcome.message)
        raise AirflowFailException(outcome.message)

    def _run_task_state(self, context: Context) -> str | None:
        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        try:
            found = ti.get_task_states(
                dag_id=context["dag"].dag_id,
                task_ids=[self.run_task_id],
                run_ids=[context["run_id"]],
                map_index=map_index if isinstance(map_index, int) and map_index >= 0 else None,
            )
        except Exception:  # best effort: without it the mirror keeps following the KFP run
            self.log.warning("Could not read the state of task %s", self.run_task_id, exc_info=True)
            return None
        return _find_state(found, self.run_task_id)


def _find_state(found: Any, task_id: str) -> str | None:
    """The state of ``task_id`` in get_task_states' answer ({run_id: {task_id: state}})."""
    if isinstance(found, dict):
        if task_id in found and not isinstance(found[task_id], dict):
            value = found[task_id]
            return str(getattr(value, "value", value)) if value is not None else None
        for value in found.values():
            state = _find_state(value, task_id)
            if state is not None:
                return state
    return None


# ----- the task group ------------------------------------------------------------------------
class KfpPipelineTaskGroup(TaskGroup):
    """A KFP run as a task group: ``<group>.kfp_run`` plus one mirror task per pipeline step.

    :param group_id: the group's id.
    :param pipeline: path of the compiled pipeline YAML (absolute, or relative to the DAG file's folder).
        It is read at parse time (plain YAML) to build the steps; a ``module:function`` pipeline is
        not supported here because that would import kfp while parsing.
    :param kfp_conn_id: ``kfp`` connection for the run and the mirrors.
    :param namespace: profile namespace (default: the connection's).
    :param mirror_poke_interval: seconds between a mirror's checks (default 10).
    :param mirror_mode: ``"reschedule"`` (default: no worker slot held between checks) or ``"poke"``.
    :param mirror_timeout: seconds a mirror waits before failing (default: the sensor default).
    :param run_kwargs: any other KfpRunOperator argument (params, experiment, deferrable, timeout, ...).

    Example::

        with KfpPipelineTaskGroup("train", pipeline="pipelines/iris.yaml", params={...}) as train:
            ...
        train >> publish
    """

    def __init__(
        self,
        group_id: str,
        *,
        pipeline: str,
        kfp_conn_id: str = "kfp_default",
        namespace: str | None = None,
        mirror_poke_interval: float = 10.0,
        mirror_mode: str = "reschedule",
        mirror_timeout: float | None = None,
        tooltip: str = "",
        **run_kwargs: Any,
    ) -> None:
        super().__init__(group_id=group_id, tooltip=tooltip or f"KFP pipeline {pipeline}, one task per step")
        path = pipeline
        if not os.path.isabs(path):
            fileloc = getattr(self.dag, "fileloc", None) if self.dag is not None else None
            if fileloc:
                path = os.path.join(os.path.dirname(fileloc), path)
        self.steps = pipeline_steps(path)
        ids = [step_task_id(step.name) for step in self.steps]
        if RUN_TASK_ID in ids:
            raise PipelineSpecError(
                f"{pipeline}: a step is named {RUN_TASK_ID!r}, which the group uses for the run task."
            )
        with self:
            self.run_task = KfpRunOperator(
                task_id=RUN_TASK_ID,
                pipeline=pipeline,
                kfp_conn_id=kfp_conn_id,
                namespace=namespace,
                **run_kwargs,
            )
            self.step_tasks: dict[str, KfpStepSensor] = {}
            sensor_kwargs: dict[str, Any] = {"poke_interval": mirror_poke_interval, "mode": mirror_mode}
            if mirror_timeout is not None:
                sensor_kwargs["timeout"] = mirror_timeout
            for step, task_id in zip(self.steps, ids, strict=True):
                self.step_tasks[step.name] = KfpStepSensor(
                    task_id=task_id,
                    task_display_name=step.display_name,
                    step=step.name,
                    run_task_id=self.run_task.task_id,
                    kfp_conn_id=kfp_conn_id,
                    namespace=namespace,
                    trigger_rule="all_success" if step.dependencies else "always",
                    retries=0,
                    doc_md=f"Mirrors KFP step `{step.name}` of the run started by `{self.run_task.task_id}`.",
                    **sensor_kwargs,
                )
            for step in self.steps:
                mirror = self.step_tasks[step.name]
                if step.dependencies:
                    for dep in step.dependencies:
                        self.step_tasks[dep] >> mirror
                else:
                    self.run_task >> mirror
