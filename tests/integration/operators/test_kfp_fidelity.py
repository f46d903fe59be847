"""KfpRunOperator against the KFP stand-in as hard as KFP 2.17 (reference/fidelity.md), on the real
Airflow stack: steps come from Argo nodes (K3, backend/src/apiserver/server/api_converter.go), no
step error text exists (K4), terminate ends FAILED (K2, apiserver/resource/resource_manager.go),
and steps are cached across runs (K6, cachingOptions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import wait_log
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import PIPELINES, add_dag, explain, kfp_runs
from tests.integration.operators.fidelity_pipelines import compile_fidelity

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

RUN_TIMEOUT = 300
DAG_ID = "kfp_ops_fidelity"


@pytest.fixture(scope="module")
def fidelity_dag(ops_stack: AirflowStack, ops_pipelines: dict[str, Path]) -> str:
    compile_fidelity(ops_stack.dags_folder / PIPELINES)
    return add_dag(ops_stack, DAG_ID)


def _task_run(stand_in: KfpStandIn, run_id: str, task_id: str):
    (run,) = kfp_runs(stand_in, dag_id=DAG_ID, run_id=run_id, task_id=task_id)
    return run


def test_failures_are_named_by_pipeline_path_cached_steps_are_cached_and_timeouts_blame_no_step(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, fidelity_dag: str, tmp_path: Path
) -> None:
    run_id = ops_stack.trigger_dag(fidelity_dag, conf={"work": str(tmp_path)})
    assert ops_stack.wait_dag_run(fidelity_dag, run_id, RUN_TIMEOUT) == "failed", explain(ops_stack, fidelity_dag, run_id)
    states = {ti["task_id"]: ti["state"] for ti in ops_stack.task_instances(fidelity_dag, run_id)}
    assert states == {
        "nested": "failed", "loop": "failed", "cached": "success", "uncached": "success",
        "timeout_sync": "failed", "timeout_deferred": "failed",
    }, explain(ops_stack, fidelity_dag, run_id)

    # A failing step inside a nested pipeline and inside one ParallelFor iteration: named by path,
    # linked, nothing else blamed, and the message says where the step's log is (no error text in KFP).
    nested_log = ops_stack.task_log(fidelity_dag, run_id, "nested", 1)
    nested_run = _task_run(kfp_stand_in, run_id, "nested")
    assert f"step 'bridge-inner/explode' failed ({kfp_stand_in.host}/#/runs/details/{nested_run.run_id}" in nested_log
    assert "step 'count' failed" not in nested_log and "step 'bridge-inner/count' failed" not in nested_log
    assert f"-l pipeline/runid={nested_run.run_id} -c main" in nested_log
    loop_log = wait_log(ops_stack, fidelity_dag, run_id, "loop", "step 'for-loop-2[1]/explode' failed")
    assert "for-loop-2[0]/explode' failed" not in loop_log and "for-loop-2[2]/explode' failed" not in loop_log
    assert (tmp_path / "loop.counter").read_text().count("explode") == 3

    # Timed out: the run is terminated, KFP stores it FAILED, the task says Airflow did it.
    for task_id in ("timeout_sync", "timeout_deferred"):
        log = wait_log(ops_stack, fidelity_dag, run_id, task_id, "terminated by Airflow (timeout=20 passed)")
        assert "step 'sleep-for' failed" not in log
        assert _task_run(kfp_stand_in, run_id, task_id).state == "FAILED"

    first = ops_stack.xcom(fidelity_dag, run_id, "cached")
    assert first["steps"] == {"count": "SUCCEEDED", "count-2": "SUCCEEDED"}
    assert (tmp_path / "cached.counter").read_text().splitlines() == ["x", "x"]

    # The same inputs in the next DAG run: KFP serves both steps from its cache (nothing executes
    # again) and the task reports them CACHED; with enable_caching=False every step runs.
    again = ops_stack.trigger_dag(fidelity_dag, conf={"work": str(tmp_path)})
    assert ops_stack.wait_dag_run(fidelity_dag, again, RUN_TIMEOUT) == "failed"
    assert ops_stack.task_instance(fidelity_dag, again, "cached")["state"] == "success"
    second = ops_stack.xcom(fidelity_dag, again, "cached")
    assert second["run_id"] != first["run_id"]
    assert second["steps"] == {"count": "CACHED", "count-2": "CACHED"}
    assert (tmp_path / "cached.counter").read_text().splitlines() == ["x", "x"]
    assert "served 2 step(s) from its cache" in ops_stack.task_log(fidelity_dag, again, "cached", 1)
    assert ops_stack.xcom(fidelity_dag, again, "uncached")["steps"] == {"count": "SUCCEEDED", "count-2": "SUCCEEDED"}
    assert (tmp_path / "uncached.counter").read_text().splitlines() == ["u"] * 4
