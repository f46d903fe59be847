"""Steps from Argo-node task details shaped exactly like KFP 2.17's api_converter.go output."""

from __future__ import annotations

from typing import Any

import pytest
from kfp import compiler

from kfp_bridge.utils.states import RunState, RunStatus
from kfp_bridge.utils.steps import (
    argo_node_id,
    fnv32a,
    pipeline_shape,
    step_of_node_name,
    steps_from_task_details,
)
from tests.unit.utils.argo_nodes import N, container, loop, task_details
from tests.unit.utils.steps_pipeline import outer

WF = "outer-x7k2p"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import yaml

    path = tmp_path_factory.mktemp("spec") / "outer.yaml"
    compiler.Compiler().compile(outer, str(path))
    return yaml.safe_load(path.read_text())


def _outer_nodes(*, inner_boom: str = "Failed", loop_item_1: str = "Succeeded", cached_prep: bool = False) -> list[N]:
    bodies = [container("work-2"), container("work-2", loop_item_1), container("work-2")]
    inner_phase = "Failed" if inner_boom == "Failed" else "Succeeded"
    loop_phase = "Failed" if loop_item_1 == "Failed" else "Succeeded"
    return [
        *container("work", "Succeeded", executor="Skipped" if cached_prep else None),
        N("inner-driver", deps=["work"]),
        N("inner", inner_phase, [*container("work"), *container("boom", inner_boom, deps=["work"])], deps=["inner-driver"]),
        loop("for-loop-2", bodies, loop_phase, parent=f"{WF}.root"),
    ]


def test_fnv32a_matches_argo_node_ids():
    # Go's hash/fnv New32a of "a" is 0xe40c292c; Argo ids are "<workflow>-<decimal hash>".
    assert fnv32a("a") == 0xE40C292C
    assert argo_node_id("wf", "wf") == "wf"
    assert argo_node_id("wf", "wf.root") == f"wf-{fnv32a('wf.root')}"


def test_details_carry_no_error_pod_name_or_task_id(spec):
    details = task_details(WF, _outer_nodes())
    assert all(not {"error", "pod_name"} & set(d) for d in details)
    assert [d["task_id"] for d in details] == sorted(d["task_id"] for d in details)  # not node-id order
    assert sum(d["display_name"] == "executor" for d in details) == 6  # collides without the tree


def test_steps_are_pipeline_paths_never_drivers_executors_root_or_workflow(spec):
    steps = steps_from_task_details(task_details(WF, _outer_nodes(), "Failed"), spec)
    names = [step.name for step in steps]
    assert sorted(names) == sorted(
        ["work", "inner", "inner/work", "inner/boom", "for-loop-2",
         "for-loop-2[0]/work-2", "for-loop-2[1]/work-2", "for-loop-2[2]/work-2"]
    )
    assert len(set(names)) == len(names)


def test_failed_step_in_nested_pipeline_is_named_by_path_and_blamed_alone(spec):
    status = RunStatus.from_api(
        {"run_id": "r1", "state": "FAILED", "run_details": {"task_details": task_details(WF, _outer_nodes(), "Failed")}},
        spec,
    )
    assert [step.name for step in status.failed_steps] == ["inner/boom"]
    assert status.failed_steps[0].node_name == f"{WF}.root.inner.boom.executor"
    message = status.failure_message(run_url="http://ui/#/runs/details/r1")
    assert "step 'inner/boom' failed" in message and "inner/work" not in message
    assert "terminated" not in message


def test_failed_loop_iteration_is_indexed(spec):
    nodes = _outer_nodes(inner_boom="Succeeded", loop_item_1="Failed")
    status = RunStatus.from_api({"run_id": "r", "state": "FAILED", "run_details": {"task_details": task_details(WF, nodes, "Failed")}}, spec)
    assert [step.name for step in status.failed_steps] == ["for-loop-2[1]/work-2"]
    assert status.step_states()["for-loop-2[0]/work-2"] == "SUCCEEDED"


def test_cached_step_is_reported_cached_not_failed(spec):
    nodes = _outer_nodes(inner_boom="Succeeded", cached_prep=True)
    status = RunStatus.from_api({"run_id": "r", "state": "SUCCEEDED", "run_details": {"task_details": task_details(WF, nodes)}}, spec)
    assert status.step_states()["work"] == "CACHED"
    assert status.step_states()["inner/work"] == "SUCCEEDED"
    assert "work=CACHED" in status.progress_line()


