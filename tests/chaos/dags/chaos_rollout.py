"""Chaos DAG: a sync and a deferrable canary rollout side by side; names and models from the conf.

One retry, only for Airflow's resume-after-defer race (see tests/chaos/conftest.py
``state_mismatch_tries``); the test fails if a try fails for any other reason.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kserve import KServeRolloutOperator

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]

with DAG(
    dag_id="chaos_rollout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-chaos"],
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=2)},
) as dag:
    for mode in ("sync", "deferred"):
        KServeRolloutOperator(
            task_id=mode,
            inference_service="{{ dag_run.conf['" + mode + "_isvc'] }}",
            storage_uri="{{ dag_run.conf['" + mode + "_uri'] }}",
            namespace="default",
            canary_traffic_percent=20,
            smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]},
            kubernetes_conn_id="kube_chaos",
            deferrable=mode == "deferred",
            timeout=300,
        )


if __name__ == "__main__":
    dag.test()
