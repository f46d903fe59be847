"""Test DAG: the sleeper pipeline synchronously and deferred; ``seconds`` comes from the trigger conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="kfp_ops_sleep",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    # One retry, soon: the crash test needs the next attempt; the kill test marks tasks failed outright.
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=1)},
) as dag:
    for deferrable in (False, True):
        KfpRunOperator(
            task_id="deferred" if deferrable else "sync",
            pipeline="kfp_ops_pipelines/sleeper.yaml",
            params={"seconds": 1.0},  # overridden by the trigger conf
            experiment="kfp-bridge-tests",
            kfp_conn_id="kfp_ops",
            deferrable=deferrable,
            poll_interval=1,
        )


if __name__ == "__main__":
    dag.test()
