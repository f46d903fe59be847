"""Chaos DAGs for scenario g (tests/chaos/test_triggerer_ha.py): 25 deferred canary rollouts and 50
deferred KfpRunOperators, all held by one triggerer when the test kills it.

Two DAGs so the test can defer the rollouts first (their canary models are FIFOs it releases after
the kill, so they wait as long as it likes) and start the KFP runs last: those are the stand-in's
admin-only synthetic runs (a timer, no process per run), and their clock starts at creation.
Every run is named ``chaos-ha-<map index>`` so the test can make one in ten FAILED by name.

Both get one retry, only for tries Airflow itself fails ("state mismatch": its resume-after-defer
race, or a task process that could not reach the api-server on a saturated machine;
tests/chaos/conftest.py ``state_mismatch_tries``); the test fails a succeeding task's try failed
for any other reason. A KFP task whose run fails retries that same run (KFP's retry; the test
makes synthetic runs short by then) and fails again.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator

KFP_WAITS = 50
ROLLOUTS = 25
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]

with DAG(
    dag_id="chaos_ha_rollouts",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-chaos"],
    max_active_tasks=ROLLOUTS + 5,
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=2)},
) as rollouts_dag:
    KServeRolloutOperator.partial(
        task_id="rollout",
        namespace="default",
        canary_traffic_percent=20,
        smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]},
        kubernetes_conn_id="kube_chaos",
        deferrable=True,
        timeout=1800,
    ).expand_kwargs(
        [
            {
                "inference_service": "{{ dag_run.conf['prefix'] }}-" + str(i),
                "storage_uri": "file://{{ dag_run.conf['model_root'] }}/" + str(i),
            }
            for i in range(ROLLOUTS)
        ]
    )

with DAG(
    dag_id="chaos_ha_kfp",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-chaos"],
    max_active_tasks=KFP_WAITS + 5,
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=2)},
) as kfp_dag:
    KfpRunOperator.partial(
        task_id="kfp",
        pipeline="chaos_pipelines/nap.yaml",
        experiment="kfp-bridge-chaos-ha",
        run_name="chaos-ha-{{ ti.map_index }}",
        kfp_conn_id="kfp_chaos_ha",
        deferrable=True,
        poll_interval=2,
    ).expand(params=[{"seconds": 0.5, "gate_path": "", "fail": False} for _ in range(KFP_WAITS)])


if __name__ == "__main__":
    kfp_dag.test()
