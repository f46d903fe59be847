"""Argo nodes of a run, built from a compiled spec and the steps kfp.local reported (pure logic).

Follows kubeflow/pipelines 2.17.0 ``backend/src/v2/compiler/argocompiler/{dag.go,container.go}``
(node names), ``backend/src/apiserver/server/api_converter.go`` (toModelTasks: one task per node,
phase ToV2) and ``backend/src/apiserver/storage/task_store.go`` (upsert, rows never deleted), and
argo-workflows v4.0.5 ``pkg/apis/workflow/v1alpha1/workflow_types.go`` (NodeID),
``workflow/util/pod_name.go`` (pod names) and ``workflow/controller/dag.go`` (children).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import compiler

from kfp_bridge.local.kfp import argo_nodes, progress
from tests.fixtures import kfp_pipelines as pipelines

WF = "wf-abcde"


def _spec(func, tmp_path: Path) -> dict:
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(func, str(path))
    return next(yaml.safe_load_all(path.read_text()))


def _ok(start: float = 1.0, end: float = 2.0, **extra) -> dict:
    return {"state": "SUCCEEDED", "start": start, "end": end, "attempt": 1, **extra}


def _by_name(nodes: list[dict]) -> dict[str, dict]:
    return {n["name"]: n for n in nodes}


def test_fnv_node_ids_and_pod_names_match_argo():
    # FNV-1a 32 of "a" is 0xe40c292c; Argo's NodeID and v2 pod names both use it.
    assert argo_nodes.fnv32a("a") == 0xE40C292C
    assert argo_nodes.node_id(WF, WF) == WF
    assert argo_nodes.node_id(WF, f"{WF}.root") == f"{WF}-{argo_nodes.fnv32a(WF + '.root')}"
    assert argo_nodes.pod_name(WF, "x.y", "system-container-impl") == f"{WF}-system-container-impl-{argo_nodes.fnv32a('x.y')}"
    name = argo_nodes.workflow_name({"pipelineInfo": {"name": "add-and-double"}}, "run-1")
    assert name.startswith("add-and-double-") and len(name) == len("add-and-double-") + 5
    assert name == argo_nodes.workflow_name({"pipelineInfo": {"name": "add-and-double"}}, "run-1")


def test_sequential_tasks_give_driver_dag_and_executor_nodes_chained_like_argo(tmp_path):
    spec = _spec(pipelines.add_and_double, tmp_path)
    steps = {"add": _ok(1, 2), "double": _ok(3, 4)}
    nodes = _by_name(argo_nodes.build(spec, WF, steps, {"phase": "Succeeded", "started": 1, "finished": 5}))
    assert sorted(n["display_name"] for n in nodes.values()) == sorted(
        [WF, "root-driver", "root", "add-driver", "add", "executor", "double-driver", "double", "executor"])
    executor = nodes[f"{WF}.root.add.executor"]
    assert executor["type"] == "Pod" and executor["template"] == "system-container-impl"
    assert executor["pod_name"] == argo_nodes.pod_name(WF, f"{WF}.root.add.executor", "system-container-impl")
    assert nodes[f"{WF}.root.add"]["template"] == "system-container-executor"
    ids = {name: n["id"] for name, n in nodes.items()}
    # Argo children: DAG node -> its root tasks; a task -> the dependents of its outbound (pod) nodes.
    assert nodes[WF]["children"] == [ids[f"{WF}.root-driver"]]
    assert nodes[f"{WF}.root-driver"]["children"] == [ids[f"{WF}.root"]]
    assert nodes[f"{WF}.root"]["children"] == [ids[f"{WF}.root.add-driver"]]
    assert nodes[f"{WF}.root.add-driver"]["children"] == [ids[f"{WF}.root.add"]]
    assert nodes[f"{WF}.root.add"]["children"] == [ids[f"{WF}.root.add.executor"]]
    assert nodes[f"{WF}.root.add.executor"]["children"] == [ids[f"{WF}.root.double-driver"]]


def test_loops_conditions_and_exit_hooks_are_named_as_the_compiler_emits_them(tmp_path):
    spec = _spec(pipelines.control_flow, tmp_path)
    steps = {"exit-handler-1": _ok(), "exit-handler-1/make-list": _ok(), "exit-handler-1/for-loop-2": _ok(),
             "exit-handler-1/total": _ok(), "exit-handler-1/condition-branches-3": _ok(),
             "exit-handler-1/condition-branches-3/condition-4": _ok(),
             "exit-handler-1/condition-branches-3/condition-4/say": _ok(), "report": _ok()}
    for i in range(2):
        steps[f"exit-handler-1/for-loop-2/for-loop-2-iteration-{i}"] = _ok()
        steps[f"exit-handler-1/for-loop-2/for-loop-2-iteration-{i}/square"] = _ok(cached=True)
    nodes = _by_name(argo_nodes.build(spec, WF, steps, {"phase": "Succeeded", "started": 1, "finished": 5}))
    loop = f"{WF}.root.exit-handler-1.for-loop-2"
    assert nodes[loop]["template"] == "comp-for-loop-2-for-loop-2-iterator"
    assert nodes[f"{loop}.iteration-iterations"]["type"] == "TaskGroup"
    iteration = f"{loop}.iteration-iterations(1:1)"
    assert nodes[iteration]["display_name"] == "iteration-iterations(1:1)"
    assert f"{iteration}.iteration-item-driver" in nodes
    square = nodes[f"{iteration}.iteration-item.square.executor"]
    assert (square["type"], square["phase"]) == ("Skipped", "Skipped")  # a cache hit skips the executor
    assert nodes[f"{iteration}.iteration-item.square"]["phase"] == "Succeeded"
    # Only condition-4 held; its siblings' drivers ran and their DAGs were skipped (when ... != false).
    branches = f"{WF}.root.exit-handler-1.condition-branches-3"
    assert nodes[f"{branches}.condition-5"]["phase"] == "Skipped"
    assert nodes[f"{branches}.condition-5-driver"]["phase"] == "Succeeded"
    # The exit task runs as the exit-handler DAG task's onExit hook.
    hook = nodes[f"{WF}.root.exit-handler-1.onExit"]
    assert hook["display_name"] == "exit-handler-1.onExit" and hook["template"] == "exit-hook-root-report"
    assert hook["id"] in nodes[f"{WF}.root.exit-handler-1"]["children"]
    assert f"{WF}.root.exit-handler-1.onExit.report.executor" in nodes


def test_unreached_tasks_are_omitted_and_running_ones_fail_when_the_run_stops(tmp_path):
    spec = _spec(pipelines.add_and_double, tmp_path)
    doc = {"run_id": "r1", "created_at": 1.0, "finished_at": 0.0, "_attempt": 1}
    progress.transition(doc, "PENDING", 1.0)
    progress.add_root_tasks(doc, [], 1.0)
    assert progress.refresh(doc, spec, 1.0) == [] and "task_details" not in doc  # PENDING: no workflow yet
    progress.transition(doc, "RUNNING", 2.0)
    progress.apply_event(doc, {"type": "task_started", "path": "add", "time": 2.0})
    progress.refresh(doc, spec, 2.0)
    states = {t["display_name"]: t["state"] for t in doc["task_details"]}
    assert states["add"] == "RUNNING" and "double-driver" not in states
    # Terminate: Argo fails what runs (deadline) and omits what it never reached.
    progress.finish(doc, "FAILED", 3.0, "terminated")
    progress.refresh(doc, spec, 3.0)
    rows = {t["display_name"]: t for t in doc["task_details"]}
    assert rows["add"]["state"] == "FAILED" and rows["double-driver"]["state"] == "RUNTIME_STATE_UNSPECIFIED"
    assert [h["state"] for h in rows["add"]["state_history"]] == ["RUNNING", "FAILED"]
    assert doc["state"] == "FAILED" and "error" not in doc
    assert all("error" not in t and "pod_name" not in t and "parent_task_id" not in t for t in doc["task_details"])
    assert all(t["create_time"] == 1.0 for t in doc["task_details"])  # the workflow's creation time
    ids = {t["display_name"]: t["task_id"] for t in doc["task_details"] if t["display_name"] != "executor"}
    # Retry: the failed step runs again under the same node (same task row); rows are never deleted.
    progress.reset_for_retry(doc, 4.0)
    progress.refresh(doc, spec, 4.0)
    rows = {t["display_name"]: t for t in doc["task_details"]}
    # GenerateRetryExecution: the failed DAG node is Running again, the failed pod's row stays as it was.
    assert rows["add"]["state"] == "RUNNING" and rows["executor"]["state"] == "FAILED"
    progress.apply_event(doc, {"type": "task_started", "path": "add", "time": 4.0})
    progress.refresh(doc, spec, 4.0)
    rows = {t["display_name"]: t for t in doc["task_details"]}
    assert rows["add"]["task_id"] == ids["add"] and rows["add"]["state"] == "RUNNING"
    assert rows["double-driver"]["state"] == "RUNTIME_STATE_UNSPECIFIED"  # kept from before
    assert len(doc["task_details"]) == len(ids) + 1


def test_an_omitted_node_keeps_the_state_its_row_had():
    doc = {"run_id": "r", "created_at": 1.0}
    node = {"id": "n1", "display_name": "x", "phase": "Running", "started": 1.0, "finished": 0.0, "children": []}
    argo_nodes.upsert_tasks(doc, [node], 1.0)
    argo_nodes.upsert_tasks(doc, [{**node, "phase": "Omitted"}], 2.0)
    assert doc["task_details"][0]["state"] == "RUNNING"
    argo_nodes.upsert_tasks(doc, [{**node, "phase": "Error", "finished": 3.0}], 3.0)
    assert doc["task_details"][0]["state"] == "FAILED" and doc["task_details"][0]["end_time"] == 3.0


def test_a_task_run_after_several_upstreams_hooks_onto_each_of_them():
    """dag.go DAG(): every dependency of an ALL_UPSTREAM_TASKS_COMPLETED task gets it as exit hook."""
    component = {"componentRef": {"name": "comp-a"}}
    spec = {"pipelineInfo": {"name": "p"},
            "root": {"dag": {"tasks": {"a": component, "b": component, "cleanup": {
                **component, "dependentTasks": ["a", "b"],
                "triggerPolicy": {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}}}}},
            "components": {"comp-a": {"executorLabel": "exec-a"}},
            "deploymentSpec": {"executors": {"exec-a": {"container": {"image": "python:3.11"}}}}}
    steps = {"a": _ok(), "b": _ok(), "cleanup": _ok(3, 4)}
    nodes = _by_name(argo_nodes.build(spec, WF, steps, {"phase": "Succeeded", "started": 1, "finished": 5}))
    for owner in ("a", "b"):
        hook = nodes[f"{WF}.root.{owner}.onExit"]
        assert hook["template"] == "exit-hook-root-cleanup" and hook["display_name"] == f"{owner}.onExit"
        assert hook["id"] in nodes[f"{WF}.root.{owner}"]["children"]
        assert nodes[f"{WF}.root.{owner}.onExit.cleanup.executor"]["phase"] == "Succeeded"
    assert f"{WF}.root.cleanup" not in nodes  # not a task of the root DAG itself
