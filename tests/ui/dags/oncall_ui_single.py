"""UI test DAG: the two-step pipeline as one KfpRunOperator task, then a downstream task."""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="oncall_ui_single",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    train = KfpRunOperator(
        task_id="train",
        pipeline="oncall_pipelines/two_step.yaml",
        params={
            "counter_path": "{{ dag_run.conf['work'] }}/single.counter",
            "flag_path": "{{ dag_run.conf['work'] }}/single.flag",
            "label": "single",
        },
        experiment="kfp-bridge-oncall",
        poll_interval=1,
    )
    train >> EmptyOperator(task_id="publish")
