"""KFP run state as a small typed model with pure predicates.

Operator, sensor and trigger all decide through these helpers, so "what counts as done" lives in
one place. Input is the snake_case run dict the v2beta1 API returns (``V2beta1Run.to_dict()`` on
the sync path, the raw JSON on the async path): both have the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    """``RuntimeState`` of the KFP v2beta1 API (note the one-L ``CANCELING``)."""

    UNSPECIFIED = "RUNTIME_STATE_UNSPECIFIED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    PAUSED = "PAUSED"

    @classmethod
    def parse(cls, value: str | None) -> RunState:
        if not value:
            return cls.UNSPECIFIED
        try:
            return cls(value.upper())
        except ValueError:
            # A newer server may add states; treating them as "not finished" keeps waiting safe.
            return cls.UNSPECIFIED


# CANCELED is final (kfp's own wait loop misses it: kubeflow/pipelines#14473). PAUSED is not:
# a paused run can be resumed, and it is certainly not a success.
TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.SKIPPED, RunState.FAILED, RunState.CANCELED})
SUCCESS_STATES = frozenset({RunState.SUCCEEDED, RunState.SKIPPED})
RETRYABLE_STATES = frozenset({RunState.FAILED, RunState.CANCELED})


def is_terminal(state: RunState) -> bool:
    return state in TERMINAL_STATES


def is_success(state: RunState) -> bool:
    return state in SUCCESS_STATES


def is_retryable(state: RunState) -> bool:
    return state in RETRYABLE_STATES


@dataclass(frozen=True)
class RunStatus:
    """A run and its pipeline steps (:mod:`kfp_bridge.utils.steps` maps Argo nodes to steps).

    ``terminated_by_airflow`` is what the provider recorded when it terminated the run itself (kill,
    timeout): KFP 2.17 stores such a run FAILED (fidelity.md K2), so only the provider can tell.
    """

    run_id: str
    state: RunState
    display_name: str = ""
    experiment_id: str = ""
    pipeline_version_id: str = ""
    error: str | None = None
    steps: tuple[Any, ...] = field(default_factory=tuple)  # kfp_bridge.utils.steps.Step
    terminated_by_airflow: str | None = None

    @classmethod
    def from_api(
        cls, run: dict[str, Any], spec: dict[str, Any] | None = None, *, terminated_by_airflow: str | None = None
    ) -> RunStatus:
        from kfp_bridge.utils.steps import steps_from_task_details

        details = run.get("run_details") or {}
        reference = run.get("pipeline_version_reference") or {}
        return cls(
            run_id=run.get("run_id") or "",
            state=RunState.parse(run.get("state")),
            display_name=run.get("display_name") or "",
            experiment_id=run.get("experiment_id") or "",
            pipeline_version_id=reference.get("pipeline_version_id") or run.get("pipeline_version_id") or "",
            error=_error_message(run.get("error")),
            steps=steps_from_task_details(details.get("task_details") or [], spec or run.get("pipeline_spec")),
            terminated_by_airflow=terminated_by_airflow,
        )

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def is_success(self) -> bool:
        return is_success(self.state)

    @property
    def failed_steps(self) -> tuple[Any, ...]:
        """Steps that failed themselves; none when the run was terminated (they were interrupted)."""
        if self.terminated_by_airflow or self.state == RunState.CANCELED:
            return ()
        return tuple(step for step in self.steps if step.blamed)

    @property
    def interrupted_steps(self) -> tuple[Any, ...]:
        blamed = {step.name for step in self.failed_steps}
        # Omitted nodes (never ran, or cut off by a terminate) report no state (fidelity.md K2/K3).
        unfinished = (RunState.FAILED, RunState.CANCELED, RunState.RUNNING, RunState.PENDING, RunState.CANCELING,
                      RunState.UNSPECIFIED)
        return tuple(s for s in self.steps if s.container and s.state in unfinished and s.name not in blamed)

    @property
    def terminated(self) -> str | None:
        """"airflow", "elsewhere" (CANCELED, or FAILED with only interrupted steps) or None."""
        if self.terminated_by_airflow:
            return "airflow"
        if self.state == RunState.CANCELED:
            return "elsewhere"
        if self.state == RunState.FAILED and self.steps and not self.failed_steps and self.interrupted_steps:
            return "elsewhere"
        return None

    def progress_key(self) -> tuple:
        """What changes when progress is worth logging again."""
        return (self.state, tuple((step.name, step.label) for step in self.steps))

    def progress_line(self) -> str:
        if not self.steps:
            return f"KFP run {self.run_id}: {self.state.value}"
        done = sum(1 for step in self.steps if is_terminal(step.state))
        parts = ", ".join(f"{step.name}={step.label}" for step in self.steps)
        return f"KFP run {self.run_id}: {self.state.value} ({done}/{len(self.steps)} steps finished: {parts})"

    def failure_message(
        self, *, run_url: str | None = None, log_tails: dict[str, str] | None = None, log_hint: str | None = None
    ) -> str:
        """Why the run did not succeed: terminated (by Airflow or elsewhere) or the failed steps, each
        with a link and, when given, the tail of its log (or where to find the log)."""
        lines = [f"KFP run {self.run_id} ended {self.state.value}."]
        interrupted = ", ".join(step.name for step in self.interrupted_steps) or "none"
        terminated = self.terminated
        if terminated == "airflow":
            lines.append(
                f"  It was terminated by Airflow ({self.terminated_by_airflow}); no step failed "
                f"(steps interrupted: {interrupted})."
            )
        elif terminated == "elsewhere":
            lines.append(
                "  It was terminated outside Airflow (KFP UI or API) before it finished; no step failed "
                f"(steps interrupted: {interrupted})."
            )
        for step in self.failed_steps:
            where = f" ({run_url}, step {step.name})" if run_url else ""
            lines.append(f"  step '{step.name}' failed{where}" + (f": {step.error}" if step.error else "."))
            tail = (log_tails or {}).get(step.name)
            if tail:
                lines.append("    last lines of its main container log:")
                lines.extend(f"      {line}" for line in tail.rstrip().splitlines())
            elif log_hint:
                lines.append(f"    {log_hint.format(step=step.name, node=step.node_name or '?')}")
        if not self.failed_steps and not terminated and self.error:
            lines.append(f"  run error: {self.error}")
        if not self.failed_steps and not terminated and not self.error and self.state != RunState.PAUSED:
            lines.append("  KFP reported no failed step; see the run in the KFP UI" + (f": {run_url}" if run_url else "."))
        return "\n".join(lines)

    def step_states(self) -> dict[str, str]:
        """{step path: state}, CACHED for a step KFP served from its cache (the XCom ``steps``)."""
        return {step.name: step.label for step in self.steps}


def __getattr__(name: str) -> Any:
    # StepStatus lives in kfp_bridge.utils.steps (as Step), which imports this module.
    if name == "StepStatus":
        from kfp_bridge.utils.steps import Step

        return Step
    raise AttributeError(name)


def _error_message(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        return error.get("message") or None
    return str(error)
