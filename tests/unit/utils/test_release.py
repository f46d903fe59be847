"""The recorded canary and the promote/rollback decisions: pure, from InferenceService objects."""

from __future__ import annotations

import copy
import json

import pytest

from kfp_bridge.utils import kserve_status as ks
from kfp_bridge.utils import release as rel
from kfp_bridge.utils import rollout as ro

OLD, NEW = "file:///models/v1", "file:///models/v2"


def _isvc(*, uri=NEW, canary=20, generation=2, traffic=(("r1", 80), ("r2", 20)), created="r2", ready="r2",
          mode="Knative", env=None):
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    if env is not None:
        predictor["model"]["env"] = env
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {
        "metadata": {"name": "iris", "namespace": "ns", "generation": generation, "resourceVersion": "41",
                     "annotations": {ks.MODE_ANNOTATION: mode}},
        "spec": {"predictor": predictor},
        "status": {
            "url": "http://iris.ns.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {
                "latestCreatedRevision": created, "latestReadyRevision": ready,
                "traffic": [{"revisionName": r, "percent": p} for r, p in traffic],
            }} if mode == "Knative" else {},
        },
    }


def _rollout(mode="Knative", canary=True) -> ro.Rollout:
    previous = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": OLD}}
    return ro.Rollout(
        name="iris", namespace="ns", mode=mode, target_uri=NEW, previous_uri=OLD, previous_predictor=previous,
        previous_revision="r1" if mode == "Knative" else "", canary=canary, percent=20 if canary else None,
        new_revision="r2" if mode == "Knative" else "", phase=ro.Phase.DONE, smoke="passed",
        smoke_url="http://latest-iris-predictor.ns.example.com",
    )


@pytest.fixture
def record() -> rel.CanaryRecord:
    return rel.record_canary(_rollout(), _isvc())


# ---- the record -----------------------------------------------------------------------------------
def test_record_carries_uris_revisions_traffic_smoke_and_generation_but_no_spec(record):
    data = record.to_json()
    assert (data["previous_uri"], data["target_uri"], data["previous_revision"], data["new_revision"]) == (
        OLD, NEW, "r1", "r2")
    assert (data["canary"], data["percent"], data["smoke"], data["generation"], data["resource_version"]) == (
        True, 20, "passed", 2, "41")
    assert data["traffic"] == [{"revision": "r1", "percent": 80}, {"revision": "r2", "percent": 20}]
    # JSON, and it round-trips (XCom keeps JSON).
    assert rel.CanaryRecord.from_json(json.loads(json.dumps(data))) == record


def test_record_keeps_no_predictor_value_only_its_fingerprint():
    secret = "s3cr3t-value-in-env"
    obj = _isvc(env=[{"name": "AWS_SECRET_ACCESS_KEY", "value": secret}])
    data = rel.record_canary(_rollout(), obj).to_json()
    assert secret not in json.dumps(data)
    assert data["fingerprint"] == rel.predictor_fingerprint(obj["spec"]["predictor"])


def test_fingerprint_ignores_what_a_rollout_changes_and_sees_everything_else():
    base = _isvc()["spec"]["predictor"]
    moved = copy.deepcopy(base)
    moved["model"]["storageUri"] = OLD
    moved.pop("canaryTrafficPercent")
    assert rel.predictor_fingerprint(moved) == rel.predictor_fingerprint(base)
    other = copy.deepcopy(base)
    other["model"]["runtime"] = "other"
    assert rel.predictor_fingerprint(other) != rel.predictor_fingerprint(base)


def test_the_whole_rollout_return_value_is_accepted(record):
    assert rel.CanaryRecord.from_json({"outcome": "canary", "recorded": record.to_json()}) == record


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"outcome": "promoted", "recorded": None}, "only KServeRolloutOperator\\(promote=False\\) records one"),
        ("not a dict", "must be the return value of KServeRolloutOperator\\(promote=False\\)"),
        ({"kind": "something"}, "must be the return value"),
        ({"kind": rel.RECORD_KIND, "version": 99}, "record version 99"),
    ],
)
def test_bad_records_are_refused_with_the_fix(value, match):
    with pytest.raises(ValueError, match=match):
        rel.CanaryRecord.from_json(value, "rollout")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("inference_service", "Iris!", "not an InferenceService name"),
        ("namespace", "NS_1", "not a Kubernetes namespace"),
        ("target_uri", "ftp://x/y", "target_uri: storage_uri"),
        ("percent", 120, "incomplete"),
        ("generation", "2", "incomplete"),
        ("canary", "yes", "incomplete"),
    ],
)
def test_bad_record_fields_are_named(record, key, value, match):
    data = record.to_json()
    data[key] = value
    with pytest.raises(ValueError, match=match):
        rel.CanaryRecord.from_json(data, "task 'canary'")


