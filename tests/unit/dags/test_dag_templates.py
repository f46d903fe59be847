"""Every templated field of every example DAG renders, whether or not the run has a logical date.

A run triggered through the REST API with ``logical_date: null`` (or by an asset event) gets no
``data_interval_*``/``ds``/``logical_date`` keys in its context at all; strict Jinja then fails the
task on every try. The context here is built by Airflow's own task runner
(``RuntimeTaskInstance.get_template_context``) from the run as the API server describes it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.api.datamodels._generated import (
    AssetEventDagRunReference,
    AssetReferenceAssetEventDagRun,
    DagRun,
    TIRunContext,
)
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

DAGS = Path(__file__).resolve().parents[3] / "dags"
INTERVAL_END = pendulum.datetime(2026, 11, 19, 22, tz="UTC")
RUN_AFTER = pendulum.datetime(2026, 11, 21, 9, tz="UTC")
IRIS_MODEL_URI = "kfp://iris-train/model"
EVENT_MODEL = "file:///tmp/kfp-bridge/models/iris/2026-11-20"


def _event(model_uri: str, minute: int = 0) -> AssetEventDagRunReference:
    """An event of kfp_train's asset as the execution API hands it to a triggered run."""
    return AssetEventDagRunReference(
        asset=AssetReferenceAssetEventDagRun(name=IRIS_MODEL_URI, uri=IRIS_MODEL_URI, extra={}),
        extra={"model_uri": model_uri, "kfp_run_id": f"run-{minute}"},
        source_task_id="train_iris",
        source_dag_id="kfp_train",
        source_run_id=f"scheduled__{minute}",
        source_map_index=-1,
        source_aliases=[],
        timestamp=RUN_AFTER.add(minutes=minute),
    )


@pytest.fixture(scope="module")
def bag() -> DagBag:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def _tasks() -> list[tuple[str, str]]:
    bag = DagBag(dag_folder=str(DAGS))
    # Tasks with templated fields; a plain EmptyOperator (the release DAG's outcome) has none.
    return [(dag.dag_id, task.task_id) for dag in bag.dags.values() for task in dag.tasks if task.template_fields]


def _render(
    bag: DagBag,
    dag_id: str,
    task_id: str,
    *,
    logical_date: pendulum.DateTime | None,
    events: list[AssetEventDagRunReference] | None = None,
    conf: dict | None = None,
) -> dict:
    dag = bag.dags[dag_id]
    if events is None and dag_id == "kfp_serve":
        events = [_event(EVENT_MODEL)]  # an asset-scheduled DAG: runs come with their event
    task = dag.get_task(task_id).prepare_for_execution()
    dag_run = DagRun(
        dag_id=dag_id,
        run_id="manual__templates",
        logical_date=logical_date,
        data_interval_start=logical_date and logical_date.subtract(days=1),
        data_interval_end=logical_date,
        run_after=RUN_AFTER,
        start_date=RUN_AFTER,
        end_date=None,
        run_type="asset_triggered" if events else "manual",
        state="running",
        conf=conf or {},
        consumed_asset_events=events or [],
        partition_key=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task_id,
        dag_id=dag_id,
        run_id=dag_run.run_id,
        try_number=1,
        dag_version_id=uuid.uuid4(),
        map_index=-1,
        task=task,
        start_date=RUN_AFTER,
        max_tries=0,
    )
    ti._ti_context_from_server = TIRunContext(dag_run=dag_run, max_tries=0)
    ti.render_templates()
    return {field: getattr(ti.task, field) for field in ti.task.template_fields}


def _unrendered(value) -> list[str]:
    if isinstance(value, str):
        return [value] if "{{" in value or "{%" in value else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _unrendered(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _unrendered(v)]
    return []


@pytest.mark.parametrize(("dag_id", "task_id"), _tasks())
@pytest.mark.parametrize("logical_date", [None, INTERVAL_END], ids=["no_logical_date", "logical_date"])
def test_every_templated_field_renders(bag, dag_id, task_id, logical_date):
    rendered = _render(bag, dag_id, task_id, logical_date=logical_date)
    assert rendered, f"{dag_id}.{task_id} has no templated fields to check"
    assert _unrendered(rendered) == []


def _model_dirs(bag: DagBag, logical_date) -> set[str]:
    """Where the clock-driven DAGs train to and serve from (kfp_serve serves what its event names)."""
    dirs = set()
    for dag_id, task_id in _tasks():
        if dag_id == "kfp_serve":
            continue
        rendered = _render(bag, dag_id, task_id, logical_date=logical_date)
        dirs.update(
            value.removeprefix("file://")
            for value in (
                rendered.get("storage_uri"),
                rendered.get("model_uri"),
                (rendered.get("pipeline_params") or {}).get("model_dir"),
            )
            if value
        )
    return dirs


def test_the_model_day_is_the_data_interval_end_else_when_the_run_was_asked_for(bag):
    # Training and serving of one run agree on the model folder, and it follows the run's day.
    assert _model_dirs(bag, INTERVAL_END) == {"/tmp/kfp-bridge/models/iris/2026-11-19"}
    assert _model_dirs(bag, None) == {"/tmp/kfp-bridge/models/iris/2026-11-21"}


def test_kfp_train_publishes_the_model_it_writes(bag):
    rendered = _render(bag, "kfp_train", "train_iris", logical_date=INTERVAL_END)
    assert rendered["model_uri"] == "file://" + rendered["pipeline_params"]["model_dir"]
    task = bag.dags["kfp_train"].get_task("train_iris")
    assert [outlet.uri for outlet in task.outlets] == [IRIS_MODEL_URI]
    assert task.params_from_dag is True


def test_kfp_train_form_has_the_pipeline_inputs_typed_and_the_model_root(bag):
    params = bag.dags["kfp_train"].params
    types = {name: params.get_param(name).schema.get("type") for name in params}
    assert types == {
        "model_root": "string",
        "C": "number",
        "max_iter": "integer",
        "test_size": "number",
        "seed": "integer",
        "min_accuracy": "number",
    }
    assert (params["C"], params["max_iter"], params["seed"]) == (1.0, 200, 42)


def test_kfp_serve_is_scheduled_on_the_asset_kfp_train_updates(bag):
    serve = bag.dags["kfp_serve"]
    assert [asset.uri for asset in serve.timetable.asset_condition.objects] == [IRIS_MODEL_URI]


def test_kfp_serve_rolls_out_its_triggering_event_model_the_newest_when_several(bag):
    rendered = _render(bag, "kfp_serve", "serve_iris", logical_date=None, events=[_event("file:///m/a", 1)])
    assert rendered["storage_uri"] == "file:///m/a"
    # Events that arrived together: the newest, whatever order the API lists them in.
    events = [_event("file:///m/new", 5), _event("file:///m/old", 2)]
    assert _render(bag, "kfp_serve", "serve_iris", logical_date=None, events=events)["storage_uri"] == "file:///m/new"


def test_kfp_serve_model_uri_param_wins_when_given(bag):
    rendered = _render(
        bag, "kfp_serve", "serve_iris", logical_date=None, events=[_event("file:///m/a")], conf={"model_uri": "/m/b"}
    )
    assert rendered["storage_uri"] == "/m/b"
