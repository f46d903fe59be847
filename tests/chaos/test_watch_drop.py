"""Scenario f: the Kubernetes watch is dropped mid-rollout, for a sync rollout (its watch runs in the
worker) and a deferred one (its watch runs in the triggerer), in the real Airflow stack.

Each canary's model is a FIFO, so the new revision cannot load until the test says so: both tasks
are guaranteed to be waiting on their watches when every watch is ended cleanly and then broken
mid-stream. Both rollouts must still see the canary come up, smoke-test it and promote it.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.chaos.conftest import RUN_TIMEOUT, explain, poll, state_mismatch_tries, tries
from tests.fixtures.kube_stand_in import (
    IrisModels,
    KubeStandIn,
    predictor_status,
    release,
    revision_traffic,
    slow_model,
)

pytestmark = pytest.mark.chaos

DAG_ID = "chaos_rollout"
MODES = ("sync", "deferred")


@pytest.mark.timeout(1200)
def test_watch_dropped_mid_rollout_still_promotes(
    chaos_stack: AirflowStack,
    chaos_kube: KubeStandIn,
    iris_models: IrisModels,
    tmp_path: Path,
    chaos_round: int,
) -> None:
    suffix = secrets.token_hex(3)
    names = {mode: f"chaos-{mode}-{suffix}" for mode in MODES}
    models = {mode: slow_model(tmp_path / f"{mode}-v2") for mode in MODES}
    for name in names.values():
        chaos_kube.create_isvc(name, iris_models.v1)
    for name in names.values():
        chaos_kube.wait_condition(name, "Ready", generation=1, timeout=RUN_TIMEOUT)
    conf = {f"{m}_isvc": names[m] for m in MODES} | {f"{m}_uri": f"file://{models[m]}" for m in MODES}
    run_id = chaos_stack.trigger_dag(DAG_ID, conf=conf)
    try:
        for mode in MODES:
            revision = f"{names[mode]}-predictor-00002"
            chaos_kube.wait_for(
                names[mode],
                lambda o, r=revision: predictor_status(o).get("latestCreatedRevision") == r,
                timeout=RUN_TIMEOUT,
                what="the canary revision created",
            )
        assert (
            chaos_stack.wait_task_state(DAG_ID, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
        )
        assert chaos_stack.task_instance(DAG_ID, run_id, "sync")["state"] == "running"

        def watching() -> bool:
            return chaos_kube.admin("GET", "stats")["watchesOpen"] >= len(MODES)

        poll(watching, 120, "the two rollouts never both watched", 0.1)
        assert chaos_kube.admin("POST", "drop-watches")["dropped"] >= len(MODES)
        time.sleep(1.0)
        poll(watching, 120, "the rollouts did not watch again after their watches ended", 0.1)
        assert chaos_kube.admin("POST", "drop-watches", params={"mode": "abort"})["dropped"] >= len(MODES)
        time.sleep(2.0)
        states = {
            ti["task_id"]: (ti["state"], ti["try_number"])
            for ti in chaos_stack.task_instances(DAG_ID, run_id)
        }
        assert states == {"sync": ("running", 1), "deferred": ("deferred", 1)}, states
        for mode in MODES:
            release(models[mode], iris_models.v2, timeout=180)
        assert chaos_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT) == "success", explain(
            chaos_stack, DAG_ID, run_id
        )
    finally:
        for mode in MODES:  # never leave a model server blocked on its FIFO
            with contextlib.suppress(Exception):
                if (models[mode] / "model.joblib").is_fifo():
                    release(models[mode], iris_models.v2, timeout=180)

    raced: dict[str, list[int]] = {}
    for mode in MODES:
        r1, r2 = f"{names[mode]}-predictor-00001", f"{names[mode]}-predictor-00002"
        attempts = tries(chaos_stack, DAG_ID, run_id, mode)
        assert attempts[-1][1] == "success"
        failed = {number for number, state in attempts if state == "failed"}
        # Only Airflow's own race may fail a try (and the retry then resumes the rollout).
        assert failed <= state_mismatch_tries(chaos_stack, DAG_ID, run_id, mode), (
            attempts,
            explain(chaos_stack, DAG_ID, run_id),
        )
        raced[mode] = sorted(failed)
        result = chaos_stack.xcom(DAG_ID, run_id, mode)
        assert (result["outcome"], result["previous_revision"], result["new_revision"]) == (
            "promoted",
            r1,
            r2,
        )
        obj = chaos_kube.get_isvc(names[mode])
        assert revision_traffic(obj) == [(r2, 100)]
        assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    print(f"tries failed by Airflow's resume-after-defer race (then retried): {raced}")
