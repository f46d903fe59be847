"""Chaos DAGs: one KfpRunOperator each (sync, deferred), so the KFP requests a test sees are its own.

The task process is SIGKILLed at a chosen point; one quick retry is the attempt that must find
the run instead of submitting another. ``seconds`` comes from the trigger conf.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

for deferrable in (False, True):
    mode = "deferred" if deferrable else "sync"
    with DAG(
        dag_id=f"chaos_crash_{mode}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["kfp-bridge-chaos"],
        default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=1)},
    ) as dag:
        KfpRunOperator(
            task_id=mode,
            pipeline="chaos_pipelines/nap.yaml",
            params={"seconds": 1.0},
            experiment="kfp-bridge-chaos",
            kfp_conn_id="kfp_chaos",
            deferrable=deferrable,
            poll_interval=1,
        )
    globals()[dag.dag_id] = dag
