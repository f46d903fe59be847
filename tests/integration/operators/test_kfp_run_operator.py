"""KfpRunOperator end to end: a real Airflow 3.3 stack (scheduler, triggerer, api-server on SQLite)
running the operator against the session KFP stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import add_dag, kfp_runs, step_states

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

RUN_TIMEOUT = 180
BASIC = "kfp_ops_basic"
BAD = "kfp_ops_bad"
MAPPED = "kfp_ops_mapped"
SLEEP = "kfp_ops_sleep"
# Task of kfp_ops_bad -> what its error must say (each names the culprit and the fix).
BAD_INPUT_ERRORS = {
    "missing_yaml": ["kfp_ops_pipelines/missing.yaml does not exist"],
    "invalid_yaml": ["kfp_ops_pipelines/invalid.yaml is not valid YAML", "kfp-bridge compile"],
    "unknown_param": ["unknown pipeline parameter 'learning_rate'", "accepts: counter_path, flag_path, label"],
    "missing_required": ["missing required pipeline parameter 'flag_path'"],
    "wrong_type": ["pipeline parameter 'seconds' expects a float", "got 'abc'"],
    "unknown_conn": ["kfp_ops_no_such_conn` isn't defined"],
    "malformed_host": ["Connection 'kfp_ops_bad_host' host 'kfp.example.com:8888 /pipeline' is not an http(s) URL"],
}


@pytest.fixture(scope="module")
def basic_dag(ops_stack: AirflowStack) -> str:
    return add_dag(ops_stack, BASIC)


def test_sync_and_deferred_runs_succeed_with_xcom_and_link(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, basic_dag: str, tmp_path: Path
) -> None:
    run_id = ops_stack.trigger_dag(basic_dag, conf={"work": str(tmp_path)})
    assert ops_stack.wait_task_state(basic_dag, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
    assert ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT) == "success"

    runs = {r.run_id: r for r in kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id)}
    assert len(runs) == 2
    for task_id in ("sync", "deferred"):
        result = ops_stack.xcom(basic_dag, run_id, task_id)
        url = ops_stack.xcom(basic_dag, run_id, task_id, key="kfp_run_url")
        kfp_run = runs[result["run_id"]]
        assert kfp_run.state == "SUCCEEDED"
        assert kfp_run.description.endswith(f"/task_id={task_id}/run_id={run_id}/map_index=-1")
        assert url == f"{kfp_stand_in.host}/#/runs/details/{kfp_run.run_id}"
        assert result["url"] == url
        assert result["state"] == "SUCCEEDED"
        assert result["experiment_id"] == kfp_run.experiment_id
        assert result["pipeline_version_id"] == kfp_run.pipeline_version_reference.pipeline_version_id
        assert set(result["steps"].values()) == {"SUCCEEDED"}
        assert {"prepare", "check-flag"} <= set(result["steps"])
        links = ops_stack.get(
            f"/api/v2/dags/{basic_dag}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        ).json()
        assert links["extra_links"] == {"Kubeflow run": url}
        assert (tmp_path / f"{task_id}.counter").read_text() == f"{task_id}\n"


def test_bad_input_fails_before_any_run_exists(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, ops_pipelines: dict[str, Path]
) -> None:
    (ops_pipelines["two_step"].parent / "invalid.yaml").write_text("pipelineInfo: [name: broken\n  - : :\n")
    dag_id = add_dag(ops_stack, BAD)
    before = len(kfp_runs(kfp_stand_in))
    run_id = ops_stack.trigger_dag(dag_id)
    assert ops_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed"

    states = {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in ops_stack.task_instances(dag_id, run_id)}
    assert states == {task_id: ("failed", 1) for task_id in BAD_INPUT_ERRORS}
    for task_id, expected in BAD_INPUT_ERRORS.items():
        log = ops_stack.task_log(dag_id, run_id, task_id, 1)
        for text in expected:
            assert text in log, f"{task_id}: {text!r} not in its log:\n{log[-3000:]}"
    assert len(kfp_runs(kfp_stand_in)) == before
    assert kfp_runs(kfp_stand_in, dag_id=dag_id) == []


def test_failed_step_is_named_and_clear_retries_only_it_in_the_same_run(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, basic_dag: str, tmp_path: Path
) -> None:
    for task_id in ("sync", "deferred"):
        (tmp_path / f"{task_id}.flag").write_text("fail\n")
    run_id = ops_stack.trigger_dag(basic_dag, conf={"work": str(tmp_path)})
    assert ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT) == "failed"
    first = {r.description: r.run_id for r in kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id)}
    assert len(first) == 2
    for task_id in ("sync", "deferred"):
        assert ops_stack.task_instance(basic_dag, run_id, task_id)["state"] == "failed"
        log = ops_stack.task_log(basic_dag, run_id, task_id, 1)
        assert "KfpRunError" in log
        assert "check-flag" in log
        assert f"flag file {tmp_path / (task_id + '.flag')} is present" in log

    for task_id in ("sync", "deferred"):
        (tmp_path / f"{task_id}.flag").unlink()
    ops_stack.clear_task(basic_dag, run_id, ["sync", "deferred"])
    state = ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT)
    if state != "success":
        for t in ("sync", "deferred"):
            print("XXX", t, ops_stack.task_instance(basic_dag, run_id, t))
            try:
                print(ops_stack.task_log(basic_dag, run_id, t, 2)[-6000:])
            except Exception as e:
                print(e)
    assert state == "success"

    # Same KFP runs, no new one; prepare ran once (its counter has one line), check-flag ran again.
    again = {r.description: r.run_id for r in kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id)}
    assert again == first
    for task_id in ("sync", "deferred"):
        assert ops_stack.task_instance(basic_dag, run_id, task_id)["try_number"] == 2
        result = ops_stack.xcom(basic_dag, run_id, task_id)
        assert result["run_id"] in first.values()
        assert result["state"] == "SUCCEEDED"
        assert (tmp_path / f"{task_id}.counter").read_text() == f"{task_id}\n"
        steps = step_states(kfp_stand_in, result["run_id"])
        assert steps["prepare"] == ["SUCCEEDED"]
        assert "SUCCEEDED" in steps["check-flag"]
        log = ops_stack.task_log(basic_dag, run_id, task_id, 2)
        assert f"Previous KFP run {result['run_id']} ended FAILED (failed steps: check-flag)" in log
        assert "Created KFP run" not in log


def test_mapped_task_runs_one_kfp_run_per_index_and_clear_retries_only_its_own(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path: Path
) -> None:
    dag_id = add_dag(ops_stack, MAPPED)
    (tmp_path / "m1.flag").write_text("fail\n")
    run_id = ops_stack.trigger_dag(dag_id, conf={"work": str(tmp_path)})
    assert ops_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed"
    states = {ti["map_index"]: ti["state"] for ti in ops_stack.task_instances(dag_id, run_id)}
    assert states == {0: "success", 1: "failed", 2: "success"}
    runs = {int(r.description.rsplit("=", 1)[1]): r for r in kfp_runs(kfp_stand_in, dag_id=dag_id, run_id=run_id)}
    assert sorted(runs) == [0, 1, 2]
    assert [runs[i].state for i in range(3)] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    for index in range(3):
        assert runs[index].runtime_config.parameters["label"] == f"set-{index}"
        assert ops_stack.xcom(dag_id, run_id, "mapped", key="kfp_run_url", map_index=index).endswith(runs[index].run_id)

    (tmp_path / "m1.flag").unlink()
    cleared = ops_stack.clear_task(dag_id, run_id, ["mapped"], map_indexes=[1])
    assert [(ti["task_id"], ti["map_index"]) for ti in cleared] == [("mapped", 1)]
    assert ops_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "success"

    after = {int(r.description.rsplit("=", 1)[1]): r for r in kfp_runs(kfp_stand_in, dag_id=dag_id, run_id=run_id)}
    assert {i: r.run_id for i, r in after.items()} == {i: r.run_id for i, r in runs.items()}
    assert [after[i].state for i in range(3)] == ["SUCCEEDED"] * 3
    tries = {ti["map_index"]: ti["try_number"] for ti in ops_stack.task_instances(dag_id, run_id)}
    assert tries == {0: 1, 1: 2, 2: 1}
    assert ops_stack.xcom(dag_id, run_id, "mapped", map_index=1)["run_id"] == runs[1].run_id
    for index in range(3):
        assert (tmp_path / f"m{index}.counter").read_text() == f"set-{index}\n"
