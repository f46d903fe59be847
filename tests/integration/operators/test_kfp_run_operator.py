"""KfpRunOperator end to end: a real Airflow 3.3 stack (scheduler, triggerer, api-server on SQLite)
running the operator against the session KFP stand-in."""

from __future__ import annotations

import json
import secrets
import signal
from pathlib import Path

import httpx
import psutil
import pytest
from cryptography.fernet import Fernet

from kfp_bridge.local.airflow import DEV_FERNET_KEY, AirflowStack
from kfp_bridge.utils.run_tags import parse_run_tag
from tests.fixtures.airflow_checks import wait_log
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import add_dag, explain, kfp_runs, step_states, wait_kfp_runs

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

RUN_TIMEOUT = 180
BASIC = "kfp_ops_basic"
BAD = "kfp_ops_bad"
MAPPED = "kfp_ops_mapped"
SLEEP = "kfp_ops_sleep"
KILL_TIMEOUT = 90
FAST_FAILURE_SECONDS = 20
# Every token the stand-in accepted during this module; none may appear anywhere Airflow keeps data.
SEEN_TOKENS: set[str] = set()
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


@pytest.fixture(scope="module")
def sleep_dag(ops_stack: AirflowStack) -> str:
    return add_dag(ops_stack, SLEEP)


def _trigger_kwargs(stack: AirflowStack) -> list[str]:
    """The kwargs of every trigger row, decrypted as the triggerer reads them."""
    rows = stack.sql("SELECT classpath, kwargs FROM trigger")
    fernet = Fernet(DEV_FERNET_KEY.encode())
    # Airflow stores them fernet-encrypted, or as plain JSON on some paths (Trigger._decrypt_kwargs).
    return [
        kwargs if kwargs.startswith("{") else fernet.decrypt(kwargs.encode()).decode()
        for classpath, kwargs in rows
        if classpath.endswith("KfpRunTrigger")
    ]


def test_sync_and_deferred_runs_succeed_with_xcom_and_link(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, basic_dag: str, tmp_path: Path
) -> None:
    run_id = ops_stack.trigger_dag(basic_dag, conf={"work": str(tmp_path)})
    assert ops_stack.wait_task_state(basic_dag, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
    assert ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT) == "success", explain(ops_stack, basic_dag, run_id)

    runs = {r.run_id: r for r in kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id)}
    assert len(runs) == 2
    for task_id in ("sync", "deferred"):
        result = ops_stack.xcom(basic_dag, run_id, task_id)
        url = ops_stack.xcom(basic_dag, run_id, task_id, key="kfp_run_url")
        kfp_run = runs[result["run_id"]]
        assert kfp_run.state == "SUCCEEDED"
        tag = parse_run_tag(kfp_run.description)
        assert tag is not None and (tag["task_id"], tag["run_id"], tag["map_index"]) == (task_id, run_id, "-1")
        # fidelity.md K1: the real server unescapes the filter twice; the tag keeps "+00:00" out.
        assert "+" in run_id and not {"+", "%", " "} & set(kfp_run.description)
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
        assert "step 'check-flag' failed" in log and "step 'prepare' failed" not in log
        # KFP 2.17 reports no step error text (fidelity.md K4; the stand-in used to fill task_details'
        # error): without a Kubernetes connection the message says where the step's log is.
        assert f"-l pipeline/runid={first_run_of(kfp_stand_in, basic_dag, run_id, task_id)} -c main" in log

    for task_id in ("sync", "deferred"):
        (tmp_path / f"{task_id}.flag").unlink()
    ops_stack.clear_task(basic_dag, run_id, ["sync", "deferred"])
    assert ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT) == "success", explain(ops_stack, basic_dag, run_id)

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


def first_run_of(stand_in: KfpStandIn, dag_id: str, run_id: str, task_id: str) -> str:
    (run,) = kfp_runs(stand_in, dag_id=dag_id, run_id=run_id, task_id=task_id)
    return run.run_id


def _map_index(run) -> int:
    tag = parse_run_tag(run.description)
    assert tag is not None, run.description
    return int(tag["map_index"])


