"""UI test DAG: a failing step inside a nested pipeline (sync task) and inside one ParallelFor
iteration (deferrable task), each with a Kubernetes connection for its executor log tails."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

WORK = "{{ dag_run.conf['work'] }}/"

with DAG(
    dag_id="oncall_ui_nested",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    for name, deferrable in (("nested", False), ("loop", True)):
        KfpRunOperator(
            task_id=name,
            pipeline=f"oncall_nested_pipelines/{name}.yaml",
            params={"counter_path": WORK + f"{name}.counter", "flag_path": WORK + f"{name}.flag"},
            experiment="kfp-bridge-oncall",
            kubernetes_conn_id="kube_oncall_logs",
            deferrable=deferrable,
            poll_interval=1,
        )


if __name__ == "__main__":
    dag.test()
