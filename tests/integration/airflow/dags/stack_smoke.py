"""Smoke DAG for the Airflow stack tests: a Bash task, then a task that defers to the triggerer.

The deferring operator resumes on a worker through ``execute_complete``, the same path the
bridge's own operators take. (``WaitSensor(deferrable=True)`` would not do: it ends inside the
triggerer and, in Airflow 3.3.2, fails under ``airflow dags test`` for lack of execute_complete.)
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator


class DeferThenReturn(BaseOperator):
    def __init__(self, *, seconds: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds

    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=self.seconds)), method_name="execute_complete")

    def execute_complete(self, context, event=None):
        return f"resumed after trigger event {event}"


with DAG(
    "kfp_bridge_stack_smoke",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kfp-bridge-tests"],
) as dag:
    hello = BashOperator(task_id="hello", bash_command="echo hello-from-bash")
    wait = DeferThenReturn(task_id="wait", seconds=5)
    hello >> wait


if __name__ == "__main__":
    dag.test()