@pytest.mark.parametrize("seed", range(40))
def test_a_chain_of_fast_steps_finds_every_step_whatever_the_row_order(seed):
    """All times in one second and two ``executor`` rows: the one leading to the next task's driver is
    the first step's pod; taking the leaf there left ``check-flag`` unreachable (a step lost)."""
    import random

    for cached in (False, True):
        pod = "Skipped" if cached else None
        details = task_details(
            WF, [*container("prepare", executor=pod), *container("check-flag", executor=pod, deps=["prepare"])],
            one_second=True,
        )
        random.Random(seed).shuffle(details)
        steps = {s.name: s.label for s in steps_from_task_details(details)}
        assert steps == dict.fromkeys(("check-flag", "prepare"), "CACHED" if cached else "SUCCEEDED")


def test_a_same_second_nested_pipeline_with_a_loop_finds_every_step(spec):
    import random

    expected = {s.name for s in steps_from_task_details(task_details(WF, _outer_nodes(inner_boom="Succeeded")), spec)}
    for seed in range(20):
        details = task_details(WF, _outer_nodes(inner_boom="Succeeded"), one_second=True)
        random.Random(seed).shuffle(details)
        assert {s.name for s in steps_from_task_details(details, spec)} == expected


def test_terminated_run_blames_no_step():
    # Terminate: the running pod's node is failed/omitted by the deadline, the executor never failed itself.
    nodes = [*container("prepare"), N("train-driver", deps=["prepare"]),
             N("train", "Failed", [N("executor", "Omitted")], deps=["train-driver"])]
    run = {"run_id": "r", "state": "FAILED", "run_details": {"task_details": task_details("p-1", nodes, "Failed")}}
    elsewhere = RunStatus.from_api(run)
    assert elsewhere.failed_steps == () and elsewhere.terminated == "elsewhere"
    assert "terminated outside Airflow" in elsewhere.failure_message()
    by_us = RunStatus.from_api(run, terminated_by_airflow="the task was killed")
    message = by_us.failure_message()
    assert "terminated by Airflow (the task was killed)" in message and "step 'train' failed" not in message
    assert "steps interrupted: train" in message


def test_retried_executor_attempts_are_the_pods(spec):
    attempts = N("executor", "Failed", [N("executor(0)", "Failed", name="p-1.root.train.executor(0)"),
                                        N("executor(1)", "Failed", name="p-1.root.train.executor(1)")])
    nodes = [N("train-driver"), N("train", "Failed", [attempts], deps=["train-driver"])]
    (step,) = steps_from_task_details(task_details("p-1", nodes, "Failed"))
    assert step.name == "train" and step.blamed and step.node_name == "p-1.root.train.executor(1)"


def test_without_spec_structural_nodes_are_still_not_steps():
    steps = steps_from_task_details(task_details(WF, _outer_nodes(), "Failed"))
    assert "executor" not in {s.name for s in steps} and "root" not in {s.name for s in steps}
    assert "inner/boom" in {s.name for s in steps}


def test_flat_details_without_a_tree_fall_back_to_display_names(spec):
    details = [
        {"display_name": "work", "state": "SUCCEEDED"},
        {"display_name": "boom", "state": "FAILED", "error": {"message": "RuntimeError: boom 1"}},
    ]
    steps = steps_from_task_details(details, spec)
    assert [(s.name, s.state) for s in steps] == [("work", RunState.SUCCEEDED), ("boom", RunState.FAILED)]
    assert steps[1].blamed and steps[1].error == "RuntimeError: boom 1"


def test_step_of_executor_pod_node_name(spec):
    assert step_of_node_name(f"{WF}.root.inner.boom.executor", spec) == "inner/boom"
    assert step_of_node_name(
        f"{WF}.root.for-loop-2.iteration-iterations(1:1).iteration-item.work-2.executor", spec
    ) == "for-loop-2[1]/work-2"
    assert step_of_node_name(f"{WF}.root.work-driver", spec) is None
    assert step_of_node_name(f"{WF}.root.train.executor(2)") == "train"


def test_pipeline_shape_kinds(spec):
    shape = pipeline_shape(spec)
    assert shape is not None
    assert shape.tasks("root")["for-loop-2"].kind == "loop" and shape.tasks("root")["inner"].kind == "dag"
    assert pipeline_shape({"pipeline_spec": spec, "platform_spec": {}}) == shape
