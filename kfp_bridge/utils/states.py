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
class StepStatus:
    """One pipeline task of a run, as ``run_details.task_details`` reports it."""

    name: str
    state: RunState
    error: str | None = None
    start_time: str | None = None
    end_time: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "state": self.state.value}
        if self.error:
            data["error"] = self.error
        if self.start_time:
            data["start_time"] = self.start_time
        if self.end_time:
            data["end_time"] = self.end_time
        return data


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState
    display_name: str = ""
    experiment_id: str = ""
    pipeline_version_id: str = ""
    error: str | None = None
    steps: tuple[StepStatus, ...] = field(default_factory=tuple)

    @classmethod
    def from_api(cls, run: dict[str, Any]) -> RunStatus:
        details = run.get("run_details") or {}
        steps = tuple(
            StepStatus(
                name=task.get("display_name") or task.get("task_id") or "?",
                state=RunState.parse(task.get("state")),
                error=_error_message(task.get("error")),
                start_time=_time_or_none(task.get("start_time")),
                end_time=_time_or_none(task.get("end_time")),
            )
            for task in details.get("task_details") or []
        )
        reference = run.get("pipeline_version_reference") or {}
        return cls(
            run_id=run.get("run_id") or "",
            state=RunState.parse(run.get("state")),
            display_name=run.get("display_name") or "",
            experiment_id=run.get("experiment_id") or "",
            pipeline_version_id=reference.get("pipeline_version_id") or run.get("pipeline_version_id") or "",
            error=_error_message(run.get("error")),
            steps=steps,
        )

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.state)

    @property
    def is_success(self) -> bool:
        return is_success(self.state)

    @property
    def failed_steps(self) -> tuple[StepStatus, ...]:
        return tuple(step for step in self.steps if step.state == RunState.FAILED)

    def progress_key(self) -> tuple:
        """What changes when progress is worth logging again."""
        return (self.state, tuple((step.name, step.state) for step in self.steps))

    def progress_line(self) -> str:
        if not self.steps:
            return f"KFP run {self.run_id}: {self.state.value}"
        done = sum(1 for step in self.steps if is_terminal(step.state))
        parts = ", ".join(f"{step.name}={step.state.value}" for step in self.steps)
        return f"KFP run {self.run_id}: {self.state.value} ({done}/{len(self.steps)} steps finished: {parts})"

    def failure_message(self) -> str:
        """Why the run did not succeed, naming each failed step and its error."""
        lines = [f"KFP run {self.run_id} ended {self.state.value}."]
        for step in self.failed_steps:
            lines.append(f"  step '{step.name}' failed: {step.error or 'no error message reported'}")
        if not self.failed_steps and self.error:
            lines.append(f"  run error: {self.error}")
        if self.state == RunState.CANCELED:
            lines.append("  the run was terminated (cancelled) before it finished.")
        return "\n".join(lines)

    def step_states(self) -> dict[str, str]:
        return {step.name: step.state.value for step in self.steps}


def _error_message(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        return error.get("message") or None
    return str(error)


def _time_or_none(value: Any) -> str | None:
    if not value:
        return None
    text = value if isinstance(value, str) else value.isoformat()
    # The API sends the epoch for "unset".
    return None if text.startswith("1970-01-01") else text
