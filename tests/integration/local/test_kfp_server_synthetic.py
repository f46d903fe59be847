"""The stand-in's admin-only synthetic runs: timed PENDING → RUNNING → final, nothing executed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from kfp_bridge.local.kfp.synthetic import plan
from tests.fixtures.kfp_stand_in import start_kfp_stand_in
from tests.integration.local.kfp_helpers import history, unique, wait_for_state

pytestmark = pytest.mark.integration
IRIS = str(Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "iris.yaml")
IRIS_TASKS = {"load-iris-dataset", "train-classifier", "evaluate-classifier", "export-model"}


def test_plan_walks_tasks_in_order_and_ends_at_the_duration():
    steps = plan("r", ["a", "b"], start=100.0, duration=10.0)
    assert [s[2] for s in steps] == [0, 1, 2]
    assert steps[0][0] == pytest.approx(100.2)
    assert steps[-1][0] == pytest.approx(110.0)
    assert steps[0][0] < steps[1][0] < steps[2][0]


def test_synthetic_runs_finish_on_a_timer_with_task_progress(kfp_stand_in, tmp_path):
    with kfp_stand_in.http() as http:
        assert http.get("/_admin/synthetic").json()["enabled"] is False  # off by default
        ok, bad, cut = unique("syn-ok"), unique("syn-bad"), unique("syn-cut")
        body = {"enabled": True, "duration_seconds": 2.0, "outcomes": {bad: "FAILED"}}
        settings = http.post("/_admin/synthetic", json=body).json()
        assert settings["enabled"] is True and settings["duration_seconds"] == 2.0
        assert http.post("/_admin/synthetic", json={"duration_seconds": -1}).status_code == 400
        client = kfp_stand_in.client()
        try:
            started = time.time()
            ids = {
                name: client.create_run_from_pipeline_package(
                    IRIS, arguments={"model_dir": str(tmp_path / name)}, run_name=name
                ).run_id
                for name in (ok, bad, cut)
            }
            wait_for_state(client, ids[cut], {"RUNNING"}, timeout=10)
            client.terminate_run(ids[cut])
            runs = {name: wait_for_state(client, run_id, timeout=20) for name, run_id in ids.items()}
            elapsed = time.time() - started
            finished = http.get("/_admin/synthetic/finished").json()["finished"]
        finally:
            assert http.delete("/_admin/synthetic").status_code == 200
        assert http.get("/_admin/synthetic").json()["enabled"] is False

    assert runs[ok].state == "SUCCEEDED"
    assert history(runs[ok]) == ["PENDING", "RUNNING", "SUCCEEDED"]
    # Synthetic runs report the same Argo nodes as executed ones (fidelity K3): each step is its
    # ``<task>`` node beside drivers, executors, root and the workflow node; no error text (K4), and a
    # terminated run ends FAILED (K2). The old step-only, error-carrying, CANCELED shapes were stand-in-only.
    tasks = {t.display_name: t.state for t in runs[ok].run_details.task_details if t.display_name in IRIS_TASKS}
    assert tasks == dict.fromkeys(IRIS_TASKS, "SUCCEEDED")
    assert {"root", "root-driver", "executor"} <= {t.display_name for t in runs[ok].run_details.task_details}
    assert runs[bad].state == "FAILED" and runs[bad].error is None
    assert sorted(t.state for t in runs[bad].run_details.task_details if t.display_name in IRIS_TASKS) == [
        "FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert runs[cut].state == "FAILED" and "CANCELED" not in history(runs[cut])
    # Timed, not executed: no run folder, and done in about the configured duration.
    assert elapsed < 15
    assert not (kfp_stand_in.state_dir / "runs" / ids[ok]).exists()
    for name in (ok, bad, cut):
        exact = finished[ids[name]]
        assert abs(runs[name].finished_at.timestamp() - exact) < 1.0  # wire has whole seconds
    assert finished[ids[ok]] - started >= 2.0


def test_runs_created_after_disabling_execute_normally_and_the_knob_needs_admin(tmp_path):
    with start_kfp_stand_in(tmp_path / "plain", admin=False) as plain:
        with plain.http() as http:
            assert http.get("/_admin/synthetic").status_code == 404
            response = http.post("/_admin/synthetic", json={"enabled": True})
            assert response.status_code == 404
    with start_kfp_stand_in(tmp_path / "admin", admin=True) as admin:
        with httpx.Client(base_url=admin.host, timeout=10) as http:
            http.post("/_admin/synthetic", json={"enabled": True, "duration_seconds": 30})
            http.delete("/_admin/synthetic")
        client = admin.client()
        run_id = client.create_run_from_pipeline_package(
            IRIS, arguments={"model_dir": str(tmp_path / "m")}, run_name=unique("real")
        ).run_id
        # A real execution starts a child process in the run's folder.
        deadline = time.monotonic() + 20
        while not (admin.state_dir / "runs" / run_id).exists():
            assert time.monotonic() < deadline, "the run was not executed after synthetic mode was switched off"
            time.sleep(0.1)
        client.terminate_run(run_id)
        assert wait_for_state(client, run_id, timeout=30).state == "FAILED"  # terminated runs end FAILED (K2)
