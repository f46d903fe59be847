"""UI test DAG: the Trigger form built from the iris pipeline's inputs (pipeline_params), sent to KFP (params_from_dag)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.params import pipeline_params

with DAG(
    dag_id="params_form",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
    params=pipeline_params("params_form_pipelines/iris.yaml"),
) as dag:
    KfpRunOperator(
        task_id="train",
        pipeline="params_form_pipelines/iris.yaml",
        params_from_dag=True,
        experiment="kfp-bridge-params-form",
        deferrable=True,
        poll_interval=1,
    )
