"""Test DAG: the two-step pipeline mapped over three parameter sets (files under conf['work'])."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

WORK = "{{ dag_run.conf['work'] }}"

with DAG(
    dag_id="kfp_ops_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    KfpRunOperator.partial(
        task_id="mapped",
        pipeline="kfp_ops_pipelines/two_step.yaml",
        experiment="kfp-bridge-tests",
        kfp_conn_id="kfp_ops",
        deferrable=True,
        poll_interval=1,
    ).expand(
        params=[
            {"counter_path": f"{WORK}/m{i}.counter", "flag_path": f"{WORK}/m{i}.flag", "label": f"set-{i}"}
            for i in range(3)
        ]
    )


if __name__ == "__main__":
    dag.test()
