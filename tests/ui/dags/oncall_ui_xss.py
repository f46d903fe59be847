"""UI test DAG: the two-step pipeline with its KFP run named from the DAG run's conf (XSS test)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kfp import KfpRunOperator

with DAG(
    dag_id="oncall_ui_xss",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-test"],
    default_args={"retries": 0},
) as dag:
    KfpRunOperator(
        task_id="train",
        pipeline="oncall_pipelines/two_step.yaml",
        params={
            "counter_path": "{{ dag_run.conf['work'] }}/xss.counter",
            "flag_path": "{{ dag_run.conf['work'] }}/xss.flag",
            "label": "xss",
        },
        # KFP stores and returns the display name as given: text from KFP the page must escape.
        run_name="{{ dag_run.conf['run_name'] }}",
        experiment="kfp-bridge-oncall",
        poll_interval=1,
    )

if __name__ == "__main__":
    dag.test()
