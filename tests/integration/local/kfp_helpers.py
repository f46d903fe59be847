"""Small helpers shared by the KFP stand-in integration tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

TERMINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for_state(client: Any, run_id: str, states: set[str] | None = None, timeout: float = 90.0) -> Any:
    """Poll get_run until the state is in ``states`` (default: terminal); kfp's own wait ignores CANCELED."""
    wanted = states or TERMINAL
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_run(run_id)
        if run.state in wanted:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.state} after {timeout}s (wanted {sorted(wanted)})")
        time.sleep(0.2)


def tasks_by_name(run: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for task in run.run_details.task_details or []:
        out.setdefault(task.display_name, []).append(task)
    return out


def history(obj: Any) -> list[str]:
    return [entry.state for entry in obj.state_history or []]
