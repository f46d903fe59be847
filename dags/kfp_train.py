"""Daily iris training on Kubeflow Pipelines, publishing the model as the asset ``kfp://iris-train/model``.

The Trigger form shows the pipeline's own inputs (C, max_iter, test_size, seed, min_accuracy) with
their types and defaults, read from the compiled pipeline; a wrong type is refused before any run.
Each run writes its model to a dated directory and, on success, records an event on the asset
whose extra carries the model URI, the KFP run id and link and the pipeline version:
``kfp_serve`` is scheduled on that asset and rolls out exactly that model. The task defers while
KFP works: no worker slot is held, and a retry or Clear reruns only the failed KFP steps of the
same run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.params import pipeline_params

IRIS_MODEL = Asset("kfp://iris-train/model")
# The day a run trains for. A run started without a logical date (REST API `logical_date: null`, an
# asset event) has no data_interval_end in its context at all, and strict Jinja raises on an undefined
# name before `or` is reached: `default(..., true)` covers both absent and None.
RUN_DAY = "(data_interval_end | default(dag_run.run_after, true))"
MODEL_DIR = "{{ params.model_root }}/iris/{{ " + RUN_DAY + " | ds }}"

with DAG(
    dag_id="kfp_train",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="Europe/Amsterdam"),
    catchup=False,
    tags=["kfp", "example"],
    params={
        "model_root": Param("/tmp/kfp-bridge/models", type="string", description="where models are written"),
        # One typed field per pipeline input; model_dir is derived from model_root and the run's day.
        **pipeline_params("pipelines/iris.yaml", exclude=["model_dir"]),
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
) as dag:
    train = KfpRunOperator(
        task_id="train_iris",
        pipeline="pipelines/iris.yaml",
        experiment="iris",
        params={"model_dir": MODEL_DIR},
        params_from_dag=True,
        model_uri="file://" + MODEL_DIR,
        outlets=[IRIS_MODEL],
        deferrable=True,
        poll_interval=5,
        timeout=pendulum.duration(hours=2),
    )


if __name__ == "__main__":
    dag.test()
