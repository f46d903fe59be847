"""Release DAGs for the shared Airflow stack: canary → approval (Required Actions) → promote / rollback.

Wired as ``dags/release_with_approval.py`` (without the KFP training): the InferenceService and the
model come from ``dag_run.conf``. ``kserve_release_flow`` is answered Approve or Reject by the test
through the REST API; ``kserve_release_timeout`` is never answered (its 3 s timeout answers Reject);
``outcome`` fails the run when any step failed, as in the example. ``kserve_release_kill``'s promotion, on its first try, saves its state and then stops before the patch
(writing ``conf['marker']``) so that the test's SIGKILL lands exactly between approval and promotion.
Connection ``kube_ops`` is created by the test module through the REST API.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import (
    CanaryApprovalOperator,
    KServePromoteOperator,
    KServeRollbackOperator,
)

CONN_ID = "kube_ops"
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
SMOKE = {"payload": {"instances": ROWS}, "expected_shape": [3], "allowed_values": [0, 1, 2]}
START = pendulum.datetime(2026, 11, 1, tz="UTC")


class PausingPromote(KServePromoteOperator):
    """Try 1 stops after saving the promotion's state, before its patch, until the test kills it."""

    def _send(self, hook):  # type: ignore[no-untyped-def]
        import json
        import time
        from pathlib import Path

        context = self._context
        if context["ti"].try_number == 1 and self._rollout is not None:
            Path(context["dag_run"].conf["marker"]).write_text(json.dumps(self._rollout.to_json()))
            while True:  # the test SIGKILLs this process
                time.sleep(1)
        super()._send(hook)


def release_dag(dag_id: str, *, promote_cls: type[KServePromoteOperator] = KServePromoteOperator,
                response_timeout: timedelta | None = None) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, tags=["test"]) as dag:
        canary = KServeRolloutOperator(
            task_id="canary",
            inference_service="{{ dag_run.conf['isvc'] }}",
            storage_uri="{{ dag_run.conf['uri'] }}",
            namespace="default",
            canary_traffic_percent=20,
            smoke_test=SMOKE,
            promote=False,
            kubernetes_conn_id=CONN_ID,
            timeout=180,
        )
        approve = CanaryApprovalOperator(
            task_id="approve",
            subject="Promote the canary of {{ dag_run.conf['isvc'] }}?",
            body="Release test run {{ run_id }}.",
            rollout_task_id="canary",
            response_timeout=response_timeout,
        )
        promote = promote_cls(
            task_id="promote",
            rollout_task_id="canary",
            kubernetes_conn_id=CONN_ID,
            timeout=120,
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
        rollback = KServeRollbackOperator(
            task_id="rollback",
            rollout_task_id="canary",
            skip_if_succeeded="promote",
            trigger_rule="all_done",
            kubernetes_conn_id=CONN_ID,
            timeout=120,
        )
        outcome = EmptyOperator(task_id="outcome", trigger_rule="none_failed")
        canary >> approve >> promote >> rollback
        [promote, rollback] >> outcome
    return dag


flow = release_dag("kserve_release_flow")
timeout = release_dag("kserve_release_timeout", response_timeout=timedelta(seconds=3))
kill = release_dag("kserve_release_kill", promote_cls=PausingPromote)