def test_mapped_task_runs_one_kfp_run_per_index_and_clear_retries_only_its_own(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path: Path
) -> None:
    dag_id = add_dag(ops_stack, MAPPED)
    (tmp_path / "m1.flag").write_text("fail\n")
    run_id = ops_stack.trigger_dag(dag_id, conf={"work": str(tmp_path)})
    assert ops_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed"
    states = {ti["map_index"]: ti["state"] for ti in ops_stack.task_instances(dag_id, run_id)}
    assert states == {0: "success", 1: "failed", 2: "success"}
    runs = {_map_index(r): r for r in kfp_runs(kfp_stand_in, dag_id=dag_id, run_id=run_id)}
    assert sorted(runs) == [0, 1, 2]
    assert [runs[i].state for i in range(3)] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    for index in range(3):
        assert runs[index].runtime_config.parameters["label"] == f"set-{index}"
        assert ops_stack.xcom(dag_id, run_id, "mapped", key="kfp_run_url", map_index=index).endswith(runs[index].run_id)

    (tmp_path / "m1.flag").unlink()
    cleared = ops_stack.clear_task(dag_id, run_id, ["mapped"], map_indexes=[1])
    assert [(ti["task_id"], ti["map_index"]) for ti in cleared] == [("mapped", 1)]
    assert ops_stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "success", explain(ops_stack, dag_id, run_id)

    after = {_map_index(r): r for r in kfp_runs(kfp_stand_in, dag_id=dag_id, run_id=run_id)}
    assert {i: r.run_id for i, r in after.items()} == {i: r.run_id for i, r in runs.items()}
    assert [after[i].state for i in range(3)] == ["SUCCEEDED"] * 3
    tries = {ti["map_index"]: ti["try_number"] for ti in ops_stack.task_instances(dag_id, run_id)}
    assert tries == {0: 1, 1: 2, 2: 1}
    assert ops_stack.xcom(dag_id, run_id, "mapped", map_index=1)["run_id"] == runs[1].run_id
    for index in range(3):
        assert (tmp_path / f"m{index}.counter").read_text() == f"set-{index}\n"


def test_killing_a_running_sync_task_and_a_deferred_task_terminates_their_runs(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, sleep_dag: str
) -> None:
    run_id = ops_stack.trigger_dag(sleep_dag, conf={"seconds": 600})
    assert ops_stack.wait_task_state(sleep_dag, run_id, "sync", ("running",), RUN_TIMEOUT) == "running"
    assert ops_stack.wait_task_state(sleep_dag, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
    wait_kfp_runs(kfp_stand_in, 2, {"RUNNING"}, dag_id=sleep_dag, run_id=run_id)
    # The triggerer has picked the trigger up (its first progress line). Marked failed before
    # that, a deferred task has no trigger whose on_kill Airflow could call (README runbook).
    wait_log(ops_stack, sleep_dag, run_id, "deferred", "steps finished")

    # What on-call does in the UI: mark the task failed; Airflow then kills the task or its trigger.
    for task_id in ("sync", "deferred"):
        response = ops_stack.patch(
            f"/api/v2/dags/{sleep_dag}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": "failed"}
        )
        assert response.status_code == 200, response.text

    # KFP 2.17 ends a terminated run FAILED, not CANCELED (fidelity.md K2; the stand-in used to say
    # CANCELED): only the task's log can say the run was terminated by Airflow.
    runs = wait_kfp_runs(kfp_stand_in, 2, {"FAILED"}, KILL_TIMEOUT, dag_id=sleep_dag, run_id=run_id)
    assert {parse_run_tag(r.description)["task_id"] for r in runs} == {"sync", "deferred"}
    assert ops_stack.wait_dag_run(sleep_dag, run_id, RUN_TIMEOUT) == "failed"
    for task_id in ("sync", "deferred"):
        ti = ops_stack.task_instance(sleep_dag, run_id, task_id)
        assert (ti["state"], ti["try_number"]) == ("failed", 1)
        log = wait_log(ops_stack, sleep_dag, run_id, task_id, "terminated by Airflow (the task was killed); no step failed")
        assert "step 'sleep-for' failed" not in log


def test_worker_killed_while_waiting_reattaches_to_the_same_run(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, sleep_dag: str
) -> None:
    run_id = ops_stack.trigger_dag(sleep_dag, conf={"seconds": 40})
    assert ops_stack.wait_task_state(sleep_dag, run_id, "sync", ("running",), RUN_TIMEOUT) == "running"
    (kfp_run,) = wait_kfp_runs(kfp_stand_in, 1, {"RUNNING"}, dag_id=sleep_dag, run_id=run_id, task_id="sync")
    ti = ops_stack.task_instance(sleep_dag, run_id, "sync")
    task_process = psutil.Process(ti["pid"])
    assert f"airflow worker -- {ti['id']}" in " ".join(task_process.cmdline())
    task_process.send_signal(signal.SIGKILL)

    assert ops_stack.wait_dag_run(sleep_dag, run_id, RUN_TIMEOUT) == "success", explain(ops_stack, sleep_dag, run_id)
    ti = ops_stack.task_instance(sleep_dag, run_id, "sync")
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    runs = kfp_runs(kfp_stand_in, dag_id=sleep_dag, run_id=run_id, task_id="sync")
    assert [(r.run_id, r.state) for r in runs] == [(kfp_run.run_id, "SUCCEEDED")]
    assert ops_stack.xcom(sleep_dag, run_id, "sync")["run_id"] == kfp_run.run_id
    assert f"Reattaching to KFP run {kfp_run.run_id} (RUNNING); no new run" in ops_stack.task_log(
        sleep_dag, run_id, "sync", 2
    )


