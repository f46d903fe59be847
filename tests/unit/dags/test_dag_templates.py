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
from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

DAGS = Path(__file__).resolve().parents[3] / "dags"
INTERVAL_END = pendulum.datetime(2026, 11, 19, 22, tz="UTC")
RUN_AFTER = pendulum.datetime(2026, 11, 21, 9, tz="UTC")


@pytest.fixture(scope="module")
def bag() -> DagBag:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def _tasks() -> list[tuple[str, str]]:
    bag = DagBag(dag_folder=str(DAGS))
    return [(dag.dag_id, task.task_id) for dag in bag.dags.values() for task in dag.tasks]


def _render(bag: DagBag, dag_id: str, task_id: str, *, logical_date: pendulum.DateTime | None) -> dict:
    dag = bag.dags[dag_id]
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
        run_type="manual",
        state="running",
        conf={},
        consumed_asset_events=[],
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
    dirs = set()
    for dag_id, task_id in _tasks():
        rendered = _render(bag, dag_id, task_id, logical_date=logical_date)
        dirs.update(
            value
            for value in (
                rendered.get("storage_uri"),
                (rendered.get("pipeline_params") or {}).get("model_dir"),
            )
            if value
        )
    return dirs


def test_the_model_day_is_the_data_interval_end_else_when_the_run_was_asked_for(bag):
    # Training and serving of one run agree on the model folder, and it follows the run's day.
    assert _model_dirs(bag, INTERVAL_END) == {"/tmp/kfp-bridge/models/iris/2026-11-19"}
    assert _model_dirs(bag, None) == {"/tmp/kfp-bridge/models/iris/2026-11-21"}


def test_native_rendering_keeps_the_seed_an_int(bag):
    for logical_date, day in ((INTERVAL_END, 19), (None, 21)):
        params = _render(bag, "kfp_train", "train_iris", logical_date=logical_date)["pipeline_params"]
        assert params["seed"] == day and isinstance(params["seed"], int)
