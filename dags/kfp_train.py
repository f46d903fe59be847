"""Daily iris training on Kubeflow Pipelines.

Each day's run trains on that day's data interval and writes its model to a dated directory, so
the serving DAG can roll out exactly that model. The task defers while KFP works: no worker slot
is held, and a retry or Clear reruns only the failed KFP steps of the same run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from kfp_bridge.operators.kfp import KfpRunOperator

# The day a run trains for. A run started without a logical date (REST API `logical_date: null`, an
# asset event) has no data_interval_end in its context at all, and strict Jinja raises on an undefined
# name before `or` is reached: `default(..., true)` covers both absent and None.
RUN_DAY = "(data_interval_end | default(dag_run.run_after, true))"

with DAG(
    dag_id="kfp_train",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="Europe/Amsterdam"),
    catchup=False,
    tags=["kfp", "example"],
    params={
        "model_root": Param("/tmp/kfp-bridge/models", type="string", description="where models are written")
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    # Templated params render to their native types ("seed" to an int), as the pipeline declares them.
    render_template_as_native_obj=True,
) as dag:
    train = KfpRunOperator(
        task_id="train_iris",
        pipeline="pipelines/iris.yaml",
        experiment="iris",
        params={
            "model_dir": "{{ params.model_root }}/iris/{{ " + RUN_DAY + " | ds }}",
            "seed": "{{ " + RUN_DAY + ".day }}",
            "C": 1.0,
        },
        deferrable=True,
        poll_interval=5,
        timeout=pendulum.duration(hours=2),
    )


if __name__ == "__main__":
    dag.test()
