"""Test DAG for a multi-user KFP reached through connections without a namespace (fidelity.md K9):
``kfp_mu_asked`` leaves it to the server to say so (sync task), ``kfp_mu_declared`` has the extra
``multi_user`` (deferrable task). Both tasks must fail before anything is created."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="kfp_ops_multi_user",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    for conn_id, deferrable in (("kfp_mu_asked", False), ("kfp_mu_declared", True)):
        KfpRunOperator(
            task_id=conn_id.removeprefix("kfp_mu_"),
            pipeline="kfp_ops_pipelines/sleeper.yaml",
            params={"seconds": 1.0},
            experiment="kfp-bridge-multi-user",
            kfp_conn_id=conn_id,
            deferrable=deferrable,
            poll_interval=1,
        )


if __name__ == "__main__":
    dag.test()