def test_transient_503s_are_ridden_out_and_a_permanent_403_fails_fast(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, basic_dag: str, tmp_path: Path
) -> None:
    kfp_stand_in.set_faults(error_rate=0.3, error_status=503, seed=3)
    try:
        run_id = ops_stack.trigger_dag(basic_dag, conf={"work": str(tmp_path)})
        state = ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT)
    finally:
        kfp_stand_in.clear_faults()
    assert state == "success", explain(ops_stack, basic_dag, run_id)
    assert len(kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id)) == 2  # no duplicate from a retried create
    logs = "\n".join(ops_stack.task_log(basic_dag, run_id, task_id, 1) for task_id in ("sync", "deferred"))
    assert "transient failure (ApiException HTTP 503)" in logs or "HTTPStatusError HTTP 503" in logs

    # A permanent 403 (every API request refused, as KFP does for an identity without access to the
    # profile namespace), injected through the stand-in's fault settings.
    kfp_stand_in.set_faults(error_rate=1.0, error_status=403)
    try:
        run_id = ops_stack.trigger_dag(basic_dag, conf={"work": str(tmp_path)})
        state = ops_stack.wait_dag_run(basic_dag, run_id, RUN_TIMEOUT)
    finally:
        kfp_stand_in.clear_faults()
    assert state == "failed"
    assert kfp_runs(kfp_stand_in, dag_id=basic_dag, run_id=run_id) == []
    for task_id in ("sync", "deferred"):
        ti = ops_stack.task_instance(basic_dag, run_id, task_id)
        assert (ti["state"], ti["try_number"]) == ("failed", 1)
        assert ti["duration"] < FAST_FAILURE_SECONDS
        log = ops_stack.task_log(basic_dag, run_id, task_id, 1)
        assert "failed with HTTP 403" in log
        assert "The identity behind connection 'kfp_ops' may not do this" in log
        assert "transient failure" not in log


def test_token_rotated_during_the_wait_is_picked_up(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn, sleep_dag: str
) -> None:
    old = kfp_stand_in.token
    run_id = ops_stack.trigger_dag(sleep_dag, conf={"seconds": 15})
    assert ops_stack.wait_task_state(sleep_dag, run_id, "sync", ("running",), RUN_TIMEOUT) == "running"
    assert ops_stack.wait_task_state(sleep_dag, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
    runs = wait_kfp_runs(kfp_stand_in, 2, {"RUNNING"}, dag_id=sleep_dag, run_id=run_id)
    trigger_kwargs = _trigger_kwargs(ops_stack)
    assert any(r.run_id in kwargs for r in runs for kwargs in trigger_kwargs)
    assert [kwargs for kwargs in trigger_kwargs if old in kwargs] == []

    new = f"rotated-{secrets.token_hex(8)}"
    SEEN_TOKENS.add(new)
    kfp_stand_in.rotate_token(new)
    try:
        with httpx.Client(base_url=kfp_stand_in.host, timeout=10) as http:
            refused = http.get("/apis/v2beta1/runs", headers={"authorization": f"Bearer {old}"})
        assert refused.status_code == 401
        # Both runs were still going when the token changed: the tasks had to poll with the new one.
        assert {kfp_stand_in.client().get_run(r.run_id).state for r in runs} == {"RUNNING"}
        assert ops_stack.wait_dag_run(sleep_dag, run_id, RUN_TIMEOUT) == "success", explain(ops_stack, sleep_dag, run_id)
    finally:
        kfp_stand_in.rotate_token(old)
    for task_id in ("sync", "deferred"):
        ti = ops_stack.task_instance(sleep_dag, run_id, task_id)
        assert (ti["state"], ti["try_number"]) == ("success", 1)


def test_no_token_in_logs_xcom_rendered_fields_or_the_database(
    ops_stack: AirflowStack, kfp_stand_in: KfpStandIn
) -> None:
    """Runs last in this module: everything above has left its logs, XComs and rendered fields."""
    tokens = {t.encode() for t in SEEN_TOKENS | {kfp_stand_in.token}}
    files = [p for p in ops_stack.home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" and "dag_id=kfp_ops_" in str(p) for p in files)
    leaks = [(str(p), t.decode()) for p in files for t in tokens if t in p.read_bytes()]
    dump = ops_stack.database_dump()
    assert b"kfp_ops_" in dump
    leaks += [("metadata database", t.decode()) for t in tokens if t in dump]
    assert leaks == []
    # XCom and rendered fields are also checked as the API serves them (the DB could compress them).
    rows = ops_stack.sql("SELECT dag_id, run_id, task_id, map_index FROM task_instance WHERE dag_id LIKE 'kfp_ops_%'")
    assert rows
    for dag_id, run_id, task_id, map_index in rows:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        path = path if map_index == -1 else f"{path}/{map_index}"
        ti = ops_stack.get(path).json()
        xcoms = ops_stack.get(f"{path.split('/taskInstances/')[0]}/taskInstances/{task_id}/xcomEntries",
                              params={"map_index": map_index}).text
        served = json.dumps(ti["rendered_fields"]) + xcoms
        assert not [t for t in tokens if t.decode() in served], (dag_id, task_id, map_index)
