"""KfpRunOperator(params_from_dag=True): the pipeline's parameters from the DAG's params, as Airflow resolves them.

The context is Airflow's own (``RuntimeTaskInstance.get_template_context``: DAG params, then task
params, then ``dag_run.conf``, validated against each Param's schema), and ``_prepare`` is the
operator's last step before anything reaches KFP: what it returns is the run's runtime config.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pendulum
import pytest
from airflow.sdk import DAG, Asset, Param
from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

from kfp_bridge.operators.kfp import KfpArgumentError, KfpRunOperator
from kfp_bridge.params import pipeline_params
from kfp_bridge.utils.pipeline_inputs import PipelineParamsError

IRIS = str(Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "iris.yaml")
START = pendulum.datetime(2026, 11, 1, tz="UTC")
DEFAULTS = {"C": 1.0, "max_iter": 200, "test_size": 0.25, "seed": 42, "min_accuracy": 0.8}


def _dag(dag_params: dict, **task_kwargs) -> KfpRunOperator:
    with DAG(f"d{uuid.uuid4().hex[:8]}", schedule=None, start_date=START, params=dag_params):
        return KfpRunOperator(task_id="train", pipeline=IRIS, **task_kwargs)


def _context(task: KfpRunOperator, conf: dict | None = None) -> dict:
    now = pendulum.now("UTC")
    dag_run = DagRun(
        dag_id=task.dag_id, run_id="manual__t", logical_date=None, data_interval_start=None,
        data_interval_end=None, run_after=now, start_date=now, end_date=None, run_type="manual",
        state="running", conf=conf or {}, consumed_asset_events=[], partition_key=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id=task.task_id, dag_id=task.dag_id, run_id=dag_run.run_id, try_number=1,
        dag_version_id=uuid.uuid4(), map_index=-1, task=task, start_date=now, max_tries=0,
    )
    ti._ti_context_from_server = TIRunContext(dag_run=dag_run, max_tries=0)
    context = ti.get_template_context()
    ti.render_templates(context)
    return context


def _sent(task: KfpRunOperator, conf: dict | None = None) -> dict:
    return task._prepare(_context(task, conf))["params"]


def _form() -> dict:
    return {"model_root": Param("/tmp/m", type="string"), **pipeline_params(IRIS, exclude=["model_dir"])}


def test_the_dag_params_that_are_pipeline_inputs_are_sent_and_no_other():
    task = _dag(_form(), params={"model_dir": "{{ params.model_root }}/x"}, params_from_dag=True)
    assert _sent(task) == {**DEFAULTS, "model_dir": "/tmp/m/x"}  # model_root: not a pipeline input


def test_trigger_conf_overrides_the_dag_params():
    task = _dag(_form(), params={"model_dir": "/tmp/x"}, params_from_dag=True)
    sent = _sent(task, {"C": 0.5, "seed": 7, "model_root": "/elsewhere"})
    assert sent == {**DEFAULTS, "C": 0.5, "seed": 7, "model_dir": "/tmp/x"}
    assert isinstance(sent["seed"], int) and isinstance(sent["C"], float)


def test_conf_overrides_a_task_param_too():
    task = _dag(_form(), params={"model_dir": "/tmp/x"}, params_from_dag=True)
    assert _sent(task, {"model_dir": "/tmp/from-conf"})["model_dir"] == "/tmp/from-conf"


def test_a_wrong_type_in_conf_is_refused_by_airflow_before_the_operator_runs():
    from airflow.sdk.exceptions import ParamValidationError

    task = _dag(_form(), params={"model_dir": "/tmp/x"}, params_from_dag=True)
    with pytest.raises(ParamValidationError, match="seed"):
        _context(task, {"seed": "abc"})


def test_without_params_from_dag_the_dag_params_are_not_sent():
    task = _dag(_form(), params={"model_dir": "/tmp/x"})
    assert _sent(task, {"C": 0.5}) == {"model_dir": "/tmp/x"}


def test_an_input_both_in_the_dag_params_and_the_task_params_is_refused():
    task = _dag({**_form(), "model_dir": Param("/a", type="string")}, params={"model_dir": "/b"}, params_from_dag=True)
    with pytest.raises(KfpArgumentError, match=r"'model_dir' is both a DAG param and in the task's params.*exclude"):
        _sent(task)


def test_a_dag_without_any_pipeline_input_among_its_params_is_refused():
    task = _dag({"model_root": Param("/tmp/m", type="string")}, params={"model_dir": "/x"}, params_from_dag=True)
    with pytest.raises(KfpArgumentError, match=r"none of the DAG's params \(model_root\) is an input.*pipeline_params"):
        _sent(task)


def test_a_dag_param_of_the_wrong_type_for_the_pipeline_names_where_it_came_from():
    form = {**_form(), "seed": Param("seven", type="string")}  # hand-written, not from the pipeline
    task = _dag(form, params={"model_dir": "/tmp/x"}, params_from_dag=True)
    with pytest.raises(PipelineParamsError, match=r"'seed' expects an integer.*got 'seven' \(str\) from the DAG param 'seed'"):
        _sent(task)
    with pytest.raises(PipelineParamsError, match=r"got 'x' \(str\) from dag_run.conf\['seed'\]"):
        _sent(task, {"seed": "x"})


def test_a_missing_required_input_is_named():
    task = _dag(_form(), params_from_dag=True)  # model_dir excluded from the form and not on the task
    with pytest.raises(PipelineParamsError, match="missing required pipeline parameter 'model_dir'"):
        _sent(task)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_params_from_dag_must_be_a_boolean(value):
    task = _dag(_form(), params={"model_dir": "/x"}, params_from_dag=value)
    with pytest.raises(KfpArgumentError, match="'params_from_dag' must be a boolean"):
        task._check_arguments()


@pytest.mark.parametrize("value", ["", "  ", "file:///a\nb", 3])
def test_model_uri_must_be_a_non_empty_uri(value):
    task = _dag(_form(), params={"model_dir": "/x"}, model_uri=value, outlets=[Asset("kfp://iris-train/model")])
    with pytest.raises(KfpArgumentError, match="'model_uri' must be a non-empty URI"):
        task._check_arguments()


# ------------------------------------------------------------------ the asset event a successful run leaves


def _succeeded(task: KfpRunOperator, context: dict, monkeypatch: pytest.MonkeyPatch, **names) -> dict:
    from kfp_bridge.utils.states import RunStatus

    # A kfp connection the hook reads; no request is made to build a run URL.
    monkeypatch.setenv("AIRFLOW_CONN_KFP_DEFAULT", '{"conn_type": "kfp", "host": "http://kfp.example:8888"}')
    run = {"run_id": "r-1", "state": "SUCCEEDED", "pipeline_version_reference": {"pipeline_version_id": "pv-9"}}
    return task._finish(task._get_hook(), RunStatus.from_api(run), context, **names)


def test_a_successful_run_puts_its_facts_on_each_outlet_asset_event(monkeypatch):
    model, other = Asset("kfp://iris-train/model"), Asset("s3://bucket/report")
    task = _dag(
        _form(), params={"model_dir": "/tmp/m/x"}, params_from_dag=True,
        model_uri="file://{{ params.model_root }}/x", outlets=[model, other],
    )
    context = _context(task)
    result = _succeeded(task, context, monkeypatch, pipeline_name="iris-train", pipeline_version="v-abc")
    extra = context["outlet_events"][model].extra
    assert extra == {
        "kfp_run_id": "r-1",
        "kfp_run_url": result["url"],
        "pipeline_name": "iris-train",
        "pipeline_version": "v-abc",
        "pipeline_version_id": "pv-9",
        "model_uri": "file:///tmp/m/x",
    }
    assert "r-1" in result["url"] and result["model_uri"] == "file:///tmp/m/x"
    assert context["outlet_events"][other].extra == extra


def test_a_failed_run_leaves_no_asset_extra(monkeypatch):
    from kfp_bridge.operators.kfp import KfpRunError
    from kfp_bridge.utils.states import RunStatus

    model = Asset("kfp://iris-train/model")
    task = _dag(_form(), params={"model_dir": "/x"}, params_from_dag=True, model_uri="file:///x", outlets=[model])
    context = _context(task)
    monkeypatch.setenv("AIRFLOW_CONN_KFP_DEFAULT", '{"conn_type": "kfp", "host": "http://kfp.example:8888"}')
    with pytest.raises(KfpRunError):
        task._finish(task._get_hook(), RunStatus.from_api({"run_id": "r-2", "state": "FAILED"}), context)
    assert context["outlet_events"][model].extra == {}
