"""Small helpers shared by the KFP stand-in integration tests."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kfp_server_api
import pytest
import yaml

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


def api_error(call: Any, *args: Any, **kwargs: Any) -> kfp_server_api.ApiException:
    """The ApiException ``call`` raises (fails the test when it succeeds)."""
    with pytest.raises(kfp_server_api.ApiException) as info:
        call(*args, **kwargs)
    return info.value


def error_body(error: kfp_server_api.ApiException) -> dict[str, Any]:
    """The grpc-gateway body ``{code, message, details}`` of an ApiException."""
    body = error.body.decode() if isinstance(error.body, bytes) else error.body
    return json.loads(body)


@contextmanager
def synthetic_runs(stand_in: Any, duration_seconds: float = 600.0) -> Iterator[None]:
    """Runs created inside do not execute (admin ``/_admin/synthetic``); they are terminated on exit."""
    with stand_in.http() as http:
        assert http.post("/_admin/synthetic", json={"enabled": True, "duration_seconds": duration_seconds}).status_code == 200
        before = {r.run_id for r in stand_in.all_runs()}
        try:
            yield
        finally:
            http.delete("/_admin/synthetic")
            client = stand_in.client()
            for run in stand_in.all_runs():
                if run.run_id not in before and run.state in ("PENDING", "RUNNING"):
                    client.terminate_run(run.run_id)


def compiled_spec(pipeline_func: Any) -> dict[str, Any]:
    """The compiled PipelineSpec of ``pipeline_func``, for raw ``run_service_create_run`` bodies."""
    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/pipeline.yaml"
        compiler.Compiler().compile(pipeline_func, path)
        with open(path) as handle:
            return yaml.safe_load(handle)
