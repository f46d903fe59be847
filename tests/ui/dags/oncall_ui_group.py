"""UI test DAG: the two-step pipeline as a KfpPipelineTaskGroup (one Airflow task per KFP step)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.task_groups.kfp import KfpPipelineTaskGroup

with DAG(
    dag_id="oncall_ui_group",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    KfpPipelineTaskGroup(
        "pipeline",
        pipeline="oncall_pipelines/two_step.yaml",
        params={
            "counter_path": "{{ dag_run.conf['work'] }}/group.counter",
            "flag_path": "{{ dag_run.conf['work'] }}/group.flag",
            "label": "group",
        },
        experiment="kfp-bridge-oncall",
        poll_interval=1,
        mirror_poke_interval=1,
        mirror_mode="poke",
    )
