"""Test DAG: one task per kind of bad input; each must fail before any KFP run exists."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

TWO_STEP = "kfp_ops_pipelines/two_step.yaml"
GOOD = {"counter_path": "/tmp/kfp-ops-bad.counter", "flag_path": "/tmp/kfp-ops-bad.flag"}

with DAG(
    dag_id="kfp_ops_bad",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0, "kfp_conn_id": "kfp_ops", "poll_interval": 1},
) as dag:
    KfpRunOperator(task_id="missing_yaml", pipeline="kfp_ops_pipelines/missing.yaml", params=GOOD)
    KfpRunOperator(task_id="invalid_yaml", pipeline="kfp_ops_pipelines/invalid.yaml", params=GOOD)
    KfpRunOperator(task_id="unknown_param", pipeline=TWO_STEP, params={**GOOD, "learning_rate": 0.1})
    KfpRunOperator(task_id="missing_required", pipeline=TWO_STEP, params={"counter_path": "/tmp/c"})
    KfpRunOperator(task_id="wrong_type", pipeline="kfp_ops_pipelines/sleeper.yaml", params={"seconds": "abc"})
    KfpRunOperator(task_id="unknown_conn", pipeline=TWO_STEP, params=GOOD, kfp_conn_id="kfp_ops_no_such_conn")
    KfpRunOperator(task_id="malformed_host", pipeline=TWO_STEP, params=GOOD, kfp_conn_id="kfp_ops_bad_host")


if __name__ == "__main__":
    dag.test()
