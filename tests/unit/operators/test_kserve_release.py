"""KServePromoteOperator / KServeRollbackOperator / CanaryApprovalOperator: argument checks before any
cluster call, the DAG wiring checks, and what a kill does to an approved promotion."""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG

from kfp_bridge.operators import kserve as kserve_module
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import (
    CanaryApprovalOperator,
    KServePromoteOperator,
    KServeRollbackOperator,
)
from kfp_bridge.utils import rollout as ro
from tests.unit.utils.test_release import _isvc, _rollout


def _record() -> dict:
    from kfp_bridge.utils import release

    return release.record_canary(_rollout(), _isvc()).to_json()


class _NoCluster(dict):
    """A context whose task_state_store must never be written (nothing reached the cluster)."""

    def set(self, *_a, **_k):  # pragma: no cover - reaching it fails the test
        raise AssertionError("state saved: a side effect was about to happen")


BAD = [
    ({}, "needs exactly one of rollout_task_id .* got neither"),
    ({"rollout_task_id": "canary", "rollout": {}}, "got both"),
    ({"rollout_task_id": ""}, "rollout_task_id must be a task id"),
    ({"rollout": "{not json"}, "rollout is a string that is not JSON"),
    ({"rollout": {"outcome": "promoted", "recorded": None}}, "only KServeRolloutOperator\\(promote=False\\)"),
    ({"rollout": [1, 2]}, "must be the return value of KServeRolloutOperator"),
    ({"rollout": "RECORD", "timeout": 0}, "timeout must be positive"),
    ({"rollout": "RECORD", "timeout": "1h"}, "timeout must be seconds"),
    ({"rollout": "RECORD", "deferrable": "yes"}, "deferrable must be True or False"),
    ({"rollout": "RECORD", "kubernetes_conn_id": ""}, "kubernetes_conn_id must be"),
    ({"rollout": "RECORD", "kubernetes_conn_id": "no_such_kube"}, "connection 'no_such_kube' does not exist"),
]


@pytest.mark.parametrize("cls", [KServePromoteOperator, KServeRollbackOperator])
@pytest.mark.parametrize(("kwargs", "match"), BAD)
def test_bad_arguments_fail_before_any_cluster_call(cls, kwargs, match):
    kwargs = {k: (_record() if v == "RECORD" else v) for k, v in kwargs.items()}
    op = cls(task_id="t", **kwargs)
    with pytest.raises(ValueError, match=match):
        op.execute({"task_state_store": _NoCluster()})
    assert op._hook is None  # no client was built


def test_a_json_string_record_is_read():
    op = KServePromoteOperator(task_id="t", rollout=json.dumps(_record()))
    assert op._read_record({}).target_uri == "file:///models/v2"


def test_rollback_reason_and_skip_task_are_checked():
    with pytest.raises(ValueError, match="reason must be a string"):
        KServeRollbackOperator(task_id="t", rollout=_record(), reason=3).execute({"task_state_store": _NoCluster()})
    with pytest.raises(ValueError, match="skip_if_succeeded must be a task id"):
        KServeRollbackOperator(task_id="t", rollout=_record(), skip_if_succeeded="").execute(
            {"task_state_store": _NoCluster()})


def test_task_ids_must_be_upstream_in_the_dag():
    with DAG("release_wiring", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        canary = KServeRolloutOperator(task_id="canary", inference_service="m", storage_uri="/m", promote=False)
        promote = KServePromoteOperator(task_id="promote", rollout_task_id="canary")
        stray = KServePromoteOperator(task_id="stray", rollout_task_id="canary")
        rollback = KServeRollbackOperator(task_id="rollback", rollout_task_id="canary", skip_if_succeeded="stray")
        canary >> promote >> rollback
    promote._check_upstream("rollout_task_id", "canary")  # fine
    with pytest.raises(ValueError, match="rollout_task_id 'canary' is not upstream of 'stray'"):
        stray._validate_arguments()
    with pytest.raises(ValueError, match="skip_if_succeeded 'stray' is not upstream of 'rollback'"):
        rollback._validate_arguments()


def test_constructors_are_declarative_and_templated():
    op = KServePromoteOperator(task_id="p", rollout="{{ ti.xcom_pull('canary') }}")
    assert op.rollout == "{{ ti.xcom_pull('canary') }}" and op._hook is None
    assert set(KServePromoteOperator.template_fields) == {"rollout", "rollout_task_id"}
    assert "reason" in KServeRollbackOperator.template_fields
    assert KServePromoteOperator.state_key != KServeRolloutOperator.state_key  # own task_state_store key


def test_the_operators_are_importable_from_operators_kserve():
    assert kserve_module.KServePromoteOperator is KServePromoteOperator
    assert kserve_module.KServeRollbackOperator is KServeRollbackOperator
    with pytest.raises(AttributeError):
        kserve_module.NoSuchOperator  # noqa: B018


def test_a_kill_during_an_approved_promotion_leaves_it_for_the_retry():
    op = KServePromoteOperator(task_id="p", rollout=_record())
    r = _rollout()
    r.phase, r.approved = ro.Phase.PROMOTE, True
    op._rollout = r
    op.on_kill()  # no hook, no patch: would raise building a hook for a missing connection otherwise
    assert op._killed and op._hook is None


def test_approval_answers_reject_on_timeout_by_default():
    op = CanaryApprovalOperator(task_id="a", subject="s", rollout_task_id="canary",
                                response_timeout=timedelta(minutes=1))
    assert isinstance(op, ApprovalOperator)
    assert op.defaults == [ApprovalOperator.REJECT]


def test_a_pendulum_response_timeout_becomes_a_plain_timedelta_the_task_can_park_with():
    """Airflow 3.3 sends the timeout with the task's awaiting-input message, and that encoder refuses a
    pendulum Duration ("Objects of type <class 'pendulum.duration.Duration'> are not supported"): the
    approval task of dags/release_with_approval.py failed as it parked."""
    import pendulum
    from airflow.sdk.execution_time import comms

    def park_message(timeout: object) -> bytes:  # what the task runner sends its supervisor
        msg = comms.AwaitInputTask(timeout=timeout, next_method="execute_complete", next_kwargs={})
        return comms._RequestFrame(id=1, body=msg.model_dump()).as_bytes()

    with pytest.raises(NotImplementedError, match="pendulum.duration.Duration"):
        park_message(pendulum.duration(hours=4))  # the Airflow behaviour this works around
    op = CanaryApprovalOperator(task_id="a", subject="s", rollout_task_id="canary",
                                response_timeout=pendulum.duration(hours=4))
    assert type(op.response_timeout) is timedelta and op.response_timeout == timedelta(hours=4)
    assert park_message(op.response_timeout)


def test_the_result_after_a_deferral_comes_from_the_rollout_the_trigger_carried():
    """execute_complete runs on a new operator: no record, only the rollout from the event."""
    from kfp_bridge.utils import kserve_status as ks

    op = KServePromoteOperator(task_id="p", rollout_task_id="canary")
    op._rollout = ro.Rollout.from_json(_rollout().to_json())
    obj = _isvc(canary=None, traffic=(("r2", 100),))
    out = op._result(ks.IsvcStatus.from_object(obj), "promoted", obj)
    assert (out["previous_uri"], out["target_uri"], out["new_revision"], out["storage_uri"]) == (
        "file:///models/v1", "file:///models/v2", "r2", "file:///models/v2")
    assert out["traffic"] == [{"revision": "r2", "percent": 100, "tag": ""}]