def test_missing_field_is_named(record):
    data = record.to_json()
    del data["fingerprint"]
    with pytest.raises(ValueError, match="incomplete.*fingerprint"):
        rel.CanaryRecord.from_json(data)


# ---- the view -------------------------------------------------------------------------------------
def test_untouched_canary_is_as_recorded(record):
    assert rel.release_view(record, _isvc()).state is rel.ReleaseState.AS_RECORDED


def test_promoted_settled_and_in_flight(record):
    done = rel.release_view(record, _isvc(canary=None, generation=3, traffic=(("r2", 100),)))
    assert (done.state, done.settled) == (rel.ReleaseState.PROMOTED, True)
    flight = rel.release_view(record, _isvc(canary=None, generation=3))
    assert (flight.state, flight.settled) == (rel.ReleaseState.PROMOTED, False)


def test_rolled_back_settled_pinned_and_unsettled(record):
    back = rel.release_view(record, _isvc(uri=OLD, canary=None, generation=4, traffic=(("r3", 100),), created="r3",
                                          ready="r3"))
    assert back.state is rel.ReleaseState.ROLLED_BACK
    pinned = rel.release_view(record, _isvc(uri=OLD, canary=0, generation=4, traffic=(("r1", 100), ("r3", 0)),
                                            created="r3", ready="r3"))
    assert (pinned.state, pinned.settled) == (rel.ReleaseState.ROLLING_BACK, False)
    pin_only = rel.release_view(record, _isvc(canary=0, generation=3, traffic=(("r1", 100), ("r2", 0))))
    assert pin_only.state is rel.ReleaseState.ROLLING_BACK


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        (_isvc(uri="file:///models/v3", canary=20, generation=3, created="r3", ready="r3"), "storageUri is file:///models/v3"),
        (_isvc(created="r3", ready="r3", generation=3), "revision r3 was created after the recorded canary r2"),
        (_isvc(canary=50, generation=3, traffic=(("r1", 50), ("r2", 50))), "canaryTrafficPercent is 50"),
        (_isvc(env=[{"name": "X", "value": "1"}], generation=3), "predictor spec changed"),
        (_isvc(mode="Standard"), "Standard mode"),
    ],
    ids=["other-uri", "other-revision", "other-percent", "other-spec", "other-mode"],
)
def test_changes_since_the_record_are_named(record, obj, says):
    view = rel.release_view(record, obj)
    assert view.state is rel.ReleaseState.CHANGED
    assert says in view.detail and "generation" in view.detail


def test_same_spec_with_a_new_generation_is_still_as_recorded(record):
    # e.g. the canary percent set to 50 and back to 20: nothing differs from what was approved.
    assert rel.release_view(record, _isvc(generation=5)).state is rel.ReleaseState.AS_RECORDED


