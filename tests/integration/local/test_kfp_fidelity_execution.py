# ruff: noqa: I002
"""The execution half of the KFP stand-in's fidelity (reference/fidelity.md K2, K3, K4, K6), through
the real kfp.Client against the session stand-in.

No ``from __future__ import annotations``: the component below is read by kfp at decoration time.
"""

import json
import time
from pathlib import Path

import pytest
from kfp import dsl

from kfp_bridge.local.kfp import argo_nodes
from tests.fixtures import kfp_pipelines as pipelines
from tests.integration.local.kfp_helpers import history, tasks_by_name, unique, wait_for_state

pytestmark = pytest.mark.integration


@dsl.component(install_kfp_package=False, base_image=pipelines.BASE)
def wait_for_flag(x: int, flag: str, pid_file: str) -> int:
    import os
    import time

    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    while not os.path.exists(flag):
        time.sleep(0.1)
    return x


@dsl.pipeline(name="count-then-wait")
def count_then_wait(counter: str, flag: str, pid_file: str) -> int:
    first = pipelines.count_call(counter=counter)
    return wait_for_flag(x=first.output, flag=flag, pid_file=pid_file).output


@pytest.fixture(scope="module")
def client(kfp_stand_in):
    return kfp_stand_in.client()


def _wait_for_file(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def _wait_for_pod(pods_dir: Path, run_id: str, node_suffix: str, phase: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        for path in pods_dir.glob("*.json"):
            pod = json.loads(path.read_text())
            meta = pod["metadata"]
            if (meta["labels"]["pipeline/runid"] == run_id and pod["status"]["phase"] == phase
                    and meta["annotations"]["workflows.argoproj.io/node-name"].endswith(node_suffix)):
                return pod
        assert time.monotonic() < deadline, f"no {phase} pod for *{node_suffix} of run {run_id}"
        time.sleep(0.2)


def _workflow(run) -> str:
    """The workflow node is the one whose display name is ``<pipeline name>-<5 chars>``."""
    names = [t.display_name for t in run.run_details.task_details if t.display_name.count("-") and
             not t.display_name.endswith(("-driver", "executor")) and len(t.display_name.rsplit("-", 1)[-1]) == 5]
    assert len(names) == 1, names
    return names[0]


def test_k2_terminate_goes_canceling_then_failed_and_retry_reruns_only_the_interrupted_step(client, kfp_stand_in,
                                                                                           tmp_path):
    """KFP 2.17 ``backend/src/apiserver/resource/resource_manager.go`` TerminateRun stores CANCELING and
    sets ``activeDeadlineSeconds=0``; ``common/util/workflow.go`` IsTerminating keeps reporting
    CANCELING until Argo fails the workflow, and ReportWorkflowResource then stores FAILED. Retry
    (``GenerateRetryExecution``) keeps succeeded nodes and reruns the rest."""
    counter, flag, pid_file = tmp_path / "counter", tmp_path / "flag", tmp_path / "pid"
    result = client.create_run_from_pipeline_func(
        count_then_wait, arguments={"counter": str(counter), "flag": str(flag), "pid_file": str(pid_file)},
        run_name=unique("terminate"))
    _wait_for_file(pid_file)
    # While it runs, its executor pod is Running and its main log is readable (K4: live log).
    pods_dir = kfp_stand_in.state_dir / "pods" / "kubeflow"
    pod = _wait_for_pod(pods_dir, result.run_id, ".wait-for-flag.executor", "Running")
    assert "wait_for_flag" in (pods_dir / f"{pod['metadata']['name']}.main.log").read_text()
    assert client.terminate_run(result.run_id) == {}
    assert client.get_run(result.run_id).state in ("CANCELING", "FAILED")
    run = wait_for_state(client, result.run_id, timeout=15)
    assert run.state == "FAILED" and run.error is None
    assert "CANCELED" not in history(run) and history(run)[-1] == "FAILED"
    tasks = tasks_by_name(run)
    assert [t.state for t in tasks["wait-for-flag"]] == ["FAILED"]  # the interrupted step's DAG node
    assert [t.state for t in tasks["count-call"]] == ["SUCCEEDED"]
    assert sorted(t.state for t in tasks["executor"]) == ["FAILED", "SUCCEEDED"]
    assert all(t.error is None for t in run.run_details.task_details)
    assert _wait_for_pod(pods_dir, result.run_id, ".wait-for-flag.executor", "Failed")

    flag.write_text("go")
    assert client.runs.run_service_retry_run(run_id=result.run_id) == {}
    run = wait_for_state(client, result.run_id, timeout=60)
    assert run.state == "SUCCEEDED"
    assert counter.read_text().splitlines() == ["ran"]  # the succeeded step was not executed again
    assert [t.state for t in tasks_by_name(run)["wait-for-flag"]] == ["SUCCEEDED"]


def test_k3_task_details_are_argo_nodes_named_as_the_v2_compiler_names_them(client):
    """KFP 2.17 ``backend/src/v2/compiler/argocompiler/dag.go`` / ``container.go`` name the nodes;
    ``backend/src/apiserver/server/api_converter.go`` toModelTasks/toApiPipelineTaskDetail turn each
    into a task (create_time = the workflow's, state = phase ToV2, no error, no pod_name)."""
    flow = client.create_run_from_pipeline_func(pipelines.control_flow, arguments={"n": 3}, run_name=unique("k3"),
                                                enable_caching=False)
    nested = client.create_run_from_pipeline_func(pipelines.outer, run_name=unique("k3-nested"), enable_caching=False)
    run = wait_for_state(client, flow.run_id, timeout=120)
    assert run.state == "SUCCEEDED" and run.error is None
    details = run.run_details.task_details
    names = sorted(t.display_name for t in details)
    workflow = _workflow(run)
    assert workflow.startswith("control-flow-")
    for name in ("root", "root-driver", "exit-handler-1-driver", "exit-handler-1", "exit-handler-1.onExit",
                 "for-loop-2", "iteration-driver", "iteration-iterations", "iteration-iterations(0:0)",
                 "iteration-iterations(2:2)", "iteration-item-driver", "iteration-item", "condition-branches-3",
                 "make-list-driver", "make-list", "total", "report-driver", "report"):
        assert name in names, name
    assert names.count("square") == 3 and names.count("executor") == 7  # 3 squares + 4 other steps
    tasks = tasks_by_name(run)
    assert sorted(t.state for n in ("condition-4", "condition-5", "condition-6") for t in tasks[n]) == [
        "SKIPPED", "SKIPPED", "SUCCEEDED"]
    assert len({t.task_id for t in details}) == len(details)
    for task in details:
        assert task.error is None and task.parent_task_id is None
        assert task.state in ("SUCCEEDED", "SKIPPED")
        assert task.create_time == run.created_at  # toModelTasks: the workflow's creation time
        assert task.start_time <= task.end_time

    run = wait_for_state(client, nested.run_id, timeout=120)
    assert run.state == "SUCCEEDED"
    names = [t.display_name for t in run.run_details.task_details]
    # The nested pipeline is a sub-DAG task: inner-driver + inner, holding its own add/double nodes.
    assert names.count("inner-driver") == 1 and names.count("inner") == 1
    assert names.count("add") == 2 and names.count("double") == 1 and names.count("executor") == 3


def test_k3_child_tasks_are_child_node_ids_as_pod_names(client):
    """``toApiPipelineTaskDetail`` emits children as ``{pod_name: <node id>}`` (api_converter.go)."""
    result = client.create_run_from_pipeline_func(pipelines.add_and_double, run_name=unique("k3-children"),
                                                  enable_caching=False)
    run = wait_for_state(client, result.run_id)
    workflow = _workflow(run)
    root = next(t for t in run.run_details.task_details if t.display_name == workflow)
    expected = argo_nodes.node_id(workflow, f"{workflow}.root-driver")
    assert [c.pod_name for c in root.child_tasks] == [expected]
    assert all(c.task_id is None for c in root.child_tasks)


def test_k4_executor_pods_keep_their_main_log_with_argo_and_kfp_labels(client, kfp_stand_in, tmp_path):
    """Pods as Argo v4 names them (``workflow/util/pod_name.go``, ``workflowpod.go`` node-id/node-name
    annotations) with KFP's ``pipeline/runid`` label (``apiserver/template/v2_template.go``); the
    step's error is only in its ``main`` log (api_converter.go: no error on the run or its tasks)."""
    counter, flag = tmp_path / "counter", tmp_path / "flag"
    result = client.create_run_from_pipeline_func(
        pipelines.flaky, arguments={"counter": str(counter), "flag": str(flag)}, run_name=unique("k4"))
    run = wait_for_state(client, result.run_id)
    assert run.state == "FAILED" and run.error is None
    workflow = _workflow(run)
    pods_dir = kfp_stand_in.state_dir / "pods" / "kubeflow"
    pods = [json.loads(p.read_text()) for p in pods_dir.glob(f"{workflow}-*.json")]
    assert pods and all(p["metadata"]["labels"]["pipeline/runid"] == result.run_id for p in pods)
    failed = [p for p in pods if p["metadata"]["annotations"]["workflows.argoproj.io/node-name"].endswith(
        ".needs-flag.executor")]
    assert len(failed) == 1
    pod = failed[0]
    node_name = f"{workflow}.root.needs-flag.executor"
    assert pod["metadata"]["name"] == f"{workflow}-system-container-impl-{argo_nodes.fnv32a(node_name)}"
    assert pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == argo_nodes.node_id(workflow, node_name)
    assert pod["metadata"]["labels"]["workflows.argoproj.io/workflow"] == workflow
    assert pod["status"]["phase"] == "Failed"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["wait", "main"]
    log = (pods_dir / f"{pod['metadata']['name']}.main.log").read_text()
    assert f"RuntimeError: flag file {flag} is missing" in log


def test_k6_cached_steps_are_skipped_on_the_next_run_and_run_again_without_caching(client, tmp_path):
    """KFP 2.17 ``backend/src/v2/driver/cache.go`` reuses an execution with the same fingerprint
    (``backend/src/v2/cacheutils/cache.go``: component spec + inputs) within the pipeline name, and
    ``argocompiler/container.go`` skips the ``executor`` node (``when cached-decision != true``)."""
    counter, flag = tmp_path / "counter", tmp_path / "flag"
    flag.write_text("go")
    arguments = {"counter": str(counter), "flag": str(flag)}
    first = client.create_run_from_pipeline_func(pipelines.flaky, arguments=arguments, run_name=unique("k6-a"))
    assert wait_for_state(client, first.run_id).state == "SUCCEEDED"
    second = client.create_run_from_pipeline_func(pipelines.flaky, arguments=arguments, run_name=unique("k6-b"))
    run = wait_for_state(client, second.run_id)
    assert run.state == "SUCCEEDED"
    assert counter.read_text().splitlines() == ["ran"]  # not executed again
    tasks = tasks_by_name(run)
    assert [t.state for t in tasks["executor"]] == ["SKIPPED", "SKIPPED"]
    assert [t.state for t in tasks["count-call"] + tasks["needs-flag"]] == ["SUCCEEDED", "SUCCEEDED"]

    third = client.create_run_from_pipeline_func(pipelines.flaky, arguments=arguments, run_name=unique("k6-c"),
                                                 enable_caching=False)
    run = wait_for_state(client, third.run_id)
    assert run.state == "SUCCEEDED"
    assert counter.read_text().splitlines() == ["ran", "ran"]
    assert [t.state for t in tasks_by_name(run)["executor"]] == ["SUCCEEDED", "SUCCEEDED"]
