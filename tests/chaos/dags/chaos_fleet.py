"""Chaos DAG: 50 deferred KfpRunOperators (one mapped task) whose runs wait for a gate file.

No retries: a task that loses its trigger's event or fails spuriously must show up as failed.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

FLEET = 50

with DAG(
    dag_id="chaos_fleet",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-chaos"],
    max_active_tasks=FLEET + 10,
    default_args={"retries": 0},
) as dag:
    KfpRunOperator.partial(
        task_id="fleet",
        pipeline="chaos_pipelines/nap.yaml",
        experiment="kfp-bridge-chaos",
        kfp_conn_id="kfp_chaos",
        deferrable=True,
        poll_interval=2,
    ).expand(params=[{"seconds": 0.5, "gate_path": "", "fail": i % 10 == 9} for i in range(FLEET)])


if __name__ == "__main__":
    dag.test()
