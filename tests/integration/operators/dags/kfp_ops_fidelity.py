"""Test DAG for KFP 2.17 fidelity: failing steps named by pipeline path (nested, ParallelFor),
cached steps reported as cached, and a timed-out task terminated by Airflow (files under conf['work'])."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

COUNTER = "{{ dag_run.conf['work'] }}/"

with DAG(
    dag_id="kfp_ops_fidelity",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    common = {"experiment": "kfp-bridge-tests", "kfp_conn_id": "kfp_ops", "poll_interval": 1}
    KfpRunOperator(
        task_id="nested", pipeline="kfp_ops_pipelines/nested.yaml",
        params={"counter_path": COUNTER + "nested.counter"}, **common,
    )
    KfpRunOperator(
        task_id="loop", pipeline="kfp_ops_pipelines/loop.yaml", deferrable=True,
        params={"counter_path": COUNTER + "loop.counter"}, **common,
    )
    KfpRunOperator(
        task_id="cached", pipeline="kfp_ops_pipelines/counted.yaml", on_rerun="new_run",
        params={"counter_path": COUNTER + "cached.counter"}, **common,
    )
    KfpRunOperator(
        task_id="uncached", pipeline="kfp_ops_pipelines/counted.yaml", enable_caching=False,
        params={"counter_path": COUNTER + "uncached.counter", "label": "u"}, **common,
    )
    for deferrable in (False, True):
        KfpRunOperator(
            task_id="timeout_deferred" if deferrable else "timeout_sync",
            pipeline="kfp_ops_pipelines/sleeper.yaml",
            params={"seconds": 600.0},
            timeout=20,
            deferrable=deferrable,
            **common,
        )


if __name__ == "__main__":
    dag.test()
