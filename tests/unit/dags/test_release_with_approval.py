"""dags/release_with_approval.py is wired so that only an Approve promotes and anything else rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import (
    CanaryApprovalOperator,
    KServePromoteOperator,
    KServeRollbackOperator,
)

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "release_with_approval.py"


@pytest.fixture(scope="module")
def dag():
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags["release_with_approval"]


def test_the_chain_and_the_operators(dag):
    kinds = {t.task_id: type(t) for t in dag.tasks}
    assert kinds == {
        "train": KfpRunOperator, "canary": KServeRolloutOperator, "approve": CanaryApprovalOperator,
        "promote": KServePromoteOperator, "rollback": KServeRollbackOperator,
    }
    for upstream, downstream in [("train", "canary"), ("canary", "approve"), ("approve", "promote"),
                                 ("promote", "rollback")]:
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_the_canary_waits_for_the_decision_and_no_answer_is_reject(dag):
    assert dag.get_task("canary").promote is False
    approve = dag.get_task("approve")
    assert approve.defaults == ["Reject"] and approve.response_timeout is not None
    assert (approve.rollout_task_id, approve.kfp_task_id) == ("canary", "train")


def test_rollback_runs_unless_the_promotion_succeeded(dag):
    rollback, promote = dag.get_task("rollback"), dag.get_task("promote")
    assert rollback.trigger_rule == "all_done" and rollback.skip_if_succeeded == "promote"
    assert rollback.rollout_task_id == promote.rollout_task_id == "canary"
    rollback._check_upstream("rollout_task_id", "canary")
    rollback._check_upstream("skip_if_succeeded", "promote")
    promote._check_upstream("rollout_task_id", "canary")
