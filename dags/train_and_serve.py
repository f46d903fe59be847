"""Train the iris model on Kubeflow Pipelines, then roll it out to KServe behind a 20% canary.

The rollout waits on the InferenceService (a watch, in the triggerer), smoke-tests the new
revision through its ``latest`` tag route, and promotes it; any failure rolls back to the previous
revision and fails the task with the reason.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator

# The day a run trains for. A run started without a logical date (REST API `logical_date: null`, an
# asset event) has no data_interval_end in its context at all, and strict Jinja raises on an undefined
# name before `or` is reached: `default(..., true)` covers both absent and None.
RUN_DAY = "(data_interval_end | default(dag_run.run_after, true))"
MODEL_DIR = "{{ params.model_root }}/iris/{{ " + RUN_DAY + " | ds }}"

with DAG(
    dag_id="train_and_serve",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="Europe/Amsterdam"),
    catchup=False,
    tags=["kfp", "kserve", "example"],
    params={
        "model_root": Param("/tmp/kfp-bridge/models", type="string", description="where models are written"),
        "inference_service": Param("iris", type="string", description="the InferenceService to update"),
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    render_template_as_native_obj=True,
) as dag:
    train = KfpRunOperator(
        task_id="train_iris",
        pipeline="pipelines/iris.yaml",
        experiment="iris",
        params={"model_dir": MODEL_DIR, "seed": "{{ " + RUN_DAY + ".day }}", "C": 1.0},
        deferrable=True,
        poll_interval=5,
        timeout=pendulum.duration(hours=2),
    )
    serve = KServeRolloutOperator(
        task_id="serve_iris",
        inference_service="{{ params.inference_service }}",
        namespace="default",
        storage_uri=MODEL_DIR,
        canary_traffic_percent=20,
        smoke_test={
            # A V1 predict on three iris rows, one per class: three integer class ids back.
            "payload": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]},
            "expected_shape": [3],
            "allowed_values": [0, 1, 2],
        },
        deferrable=True,
        timeout=pendulum.duration(minutes=15),
    )
    train >> serve


if __name__ == "__main__":
    dag.test()
