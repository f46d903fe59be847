"""Pure parts of the KServe rollout operator: trigger serialization, argument checks, kill stop."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from kfp_bridge.operators.kserve import KServeRolloutError, KServeRolloutOperator
from kfp_bridge.triggers.kserve import KServeRolloutTrigger
from kfp_bridge.utils import rollout as ro


def test_trigger_round_trip_is_json():
    rollout = ro.Rollout(
        name="m", namespace="ns", mode="Knative", target_uri="/v2", previous_uri="/v1",
        previous_predictor={"model": {"storageUri": "/v1"}}, previous_revision="r1",
        condition=ro.NewRevision("r1", "r1", 20),
    )
    trigger = KServeRolloutTrigger(
        name="m",
        namespace="ns",
        kubernetes_conn_id="k",
        condition=ro.condition_to_json(rollout.condition),
        deadline=123.0,
        rollout=rollout.to_json(),
    )
    path, kwargs = trigger.serialize()
    assert path == "kfp_bridge.triggers.kserve.KServeRolloutTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert KServeRolloutTrigger(**kwargs).serialize() == (path, kwargs)
    assert ro.Rollout.from_json(kwargs["rollout"]) == rollout


# Every input is checked, rendered, before any connection or cluster call (acceptance 5; the
# integration test runs the same catalogue against the stand-in and checks resourceVersion).
BAD_ARGUMENTS = [
    ({"inference_service": "Bad_Name"}, "inference_service must be"),
    ({"inference_service": ""}, "inference_service must be"),
    ({"inference_service": "9starts-with-digit"}, "DNS-1035"),
    ({"inference_service": "a" * 64}, "at most 63"),
    ({"inference_service": None}, "inference_service must be"),
    ({"namespace": ""}, "render empty"),
    ({"namespace": "Bad NS"}, "namespace must be"),
    ({"canary_traffic_percent": 101}, "0 to 100"),
    ({"canary_traffic_percent": -1}, "0 to 100"),
    ({"canary_traffic_percent": True}, r"0 to 100.*\(bool\)"),
    ({"canary_traffic_percent": "20"}, r"0 to 100.*\(str\)"),
    ({"canary_traffic_percent": 20.0}, r"0 to 100.*\(float\)"),
    ({"storage_uri": ""}, "non-empty"),
    ({"storage_uri": "ftp://x/y"}, "unsupported scheme"),
    ({"storage_uri": 42}, "non-empty string"),
    ({"timeout": 0}, "positive"),
    ({"timeout": -5}, "positive"),
    ({"timeout": timedelta(0)}, "positive"),
    ({"timeout": "abc"}, r"timeout must be seconds.*\(str\)"),
    ({"timeout": True}, r"timeout must be seconds.*\(bool\)"),
    ({"timeout": float("nan")}, "positive"),
    ({"promote": "yes"}, r"promote must be True or False, got 'yes' \(str\)"),
    ({"promote": None}, "promote must be True or False"),
    ({"deferrable": "true"}, "deferrable must be True or False"),
    ({"ingress_address": "not a url"}, "ingress_address must be"),
    ({"ingress_address": "http://gw:80/path"}, "no path"),
    ({"kubernetes_conn_id": ""}, "kubernetes_conn_id must be"),
    ({"smoke_test": {"payload": "x"}}, r"smoke_test\['payload'\]"),
    ({"smoke_test": [1, 2]}, "smoke_test must be a dict"),
    ({"smoke_test": {"payload": {}, "path": "v1/models/{model}:predict"}}, r"smoke_test\['path'\].*\{model\}"),
    ({"smoke_test": {"payload": {}, "path": "v1/models/{name:predict"}}, r"smoke_test\['path'\]"),
    ({"smoke_test": {"payload": {}, "timeout": "10"}}, r"smoke_test\['timeout'\].*got '10' \(str\)"),
    ({"smoke_test": {"payload": {}, "expected_status": 200.0}}, r"smoke_test\['expected_status'\].*\(float\)"),
    ({"smoke_test": {"payload": {}, "allowed_values": 1}}, r"smoke_test\['allowed_values'\].*got 1 \(int\)"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_ARGUMENTS)
def test_argument_errors_need_no_cluster(kwargs, match):
    op = KServeRolloutOperator(task_id="t", **{"inference_service": "m", "storage_uri": "/m", **kwargs})
    with pytest.raises(ValueError, match=match):
        op._validate_arguments()


def test_constructor_is_declarative():
    op = KServeRolloutOperator(task_id="t", inference_service="m", storage_uri="{{ params.uri }}")
    assert (
        op.storage_uri == "{{ params.uri }}" and op.kubernetes_conn_id == "kubernetes_default" and op.promote
    )
    assert "ingress_address" in op.template_fields


def test_after_on_kill_the_interrupted_code_makes_no_further_change():
    """on_kill runs in the SIGTERM handler; the code it interrupted must not patch (e.g. promote) after it."""
    op = KServeRolloutOperator(task_id="t", inference_service="m", storage_uri="/m")
    op.on_kill()  # nothing planned yet: no cluster call, but the operator is now stopped
    op._rollout = ro.Rollout(
        name="m", namespace="ns", mode="Knative", target_uri="/m", previous_uri="/o", previous_predictor={}
    )
    with pytest.raises(KServeRolloutError, match="killed"):
        op._apply(None, ro.PatchStep(ro.Phase.PROMOTE, {}))  # type: ignore[arg-type]
    assert op._rollout.phase is ro.Phase.ROLLOUT