# ---- the decisions --------------------------------------------------------------------------------
def test_promote_decisions(record):
    step = rel.promote_step(record, rel.release_view(record, _isvc()))
    assert step == ro.PatchStep(ro.Phase.PROMOTE, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    settled = rel.release_view(record, _isvc(canary=None, generation=3, traffic=(("r2", 100),)))
    assert isinstance(rel.promote_step(record, settled), rel.AlreadyDone)
    assert isinstance(rel.promote_step(record, rel.release_view(record, _isvc(canary=None))), ro.PatchStep)
    gone = rel.promote_step(record, rel.release_view(record, _isvc(uri=OLD, canary=None, traffic=(("r3", 100),),
                                                                  created="r3", ready="r3")))
    assert isinstance(gone, rel.Refuse) and "the canary is gone" in gone.reason
    changed = rel.promote_step(record, rel.release_view(record, _isvc(created="r3", ready="r3")))
    assert isinstance(changed, rel.Refuse) and "changed since the canary was recorded" in changed.reason


def test_rollback_decisions(record):
    assert rel.rollback_step(record, rel.release_view(record, _isvc())) == ro.PatchStep(
        ro.Phase.ROLLBACK_PIN, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    back = rel.release_view(record, _isvc(uri=OLD, canary=None, traffic=(("r3", 100),), created="r3", ready="r3"))
    assert isinstance(rel.rollback_step(record, back), rel.AlreadyDone)
    pinned = rel.release_view(record, _isvc(uri=OLD, canary=0, traffic=(("r1", 100), ("r3", 0)), created="r3"))
    assert rel.rollback_step(record, pinned) == ro.PatchStep(ro.Phase.ROLLBACK_RESTORE, None)
    promoted = rel.rollback_step(record, rel.release_view(record, _isvc(canary=None, traffic=(("r2", 100),))))
    assert isinstance(promoted, rel.Refuse) and "already promoted" in promoted.reason
    changed = rel.rollback_step(record, rel.release_view(record, _isvc(uri="file:///x/v9")))
    assert isinstance(changed, rel.Refuse) and "Nothing was changed" in changed.reason


def test_standard_mode_record_promotes_to_nothing_and_rolls_back_by_restoring():
    obj = _isvc(mode="Standard", canary=None)
    record = rel.record_canary(_rollout(mode="Standard", canary=False), obj)
    view = rel.release_view(record, obj)
    assert isinstance(rel.promote_step(record, view), rel.AlreadyDone)
    assert rel.rollback_step(record, view) == ro.PatchStep(ro.Phase.ROLLBACK_RESTORE, None)


def test_unchanged_rollout_has_nothing_to_decide():
    obj = _isvc(canary=None, traffic=(("r2", 100),))
    record = rel.unchanged_record(obj, "ns")
    view = rel.release_view(record, obj)
    assert rel.promote_step(record, view) == rel.rollback_step(record, view) == rel.AlreadyDone(
        "unchanged", f"the rollout changed nothing ({NEW} already served)")


def test_rollout_from_record_restores_the_previous_predictor_for_the_rollback_patch(record):
    obj = _isvc()
    rollout = rel.rollout_from_record(record, obj, deadline=100.0)
    assert rollout.previous_predictor == {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": OLD}}
    assert (rollout.new_revision, rollout.previous_revision, rollout.patched) == ("r2", "r1", True)
    # The rollout's own rollback patch: the previous storageUri back, pinned, on top of the current spec.
    assert ro.rollback_patch(rollout, obj) == {
        "spec": {"predictor": {"model": {"storageUri": OLD}, "canaryTrafficPercent": 0}}}


def test_an_approved_promotion_is_not_rolled_back_on_kill():
    r = _rollout()
    r.phase = ro.Phase.PROMOTE
    assert r.kill_rolls_back()
    r.approved = True
    assert not r.kill_rolls_back()
    r.phase = ro.Phase.ROLLBACK_PIN
    assert r.kill_rolls_back()
    assert ro.Rollout.from_json(json.loads(json.dumps(r.to_json()))).approved is True


def test_approval_body_shows_model_traffic_smoke_and_kfp_link(record):
    body = rel.approval_body(record, {"run_id": "abc-1", "url": "http://kfp/#/runs/details/abc-1"})
    assert f"`{NEW}` (revision `r2`)" in body and f"`{OLD}` (revision `r1`)" in body
    assert "`r1` 80 %, `r2` 20 %" in body
    assert "passed against `http://latest-iris-predictor.ns.example.com`" in body
    assert "[abc-1](http://kfp/#/runs/details/abc-1)" in body
    assert "**Reject** (also the answer when nobody responds in time)" in body


def test_approval_body_escapes_table_breaking_values(record):
    odd = rel.CanaryRecord(**{**record.__dict__, "target_uri": "s3://b/a|b`c"})
    body = rel.approval_body(odd, {"run_id": "x", "url": "javascript:alert(1)"})
    assert "`s3://b/a\\|b'c`" in body
    assert "javascript:" not in body and "`x`" in body
