"""System test DAG: run a pipeline with KfpRunOperator (synchronously and deferred), then follow the
run with KfpRunSensor, on whatever KFP the ``kfp_system`` connection points at.

Run it with ``pytest tests/system`` (the runner compiles ``example_pipeline.py`` next to this file
and defines the connection from KFP_HOST / KFP_TOKEN / KFP_TOKEN_FILE / KFP_NAMESPACE, or points it
at the embedded stand-in), or by hand: ``python example_kfp_run.py`` with the YAML compiled beside it
and ``AIRFLOW_CONN_KFP_SYSTEM`` set.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.sensors.kfp import KfpRunSensor

DAG_ID = "example_kfp_run"
CONN_ID = "kfp_system"
PIPELINE = "example_pipeline.yaml"

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-system-test"],
    default_args={"retries": 0},
) as dag:
    run_sync = KfpRunOperator(
        task_id="run_pipeline",
        pipeline=PIPELINE,
        params={"name": "system test"},
        experiment="kfp-bridge-system-tests",
        kfp_conn_id=CONN_ID,
        deferrable=False,
        poll_interval=2,
        timeout=900,
    )
    run_deferred = KfpRunOperator(
        task_id="run_pipeline_deferred",
        pipeline=PIPELINE,
        params={"name": "deferred system test"},
        experiment="kfp-bridge-system-tests",
        kfp_conn_id=CONN_ID,
        deferrable=True,
        poll_interval=2,
        timeout=900,
    )
    follow = KfpRunSensor(
        task_id="follow_run",
        run_id="{{ ti.xcom_pull(task_ids='run_pipeline')['run_id'] }}",
        kfp_conn_id=CONN_ID,
        poke_interval=2,
        timeout=900,
    )
    run_sync >> follow


if __name__ == "__main__":
    dag.test()
