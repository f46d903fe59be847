"""Pure parts of the KServe rollout: trigger serialization, rollback patch, argument checks."""

from __future__ import annotations

import json

import pytest

from kfp_bridge.operators.kserve import KServeRolloutOperator, rollback_patch
from kfp_bridge.triggers.kserve import KServeRolloutTrigger


def test_trigger_round_trip_is_json():
    trigger = KServeRolloutTrigger(
        name="m",
        namespace="ns",
        kubernetes_conn_id="k",
        condition={"kind": "canary", "percent": 20, "previous": "r1", "generation": 2},
        deadline=123.0,
        rollout={"phase": "rollout", "previous_predictor": {"a": 1}},
    )
    path, kwargs = trigger.serialize()
    assert path == "kfp_bridge.triggers.kserve.KServeRolloutTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert KServeRolloutTrigger(**kwargs).serialize() == (path, kwargs)


def test_rollback_patch_restores_previous_predictor_pinned():
    rollout = {"mode": "Knative", "previous_predictor": {"model": {"storageUri": "file:///v1"}}}
    current = {"spec": {"predictor": {"model": {"storageUri": "file:///v2"}, "canaryTrafficPercent": 20}}}
    assert rollback_patch(rollout, current) == {
        "spec": {"predictor": {"model": {"storageUri": "file:///v1"}, "canaryTrafficPercent": 0}}
    }
    standard = {**rollout, "mode": "Standard"}
    assert rollback_patch(standard, current) == {
        "spec": {"predictor": {"model": {"storageUri": "file:///v1"}, "canaryTrafficPercent": None}}
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inference_service": "Bad_Name"}, "DNS-1123"),
        ({"canary_traffic_percent": 101}, "0 to 100"),
        ({"canary_traffic_percent": True}, "0 to 100"),
        ({"storage_uri": "ftp://x/y"}, "unsupported scheme"),
        ({"smoke_test": {"payload": "x"}}, "payload"),
        ({"timeout": 0}, "positive"),
    ],
)
def test_argument_errors_need_no_cluster(kwargs, match):
    op = KServeRolloutOperator(task_id="t", **{"inference_service": "m", "storage_uri": "/m", **kwargs})
    with pytest.raises(ValueError, match=match):
        op._validate_arguments()


def test_constructor_is_declarative():
    op = KServeRolloutOperator(task_id="t", inference_service="m", storage_uri="{{ params.uri }}")
    assert (
        op.storage_uri == "{{ params.uri }}" and op.kubernetes_conn_id == "kubernetes_default" and op.promote
    )


def test_restore_condition_waits_for_the_pinned_restored_revision():
    from kfp_bridge.operators.kserve import restore_condition

    assert restore_condition({"mode": "Knative", "previous_revision": "m-predictor-00001"}) == {
        "kind": "canary",
        "percent": 0,
        "previous": "m-predictor-00001",
    }
    assert restore_condition({"mode": "Standard", "previous_revision": ""}) == {"kind": "standard"}


def test_after_on_kill_the_interrupted_code_makes_no_further_change():
    """on_kill runs in the SIGTERM handler; the code it interrupted must not patch (e.g. promote) after it."""
    from kfp_bridge.operators.kserve import KServeRolloutError

    op = KServeRolloutOperator(task_id="t", inference_service="m", storage_uri="/m")
    op.on_kill()  # nothing planned yet: no cluster call, but the operator is now stopped
    op._rollout = {"phase": "rollout", "name": "m", "namespace": "ns"}
    with pytest.raises(KServeRolloutError, match="killed"):
        op._apply(None, "promote", {}, {"kind": "sole"})  # type: ignore[arg-type]
    assert op._rollout["phase"] == "rollout"
