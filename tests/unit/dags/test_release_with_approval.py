"""dags/release_with_approval.py is wired so that only an Approve promotes and anything else rolls back."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.standard.operators.empty import EmptyOperator

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
        "promote": KServePromoteOperator, "rollback": KServeRollbackOperator, "outcome": EmptyOperator,
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


def test_the_run_fails_when_any_step_failed_and_succeeds_on_an_answer(dag):
    """The rollback (all_done, skips with nothing to roll back) must not be the only leaf: a run whose
    training failed would end "success". ``outcome`` needs promote and rollback to have not failed."""
    outcome = dag.get_task("outcome")
    assert outcome.trigger_rule == "none_failed"
    assert outcome.upstream_task_ids == {"promote", "rollback"}
    assert [t.task_id for t in dag.tasks if not t.downstream_task_ids] == ["outcome"]
