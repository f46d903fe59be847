"""UI test DAG: two KfpRunOperator tasks on their own connection, which the test points at a KFP that is down."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="oncall_ui_kfp_down",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    # Two tasks on one connection: the DAG run's "KFP runs" tab asks KFP once per connection in an outage.
    for task_id in ("train", "train_b"):
        KfpRunOperator(
            task_id=task_id,
            kfp_conn_id="kfp_oncall_down",
            pipeline="oncall_pipelines/two_step.yaml",
            params={
                "counter_path": "{{ dag_run.conf['work'] }}/" + task_id + ".counter",
                "flag_path": "{{ dag_run.conf['work'] }}/down.flag",
                "label": task_id,
            },
            experiment="kfp-bridge-oncall",
            poll_interval=1,
        )

if __name__ == "__main__":
    dag.test()
