"""RetryRun on the KFP stand-in's service, for the states a live server cannot be steered into (fidelity K5).

Upstream: backend/src/apiserver/resource/resource_manager.go ``RetryRun`` (an empty workflow
manifest is NewBadRequestError → 409) and backend/src/common/util/workflow.go
``GenerateRetryExecution`` (phase not Failed/Error → NewBadRequestError → 409; a node still
Pending/Running → NewInternalServerError → 500 "Internal Server Error").
"""

from __future__ import annotations

import pytest

from kfp_bridge.local.kfp import service as service_module
from kfp_bridge.local.kfp.service import KfpService
from kfp_bridge.local.kfp.store import Store
from kfp_bridge.local.kfp.wire import ApiError


class StubExecutor:
    def __init__(self, active: bool = False) -> None:
        self.active = active
        self.started: list[tuple[str, int]] = []

    def is_active(self, run_id: str) -> bool:
        return self.active

    def start(self, run_id: str, attempt: int) -> None:
        self.started.append((run_id, attempt))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "kfp.sqlite")
    yield store
    store.close()


def _run(store: Store, state: str, tasks: list[dict] | None = None) -> str:
    doc = {"run_id": "r1", "state": state, "experiment_id": "e", "_attempt": 1,
           "state_history": [{"update_time": 1.0, "state": state}]}
    if tasks is not None:
        doc["task_details"] = tasks
    store.put("runs", "r1", doc)
    return "r1"


def _retry_error(service: KfpService, run_id: str) -> ApiError:
    with pytest.raises(ApiError) as info:
        service.retry_run(run_id)
    return info.value


def test_a_node_still_running_in_a_failed_run_is_500(store):
    executor = StubExecutor()
    run_id = _run(store, "FAILED", [{"task_id": "wf-1", "state": "SUCCEEDED"}, {"task_id": "wf-2", "state": "RUNNING"}])
    error = _retry_error(KfpService(store, executor), run_id)
    assert error.http_status == 500
    assert error.message == (
        "Failed to retry a run: Failed to retry run r1: InternalServerError: Workflow cannot be retried with node "
        "wf-2 in Running phase: workflow cannot be retried"
    )
    assert error.external == "Internal Server Error"
    assert executor.started == []


def test_a_run_whose_processes_do_not_stop_is_a_node_still_running(store, monkeypatch):
    monkeypatch.setattr(service_module, "RETRY_SETTLE_SECONDS", 0.1)
    run_id = _run(store, "FAILED", [])
    error = _retry_error(KfpService(store, StubExecutor(active=True)), run_id)
    assert error.http_status == 500 and "in Running phase" in error.message


def test_a_run_nothing_reported_on_yet_has_no_manifest_409(store):
    run_id = _run(store, "PENDING")
    error = _retry_error(KfpService(store, StubExecutor()), run_id)
    assert error.http_status == 409
    assert error.message == (
        "Failed to retry a run: BadRequestError: Failed to retry run r1 due to error fetching workflow manifest: "
        "Invalid input error: Workflow manifest cannot be empty"
    )


@pytest.mark.parametrize("state", ["RUNNING", "SUCCEEDED", "CANCELING", "SKIPPED", "PAUSED"])
def test_any_run_not_failed_is_409_aborted(store, state):
    run_id = _run(store, state, [{"task_id": "wf-1", "state": "SUCCEEDED"}])
    error = _retry_error(KfpService(store, StubExecutor()), run_id)
    assert (error.http_status, error.code) == (409, 10)
    assert error.external == "Workflow must be Failed/Error to retry"


def test_a_failed_run_is_retried(store):
    executor = StubExecutor()
    run_id = _run(store, "FAILED", [{"task_id": "wf-1", "state": "SUCCEEDED"}, {"task_id": "wf-2", "state": "FAILED"}])
    assert KfpService(store, executor).retry_run(run_id) == {}
    assert executor.started == [("r1", 2)]
    assert store.get("runs", "r1")["state"] == "RUNNING"
