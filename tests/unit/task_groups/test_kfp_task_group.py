"""KfpPipelineTaskGroup: steps read from the compiled YAML without kfp, wiring, and the mirror's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
from airflow.sdk import DAG

from kfp_bridge.task_groups.kfp import (
    KfpPipelineTaskGroup,
    PipelineSpecError,
    pipeline_steps,
    step_outcome,
)
from kfp_bridge.utils.states import RunStatus

REPO = Path(__file__).resolve().parents[3]
IRIS = REPO / "dags" / "pipelines" / "iris.yaml"


def _run(state: str, *steps: tuple[str, str], error: str | None = None) -> RunStatus:
    details = [
        {
            "display_name": name,
            "state": step_state,
            "error": {"message": error} if step_state == "FAILED" else None,
        }
        for name, step_state in steps
    ]
    return RunStatus.from_api({"run_id": "r1", "state": state, "run_details": {"task_details": details}})


def test_steps_come_from_root_dag_tasks_in_dependency_order() -> None:
    steps = pipeline_steps(IRIS)
    assert [s.name for s in steps] == [
        "load-iris-dataset",
        "train-classifier",
        "evaluate-classifier",
        "export-model",
    ]
    assert {s.name: s.dependencies for s in steps}["export-model"] == (
        "evaluate-classifier",
        "train-classifier",
    )


def test_unreadable_pipelines_fail_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(PipelineSpecError, match="does not exist"):
        pipeline_steps(tmp_path / "missing.yaml")
    (tmp_path / "not.yaml").write_text("pipelineInfo: {name: x}\n")
    with pytest.raises(PipelineSpecError, match="no root.dag.tasks"):
        pipeline_steps(tmp_path / "not.yaml")
    (tmp_path / "cycle.yaml").write_text(
        "root:\n  dag:\n    tasks:\n      a: {dependentTasks: [b]}\n      b: {dependentTasks: [a]}\n"
    )
    with pytest.raises(PipelineSpecError, match="cycle"):
        pipeline_steps(tmp_path / "cycle.yaml")


def test_group_has_the_run_task_and_one_mirror_per_step_wired_like_the_pipeline() -> None:
    with DAG("tg", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        group = KfpPipelineTaskGroup("train", pipeline=str(IRIS), kfp_conn_id="kfp_x", params={"a": 1})
    tasks = {t.task_id: t for t in dag.tasks}
    assert sorted(tasks) == sorted(
        [
            "train.kfp_run",
            "train.load-iris-dataset",
            "train.train-classifier",
            "train.evaluate-classifier",
            "train.export-model",
        ]
    )
    assert group.run_task.kfp_conn_id == "kfp_x"
    root = tasks["train.load-iris-dataset"]
    assert root.upstream_task_ids == {"train.kfp_run"} and root.trigger_rule == "always"
    export = tasks["train.export-model"]
    assert export.upstream_task_ids == {"train.evaluate-classifier", "train.train-classifier"}
    assert export.trigger_rule == "all_success"
    assert {t.run_task_id for t in tasks.values() if t.task_id != "train.kfp_run"} == {"train.kfp_run"}
    assert export.step == "export-model" and export.kfp_conn_id == "kfp_x"


def test_relative_pipeline_is_read_next_to_the_dag_file(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "one.yaml").write_text(
        "root:\n  dag:\n    tasks:\n      only-step: {taskInfo: {name: only-step}}\n"
    )
    with DAG("tg2", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        dag.fileloc = str(tmp_path / "dag.py")
        KfpPipelineTaskGroup("g", pipeline="p/one.yaml")
    assert sorted(t.task_id for t in dag.tasks) == ["g.kfp_run", "g.only-step"]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (_run("RUNNING", ("prepare", "SUCCEEDED")), ("success", True)),
        (_run("RUNNING", ("prepare", "RUNNING")), ("wait", True)),
        (_run("RUNNING", ("prepare", "FAILED")), ("wait", True)),  # a retry may be under way
        (_run("RUNNING"), ("wait", True)),
        (_run("FAILED", ("prepare", "FAILED"), error="boom"), ("failed", False)),
        (_run("SUCCEEDED", ("other", "SUCCEEDED")), ("skipped", True)),
        (_run("CANCELED"), ("failed", False)),
        (_run("SUCCEEDED", ("prepare", "FAILED"), ("prepare", "SUCCEEDED")), ("success", True)),
    ],
)
def test_step_outcome(run: RunStatus, expected: tuple[str, bool]) -> None:
    outcome = step_outcome(run, "prepare")
    assert (outcome.action, outcome.final) == expected
    if outcome.action == "failed" and run.steps:
        assert "boom" in outcome.message


def test_dag_parse_imports_neither_kfp_nor_kubernetes_nor_the_api_app() -> None:
    code = (
        "import sys; import kfp_bridge.task_groups.kfp, kfp_bridge.plugins.oncall; "
        "print(sorted(m for m in ('kfp', 'kubernetes', 'kfp_server_api', 'kfp_bridge.plugins.app') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
