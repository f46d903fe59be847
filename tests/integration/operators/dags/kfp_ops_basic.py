"""Test DAG: the two-step pipeline once synchronously and once deferred (files under conf['work'])."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="kfp_ops_basic",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    for deferrable in (False, True):
        task_id = "deferred" if deferrable else "sync"
        KfpRunOperator(
            task_id=task_id,
            pipeline="kfp_ops_pipelines/two_step.yaml",
            params={
                "counter_path": "{{ dag_run.conf['work'] }}/" + task_id + ".counter",
                "flag_path": "{{ dag_run.conf['work'] }}/" + task_id + ".flag",
                "label": task_id,
            },
            experiment="kfp-bridge-tests",
            kfp_conn_id="kfp_ops",
            deferrable=deferrable,
            poll_interval=1,
        )


if __name__ == "__main__":
    dag.test()
