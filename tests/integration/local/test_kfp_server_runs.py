"""Runs on the KFP stand-in through the real kfp.Client: submit, execute for real, read task details."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import kfp_server_api
import pytest
import yaml
from kfp import compiler

from tests.fixtures import kfp_pipelines as pipelines
from tests.integration.local.kfp_helpers import history, tasks_by_name, unique, wait_for_state

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(kfp_stand_in):
    return kfp_stand_in.client()


def test_run_from_func_executes_and_records_each_task(client):
    experiment = unique("exp-func")
    result = client.create_run_from_pipeline_func(
        pipelines.add_and_double, arguments={"a": 3, "b": 4}, run_name=unique("func"), experiment_name=experiment
    )
    assert result.run_info.state == "PENDING"
    run = wait_for_state(client, result.run_id)
    assert run.state == "SUCCEEDED", run.error
    assert run.experiment_id == client.get_experiment(experiment_name=experiment).experiment_id
    tasks = tasks_by_name(run)
    # task_details are Argo nodes as on KFP 2.17 (fidelity K3; test_kfp_fidelity_execution.py): the
    # old one-entry-per-pipeline-task shape was stand-in-only.
    assert {"add", "double", "add-driver", "double-driver", "executor", "root", "root-driver"} <= set(tasks)
    for task in (tasks["add"][0], tasks["double"][0]):
        assert task.state == "SUCCEEDED"
        assert history(task)[-1] == "SUCCEEDED"
        assert task.start_time <= task.end_time
    assert history(run) == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert run.finished_at >= run.created_at
    assert run.runtime_config.parameters == {"a": 3, "b": 4}
    assert run.service_account == "pipeline-runner"


def test_run_from_package_passes_artifacts_between_tasks(client, kfp_stand_in, tmp_path):
    package = tmp_path / "artifacts.yaml"
    compiler.Compiler().compile(pipelines.artifact_passing, str(package))
    result = client.create_run_from_pipeline_package(str(package), arguments={"rows": 7}, run_name=unique("pkg"),
                                                     enable_caching=False)
    run = wait_for_state(client, result.run_id)
    assert run.state == "SUCCEEDED", run.error
    steps = {"write-dataset", "count-rows"}  # the steps' DAG nodes (Argo-node task details, fidelity K3)
    assert {t.display_name: t.state for t in run.run_details.task_details if t.display_name in steps} == {
        "write-dataset": "SUCCEEDED",
        "count-rows": "SUCCEEDED",
    }
    # count-rows read the dataset write-dataset produced: its parameter output says 7 rows.
    outputs = list((kfp_stand_in.state_dir / "runs" / result.run_id / "outputs").rglob("count-rows/executor_output.json"))
    assert len(outputs) == 1
    assert json.loads(outputs[0].read_text())["parameterValues"]["Output"] == 7


def test_upload_versions_and_run_a_stored_version(client, tmp_path):
    first = tmp_path / "v1.yaml"
    compiler.Compiler().compile(pipelines.add_and_double, str(first))
    name = unique("pipe")
    pipeline = client.upload_pipeline(str(first), pipeline_name=name, description="first upload")
    assert pipeline.display_name == name and pipeline.description == "first upload"
    version = client.upload_pipeline_version(str(first), pipeline_version_name="v2", pipeline_id=pipeline.pipeline_id)
    assert version.pipeline_id == pipeline.pipeline_id and version.display_name == "v2"
    assert version.pipeline_spec["pipelineInfo"]["name"] == "add-and-double"
    listed = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc")
    assert listed.total_size == 2
    assert {v.display_name for v in listed.pipeline_versions} == {name, "v2"}
    assert client.get_pipeline_id(name) == pipeline.pipeline_id

    experiment = client.create_experiment(unique("exp-version"))
    run = client.run_pipeline(
        experiment_id=experiment.experiment_id, job_name=unique("from-version"), pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id, params={"a": 5, "b": 5},
    )
    assert run.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert run.pipeline_spec is None
    done = wait_for_state(client, run.run_id)
    assert done.state == "SUCCEEDED", done.error
    assert done.experiment_id == experiment.experiment_id


def test_control_flow_and_nested_pipelines_succeed_with_plausible_tasks(client):
    flow = client.create_run_from_pipeline_func(pipelines.control_flow, arguments={"n": 3}, run_name=unique("flow"))
    nested = client.create_run_from_pipeline_func(pipelines.outer, arguments={"a": 2}, run_name=unique("nested"))

    run = wait_for_state(client, flow.run_id)
    assert run.state == "SUCCEEDED", run.error
    tasks = tasks_by_name(run)
    assert [t.state for t in tasks["square"]] == ["SUCCEEDED"] * 3
    assert tasks["total"][0].state == "SUCCEEDED"
    assert tasks["report"][0].state == "SUCCEEDED"  # the exit handler's task
    assert tasks["exit-handler-1"][0].state == "SUCCEEDED"
    # 1 + 4 + 9 = 14 > 10: only the If branch ran.
    says = tasks["say"]
    assert len(says) == 1 and says[0].state == "SUCCEEDED"
    # The two other branches' DAG nodes are skipped by their driver's condition (Argo nodes, fidelity K3;
    # KFP sets no parent_task_id, so the old parent links are gone).
    branch_states = sorted(t.state for name in ("condition-4", "condition-5", "condition-6") for t in tasks[name])
    assert branch_states == ["SKIPPED", "SKIPPED", "SUCCEEDED"]
    assert len(tasks["iteration-iterations(0:0)"] + tasks["iteration-iterations(2:2)"]) == 2

    run = wait_for_state(client, nested.run_id)
    assert run.state == "SUCCEEDED", run.error
    tasks = tasks_by_name(run)
    inner = tasks["inner"][0]
    assert inner.state == "SUCCEEDED" and len(tasks["inner-driver"]) == 1
    assert len(tasks["add"]) == 2 and len(tasks["double"]) == 1  # one add inside the nested pipeline, one outside


def test_failed_step_then_retry_runs_only_what_failed(client, tmp_path):
    counter, flag = tmp_path / "counter.txt", tmp_path / "flag"
    result = client.create_run_from_pipeline_func(
        pipelines.flaky, arguments={"counter": str(counter), "flag": str(flag)}, run_name=unique("flaky")
    )
    run = wait_for_state(client, result.run_id)
    assert run.state == "FAILED"
    tasks = tasks_by_name(run)
    failed = tasks["needs-flag"][0]
    assert failed.state == "FAILED"
    # KFP 2.17 has no error text on runs or tasks (fidelity K4): the message is in the pod log
    # (test_kfp_fidelity_execution.py::test_k4...); the old task/run errors were stand-in-only.
    assert failed.error is None and run.error is None
    assert tasks["count-call"][0].state == "SUCCEEDED"

    with pytest.raises(kfp_server_api.ApiException) as info:
        client.terminate_run(result.run_id)
    assert info.value.status == 400 and "Row not found" in info.value.body

    flag.write_text("go")
    assert client.runs.run_service_retry_run(run_id=result.run_id) == {}
    run = wait_for_state(client, result.run_id)
    assert run.state == "SUCCEEDED", run.error
    assert history(run) == ["PENDING", "RUNNING", "FAILED", "RUNNING", "SUCCEEDED"]
    assert run.error is None
    tasks = tasks_by_name(run)
    assert tasks["needs-flag"][0].state == "SUCCEEDED"
    assert history(tasks["count-call"][0])[-1] == "SUCCEEDED"  # its node was kept, not rerun
    assert counter.read_text().splitlines() == ["ran"]  # the first step executed exactly once in total

    # Retrying a run that is not Failed/Error is NewBadRequestError → Aborted → 409 on KFP 2.17
    # (fidelity K5, common/util/workflow.go GenerateRetryExecution); the old 400 was stand-in-only.
    with pytest.raises(kfp_server_api.ApiException) as info:
        client.runs.run_service_retry_run(run_id=result.run_id)
    assert info.value.status == 409 and "Workflow must be Failed/Error to retry" in info.value.body


def _live_processes(run_id: str, pids: list[int]) -> list[str]:
    import psutil

    alive = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["pid"] in pids or run_id in " ".join(proc.info["cmdline"] or []):
                alive.append(f"{proc.info['pid']} {proc.info['cmdline']}")
        except psutil.Error:
            continue
    return alive


def test_terminate_kills_the_whole_run_and_ends_failed(client, tmp_path):
    """KFP 2.17 ends a terminated run FAILED, not CANCELED (fidelity K2, resource_manager.go TerminateRun);
    the old CANCELED expectations were stand-in-only."""
    pid_file = tmp_path / "pid"
    result = client.create_run_from_pipeline_func(
        pipelines.sleeper, arguments={"seconds": 120.0, "pid_file": str(pid_file)}, run_name=unique("sleepy")
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the long step never started"
        time.sleep(0.1)
    component_pid, component_pgid = (int(x) for x in pid_file.read_text().split())
    assert _live_processes(result.run_id, [component_pid])

    started = time.monotonic()
    assert client.terminate_run(result.run_id) == {}
    assert client.get_run(result.run_id).state in ("CANCELING", "FAILED")
    run = wait_for_state(client, result.run_id, {"FAILED"}, timeout=5)
    assert time.monotonic() - started < 5
    assert history(run)[-2:] == ["RUNNING", "FAILED"]  # CANCELING is stored without a history entry
    assert tasks_by_name(run)["sleep-and-record"][0].state == "FAILED"
    assert _live_processes(result.run_id, [component_pid, component_pgid]) == []

    with pytest.raises(kfp_server_api.ApiException) as info:
        client.terminate_run(result.run_id)
    assert info.value.status == 400


def test_list_runs_filter_sort_and_paging(client):
    experiment = client.create_experiment(unique("exp-list"))
    tag = unique("listed")
    spec = yaml.safe_load(compiler_yaml(pipelines.add_and_double))
    created = []
    for i in range(5):
        run = client.runs.run_service_create_run(
            {"experiment_id": experiment.experiment_id, "display_name": f"{tag}-{i}", "pipeline_spec": spec,
             "runtime_config": {"parameters": {"a": i, "b": 1}}}
        )
        created.append(run.run_id)
    exact = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": f"{tag}-3"}]})
    response = client.list_runs(filter=exact)
    assert [r.run_id for r in response.runs] == [created[3]] and response.total_size == 1

    seen, token, pages = [], "", 0
    while True:
        page = client.list_runs(experiment_id=experiment.experiment_id, page_size=2, page_token=token,
                                sort_by="display_name desc")
        assert page.total_size == 5
        seen += [r.display_name for r in page.runs]
        token, pages = page.next_page_token, pages + 1
        if not token:
            break
    assert seen == [f"{tag}-{i}" for i in reversed(range(5))] and pages == 3
    # Nothing here needs the runs to execute; cancelling them saves the CPU for other tests.
    for run_id in created:
        client.terminate_run(run_id)
    for run_id in created:
        assert wait_for_state(client, run_id).state == "FAILED"  # terminated runs end FAILED (fidelity K2)


def compiler_yaml(func) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        compiler.Compiler().compile(func, str(path))
        return path.read_text()


def test_archive_unarchive_delete(client):
    result = client.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("archive"))
    wait_for_state(client, result.run_id)
    assert client.archive_run(result.run_id) == {}
    assert client.get_run(result.run_id).storage_state == "ARCHIVED"
    archived = json.dumps({"predicates": [{"operation": 1, "key": "storage_state", "stringValue": "ARCHIVED"},
                                          {"operation": 1, "key": "run_id", "stringValue": result.run_id}]})
    assert client.list_runs(filter=archived).total_size == 1
    client.unarchive_run(result.run_id)
    assert client.get_run(result.run_id).storage_state == "AVAILABLE"
    assert client.delete_run(result.run_id) == {}
    with pytest.raises(kfp_server_api.ApiException) as info:
        client.get_run(result.run_id)
    assert info.value.status == 404 and f"Run {result.run_id} not found" in info.value.body


def test_wrapped_pipeline_spec_with_platform_spec_is_accepted(kfp_stand_in):
    spec = yaml.safe_load(compiler_yaml(pipelines.add_and_double))
    body = {"display_name": unique("wrapped"), "pipeline_spec": {"pipeline_spec": spec, "platform_spec": {"platforms": {}}},
            "runtime_config": {"parameters": {"a": 1, "b": 1}}}
    with kfp_stand_in.http() as http:
        created = http.post("/apis/v2beta1/runs", json=body)
        assert created.status_code == 200, created.text
        assert "pipeline_spec" in created.json()["pipeline_spec"]
    run = wait_for_state(kfp_stand_in.client(), created.json()["run_id"])
    assert run.state == "SUCCEEDED", run.error


def test_many_concurrent_reads_while_runs_execute(client, kfp_stand_in):
    runs = [client.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("busy")).run_id
            for _ in range(2)]

    with kfp_stand_in.http() as http:

        def read(i: int) -> float:
            started = time.monotonic()
            if i % 2:
                response = http.get(f"/apis/v2beta1/runs/{runs[i % 2]}")
            else:
                response = http.get("/apis/v2beta1/runs", params={"page_size": 20, "sort_by": "created_at desc"})
            assert response.status_code == 200, response.text
            return time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            latencies = sorted(pool.map(read, range(200)))
    # Generous bounds: CI cores are shared, but a blocked event loop would stall every request for seconds.
    assert latencies[len(latencies) // 2] < 1.0, latencies[-5:]
    assert latencies[-1] < 10.0, latencies[-5:]
    for run_id in runs:
        assert wait_for_state(client, run_id).state == "SUCCEEDED"
