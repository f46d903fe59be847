"""KfpRunSensor on runs started elsewhere: the run id comes from the DAG run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.sensors.kfp import KfpRunSensor

with DAG(
    dag_id="kfp_ops_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
) as dag:
    KfpRunSensor(
        task_id="poke",
        run_id="{{ dag_run.conf['run_id'] }}",
        kfp_conn_id="kfp_ops",
        poke_interval=1,
        timeout=300,
        deferrable=False,
    )
    KfpRunSensor(
        task_id="deferred",
        run_id="{{ dag_run.conf['run_id'] }}",
        kfp_conn_id="kfp_ops",
        poke_interval=1,
        timeout=300,
        deferrable=True,
    )
