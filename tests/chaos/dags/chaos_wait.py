"""Chaos DAGs: long waits, sync and deferred, one run of each that succeeds and one that fails.

``chaos_wait`` talks to the session KFP stand-in (outage, token rotation); ``chaos_restart`` to
the stand-in that the restart test stops and starts again (one retry, which must resume the same
run). ``seconds`` comes from the trigger conf.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

for dag_id, conn_id, retries in (("chaos_wait", "kfp_chaos", 0), ("chaos_restart", "kfp_chaos_restart", 1)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["kfp-bridge-chaos"],
        default_args={"retries": retries, "retry_delay": pendulum.duration(seconds=2)},
    ) as dag:
        for deferrable in (False, True):
            for fail in (False, True):
                KfpRunOperator(
                    task_id=("deferred" if deferrable else "sync") + ("_fails" if fail else ""),
                    pipeline="chaos_pipelines/nap.yaml",
                    params={"seconds": 1.0, "fail": fail},
                    experiment="kfp-bridge-chaos",
                    kfp_conn_id=conn_id,
                    deferrable=deferrable,
                    poll_interval=1,
                )
    globals()[dag_id] = dag
