"""Train on Kubeflow Pipelines, put the model up as a 20% canary, and promote it only when a person approves.

``train`` (KFP) → ``canary`` (rollout with ``promote=False``: verified and smoke-tested, left at
20%) → ``approve`` (Airflow's Required Actions: the body shows the canary's model URI, traffic
split, smoke result and the KFP run link) → ``promote`` on Approve; ``rollback`` when the promotion
did not run: Reject, no answer within ``response_timeout`` (the default answer is Reject), or the
approval task failed. Promote and rollback read the canary the ``canary`` task recorded and refuse
to touch an InferenceService that changed since. ``outcome`` makes the run's state honest: failed
when any step failed (the rollback still ran), success on Approve and on Reject.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import (
    CanaryApprovalOperator,
    KServePromoteOperator,
    KServeRollbackOperator,
)

# The day a run trains for; `default(..., true)` also covers runs without a logical date.
RUN_DAY = "(data_interval_end | default(dag_run.run_after, true))"
MODEL_DIR = "{{ params.model_root }}/iris/{{ " + RUN_DAY + " | ds }}"

with DAG(
    dag_id="release_with_approval",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="Europe/Amsterdam"),
    catchup=False,
    tags=["kfp", "kserve", "approval", "example"],
    params={
        "model_root": Param("/tmp/kfp-bridge/models", type="string", description="where models are written"),
        "inference_service": Param("iris", type="string", description="the InferenceService to update"),
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    render_template_as_native_obj=True,
) as dag:
    train = KfpRunOperator(
        task_id="train",
        pipeline="pipelines/iris.yaml",
        experiment="iris",
        params={"model_dir": MODEL_DIR, "seed": "{{ " + RUN_DAY + ".day }}", "C": 1.0},
        deferrable=True,
        poll_interval=5,
        timeout=pendulum.duration(hours=2),
    )
    canary = KServeRolloutOperator(
        task_id="canary",
        inference_service="{{ params.inference_service }}",
        namespace="default",
        storage_uri=MODEL_DIR,
        canary_traffic_percent=20,
        smoke_test={
            "payload": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]},
            "expected_shape": [3],
            "allowed_values": [0, 1, 2],
        },
        promote=False,  # leave the verified canary for the decision
        deferrable=True,
        timeout=pendulum.duration(minutes=15),
    )
    approve = CanaryApprovalOperator(
        task_id="approve",
        subject="Promote the iris canary of {{ params.inference_service }}?",
        rollout_task_id="canary",
        kfp_task_id="train",
        response_timeout=pendulum.duration(hours=4),  # then the default answer, Reject, applies
        retries=0,
    )
    promote = KServePromoteOperator(task_id="promote", rollout_task_id="canary", deferrable=True)
    rollback = KServeRollbackOperator(
        task_id="rollback",
        rollout_task_id="canary",
        reason="promotion was not approved (rejected, timed out or the approval failed)",
        # Runs once promote is done whatever its state; skips itself when promote succeeded.
        skip_if_succeeded="promote",
        trigger_rule="all_done",
        deferrable=True,
    )
    # The rollback is an all_done clean-up and skips itself when there is nothing to roll back, so as
    # the last task it would end every run "success": a failed training, canary, approval or
    # promotion included. This leaf fails the run when anything before it failed; a Reject (or the
    # timeout's default Reject) is an answer, not a failure, and the run succeeds with the previous
    # model serving.
    outcome = EmptyOperator(task_id="outcome", trigger_rule="none_failed")
    train >> canary >> approve >> promote >> rollback
    [promote, rollback] >> outcome


if __name__ == "__main__":
    dag.test()
