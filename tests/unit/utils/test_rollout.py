"""The typed rollout state machine: wait conditions, the saved form, and the pure decisions."""

from __future__ import annotations

import json

import pytest

from kfp_bridge.utils import kserve_status as ks
from kfp_bridge.utils import rollout as ro


def _isvc(*, generation=5, observed=1, traffic=(), created="r2", ready="r2", rolled="r1", model="UpToDate",
          failure=None, conditions=None, mode="Knative", spec=None):
    model_status = {"transitionStatus": model}
    if failure:
        model_status["lastFailureInfo"] = failure
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": generation, "resourceVersion": "7",
                     "annotations": {ks.MODE_ANNOTATION: mode}},
        "spec": spec or {"predictor": {"model": {"storageUri": "/v2"}}},
        "status": {
            # observedGeneration is the child's counter (S1): deliberately unrelated to generation here.
            "observedGeneration": observed,
            "url": "http://m.ns.example.com",
            "conditions": conditions or [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {
                "latestCreatedRevision": created, "latestReadyRevision": ready, "latestRolledoutRevision": rolled,
                "traffic": [{"revisionName": r, "percent": p, "latestRevision": latest,
                             **({"tag": t, "url": f"http://{t}-m-predictor.ns.example.com"} if t else {})}
                            for r, p, latest, t in traffic],
            }},
            "modelStatus": model_status,
        },
    }


def _snap(**kwargs) -> ro.Snapshot:
    obj = _isvc(**kwargs)
    return ro.Snapshot(ks.IsvcStatus.from_object(obj), isvc_object=obj)


def _deployment(*, generation=3, observed=3, replicas=2, updated=2, available=2, total=2, progressing=None):
    return {
        "metadata": {"name": "m-predictor", "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "isvc.m-predictor"}}},
        "status": {
            "observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [{"type": "Progressing", "status": "False" if progressing else "True",
                            "reason": progressing or "NewReplicaSetAvailable", "message": "m"}],
        },
    }


def _pod(hash_: str, waiting: str | None = None) -> dict:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {"metadata": {"name": f"m-predictor-{hash_}-x", "labels": {"pod-template-hash": hash_}},
            "status": {"containerStatuses": [{"name": "kserve-container", "state": state, "restartCount": 4,
                                              "lastState": {"terminated": {"message": "cannot unpickle"}}}]}}


def _std(dep=None, pods=(), **kwargs) -> ro.Snapshot:
    obj = _isvc(mode="Standard", traffic=(), created="", ready="", rolled="", **kwargs)
    return ro.Snapshot(ks.IsvcStatus.from_object(obj), ks.DeploymentStatus.from_object(dep or _deployment()),
                       tuple(pods), obj)


CANARY = [("r2", 20, True, "latest"), ("r1", 80, False, "prev")]


# ---- Knative: the revision fields, never observedGeneration (S1) ------------------------------------
def test_canary_is_live_when_a_new_revision_is_ready_with_its_share_whatever_observed_generation_says():
    cond = ro.NewRevision(created_before="r1", previous="r1", percent=20)
    assert ro.evaluate(cond, _snap(traffic=CANARY, observed=1, generation=5)).done
    assert ro.evaluate(cond, _snap(traffic=CANARY, observed=9, generation=2)).done


def test_canary_waits_until_latest_created_moves_past_the_recorded_one():
    # Ready and 100% on r1, observedGeneration == generation: the old state, not the change.
    cond = ro.NewRevision(created_before="r1", previous="r1", percent=20)
    old = _snap(created="r1", ready="r1", traffic=[("r1", 100, True, None)], observed=5, generation=5)
    assert not ro.evaluate(cond, old).final
    # Created but not ready: Knative still sends the latest share to r1.
    loading = _snap(created="r2", ready="r1", traffic=[("r1", 20, True, "latest"), ("r1", 80, False, "prev")])
    assert not ro.evaluate(cond, loading).final
    # Ready, but the route has not moved yet.
    assert not ro.evaluate(cond, _snap(traffic=[("r2", 0, True, "latest"), ("r1", 100, False, "prev")])).final


def test_failed_load_of_the_new_revision_fails_the_wait():
    failed = _snap(created="r2", ready="r1", model="BlockedByFailedLoad",
                   failure={"reason": "ModelLoadFailed", "message": "cannot unpickle", "modelRevisionName": "r2"},
                   traffic=[("r1", 100, True, None)])
    verdict = ro.evaluate(ro.NewRevision("r1", "r1", 20), failed)
    assert verdict.failure == "ModelLoadFailed: cannot unpickle"


@pytest.mark.parametrize("reason", sorted(ks.SPEC_FAILURE_REASONS))
def test_a_spec_kserve_refuses_fails_fast_without_a_new_revision(reason):
    refused = _snap(created="r1", ready="r1", traffic=[("r1", 100, True, None)], conditions=[
        {"type": "Ready", "status": "False"},
        {"type": "PredictorReady", "status": "False", "reason": reason, "message": "no runtime for onnx"}])
    verdict = ro.evaluate(ro.NewRevision("r1", "r1", 20), refused)
    assert verdict.failure == f"PredictorReady is False ({reason}): no runtime for onnx"
    # The same refusal already there before the patch belongs to the old spec: keep waiting.
    stale = ro.NewRevision("r1", "r1", 20, spec_failure_before=verdict.failure)
    assert not ro.evaluate(stale, refused).final


def test_invalid_spec_model_status_fails_fast():
    snap = _snap(created="r1", ready="r1", model="InvalidSpec",
                 failure={"reason": "NoSupportingRuntime", "message": "Specified runtime does not support"})
    assert ro.evaluate(ro.Serving(""), snap).failure == "NoSupportingRuntime: Specified runtime does not support"


def test_serving_conditions():
    promoted = _snap(traffic=[("r2", 100, True, None)])
    assert ro.evaluate(ro.Serving("r2"), promoted).done
    assert not ro.evaluate(ro.Serving("r1"), promoted).done
    assert ro.evaluate(ro.Serving(""), promoted).done  # the latest created, ready, at 100%
    assert not ro.evaluate(ro.Serving(""), _snap(ready="r1", traffic=[("r1", 100, True, None)])).done
    pinned = _snap(traffic=[("r2", 0, True, "latest"), ("r1", 100, False, "prev")])
    assert ro.evaluate(ro.Serving("r1"), pinned).done


# ---- Standard: the Deployment as kubectl rollout status decides (S2) ---------------------------------
def test_standard_waits_for_kserve_to_update_the_deployment():
    cond = ro.DeploymentRollout("m-predictor", generation_before=3)
    # Complete, Ready, model UpToDate, but still generation 3: the change has not reached the Deployment.
    assert not ro.evaluate(cond, _std(_deployment(generation=3, observed=3))).final
    assert ro.evaluate(cond, _std(_deployment(generation=4, observed=4))).done


@pytest.mark.parametrize(("dep", "why"), [
    (_deployment(generation=4, observed=3), "spec update to be observed"),
    (_deployment(generation=4, observed=4, updated=1), "1 of 2 new replicas updated"),
    (_deployment(generation=4, observed=4, total=3), "1 old replicas pending termination"),
    (_deployment(generation=4, observed=4, available=1), "1 of 2 updated replicas available"),
])
def test_standard_rollout_in_progress_is_not_done_although_kserve_says_ready(dep, why):
    snap = _std(dep)
    assert snap.isvc.is_ready and snap.isvc.transition_status == "UpToDate"  # what KServe reports (#4626)
    assert not ro.evaluate(ro.DeploymentRollout("m-predictor", 3), snap).final
    assert why in snap.deployment.rollout_state()[2]


def test_standard_progress_deadline_and_crash_loop_fail():
    late = _std(_deployment(generation=4, observed=4, updated=1, progressing="ProgressDeadlineExceeded"))
    assert "exceeded its progress deadline" in ro.evaluate(ro.DeploymentRollout("m-predictor", 3), late).failure
    in_progress = _deployment(generation=4, observed=4, updated=1, available=2, total=3)
    pods = [_pod("old"), _pod("old"), _pod("new", "CrashLoopBackOff")]
    verdict = ro.evaluate(ro.DeploymentRollout("m-predictor", 3, old_pods=("old",)), _std(in_progress, pods))
    assert verdict.failure.startswith("new pod m-predictor-new-x container 'kserve-container' is in CrashLoopBackOff")
    assert "cannot unpickle" in verdict.failure
    # A crash-looping pod that was there before the patch is not the new model's.
    assert not ro.evaluate(ro.DeploymentRollout("m-predictor", 3, old_pods=("old", "new")),
                           _std(in_progress, pods)).final


def test_deployment_replicas_default_to_one():
    dep = _deployment()
    del dep["spec"]["replicas"]
    assert ks.DeploymentStatus.from_object(dep).spec_replicas == 1
    assert ks.DeploymentStatus.from_object(dep).label_selector() == "app=isvc.m-predictor"


# ---- the saved rollout -------------------------------------------------------------------------------
def test_rollout_json_round_trip_for_every_condition():
    for condition in (ro.NewRevision("r1", "r1", 20, "x"), ro.Serving("r2"),
                      ro.DeploymentRollout("m-predictor", 4, ("a", "b"))):
        r = ro.Rollout(name="m", namespace="ns", mode="Knative", target_uri="/v2", previous_uri="/v1",
                       previous_predictor={"model": {"storageUri": "/v1"}}, phase=ro.Phase.PROMOTE,
                       patch={"spec": {}}, condition=condition, patched=True, deadline=1.5)
        data = json.loads(json.dumps(r.to_json()))
        assert ro.Rollout.from_json(data) == r


def test_the_pre_typed_saved_state_is_still_read():
    legacy = {
        "name": "m", "namespace": "ns", "mode": "Knative", "canary": True, "percent": 20, "target_uri": "/v2",
        "previous_uri": "/v1", "previous_predictor": {"model": {"storageUri": "/v1"}},
        "previous_revision": "m-predictor-00001", "new_revision": "", "deadline": 99.0, "phase": "rollout",
        "patch": {"spec": {}}, "condition": {"kind": "canary", "percent": 20, "previous": "m-predictor-00001"},
        "wait": {"kind": "canary", "percent": 20, "previous": "m-predictor-00001", "generation": 2},
    }
    r = ro.Rollout.from_json(legacy)
    assert (r.phase, r.patched, r.canary) == (ro.Phase.ROLLOUT, True, True)
    assert r.condition == ro.NewRevision("m-predictor-00001", "m-predictor-00001", 20)
    assert not ro.Rollout.from_json({**legacy, "wait": None}).patched
    std = ro.Rollout.from_json({**legacy, "mode": "Standard", "condition": {"kind": "standard"}})
    assert std.condition == ro.DeploymentRollout("m-predictor", None)
    assert ro.condition_from_json({"kind": "sole", "previous": "r1"}) == ro.Serving("")
    assert ro.condition_from_json({"kind": "pinned", "previous": "r1"}) == ro.Serving("r1")
    with pytest.raises(ValueError, match="unknown wait condition"):
        ro.condition_from_json({"kind": "nope"})


# ---- planning and decisions --------------------------------------------------------------------------
def _rollout(mode="Knative", **kwargs) -> ro.Rollout:
    base = dict(name="m", namespace="ns", mode=mode, target_uri="/v2", previous_uri="/v1",
                previous_predictor={"model": {"storageUri": "/v1"}}, previous_revision="r1" if mode == "Knative" else "",
                canary=mode == "Knative", percent=20 if mode == "Knative" else None)
    return ro.Rollout(**{**base, **kwargs})


def test_plan_knative_canary_and_standard_direct():
    obj = _isvc(created="r1", ready="r1", traffic=[("r1", 100, True, None)],
                spec={"predictor": {"model": {"storageUri": "/v1"}}})
    rollout, patch = ro.plan(obj, "ns", "/v2", 20, 100.0)
    assert (rollout.canary, rollout.percent, rollout.previous_revision) == (True, 20, "r1")
    assert patch["spec"]["predictor"] == {"model": {"storageUri": "/v2"}, "canaryTrafficPercent": 20}
    std = _isvc(mode="Standard", spec={"predictor": {"model": {"storageUri": "/v1"}}})
    rollout, patch = ro.plan(std, "ns", "/v2", 20, 100.0)
    assert (rollout.canary, rollout.percent) == (False, None)
    assert patch == {"spec": {"predictor": {"model": {"storageUri": "/v2"}}}}
    assert ro.plan(std, "ns", "/v1", None, 100.0) is None
    with pytest.raises(ro.RolloutRefused, match="no single serving revision"):
        ro.plan(_isvc(traffic=CANARY), "ns", "/v3", 20, 1.0)


def test_conditions_are_built_from_the_state_read_before_the_patch():
    before = _snap(created="r1", ready="r1", traffic=[("r1", 100, True, None)])
    r = _rollout()
    assert ro.condition_for(r, ro.Phase.ROLLOUT, before, {"spec": {"predictor": {}}}) == ro.NewRevision("r1", "r1", 20)
    direct = _rollout(canary=False, percent=None)
    assert ro.condition_for(direct, ro.Phase.ROLLOUT, before, {}).percent == 100
    r.new_revision = "r2"
    assert ro.condition_for(r, ro.Phase.PROMOTE, before, {}) == ro.Serving("r2")
    assert ro.condition_for(r, ro.Phase.ROLLBACK_PIN, before, {}) == ro.Serving("r1")
    restore = {"spec": {"predictor": {"model": {"storageUri": "/v1"}, "canaryTrafficPercent": 0}}}
    after_canary = _snap(created="r2", ready="r2", traffic=[("r2", 0, True, "latest"), ("r1", 100, False, "prev")])
    assert ro.condition_for(r, ro.Phase.ROLLBACK_RESTORE, after_canary, restore) == ro.NewRevision("r2", "r1", 0)
    # The rollout never reached Knative (refused spec): only the pin changes, no revision will come.
    pin_only = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert ro.condition_for(r, ro.Phase.ROLLBACK_RESTORE, before, pin_only) == ro.Serving("r1")
    assert ro.condition_for(r, ro.Phase.ROLLBACK_RELEASE, before, {}) == ro.Serving("")


def test_standard_condition_records_the_deployment_generation_and_old_pods():
    before = _std(_deployment(generation=7, observed=7), pods=[_pod("aaa"), _pod("aaa")])
    cond = ro.condition_for(_rollout("Standard"), ro.Phase.ROLLOUT, before, {"spec": {"predictor": {"model": {}}}})
    assert cond == ro.DeploymentRollout("m-predictor", 7, ("aaa",))
    # A patch that leaves the predictor alone will not move the Deployment: no change to wait for.
    assert ro.condition_for(_rollout("Standard"), ro.Phase.ROLLOUT, before, {"metadata": {}}).generation_before is None


def test_rollback_patch_restores_previous_predictor_pinned():
    current = {"spec": {"predictor": {"model": {"storageUri": "/v2"}, "canaryTrafficPercent": 20}}}
    assert ro.rollback_patch(_rollout(), current) == {
        "spec": {"predictor": {"model": {"storageUri": "/v1"}, "canaryTrafficPercent": 0}}
    }
    assert ro.rollback_patch(_rollout("Standard"), current) == {
        "spec": {"predictor": {"model": {"storageUri": "/v1"}, "canaryTrafficPercent": None}}
    }


def test_decisions_after_each_wait():
    r = _rollout()
    assert isinstance(ro.after_wait(r, True, "")[1], ro.SmokeTest)
    failed, step = ro.after_wait(r, False, "HTTP 403 Forbidden")
    assert step == ro.PatchStep(ro.Phase.ROLLBACK_PIN, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    assert failed.reason == "the new model did not become live: HTTP 403 Forbidden" and r.reason == ""
    assert ro.after_wait(_rollout("Standard"), False, "x")[1] == ro.PatchStep(ro.Phase.ROLLBACK_RESTORE, None)
    assert ro.after_wait(_rollout(phase=ro.Phase.PROMOTE), True, "")[1] == ro.Finish("promoted")
    assert ro.after_wait(_rollout(phase=ro.Phase.PROMOTE), False, "x")[1].phase is ro.Phase.ROLLBACK_PIN
    # An unverified pin still goes on to restore the previous spec.
    assert ro.after_wait(_rollout(phase=ro.Phase.ROLLBACK_PIN), False, "x")[1].phase is ro.Phase.ROLLBACK_RESTORE
    release = ro.after_wait(_rollout(phase=ro.Phase.ROLLBACK_RESTORE), True, "")[1]
    assert release == ro.PatchStep(ro.Phase.ROLLBACK_RELEASE, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert ro.after_wait(_rollout("Standard", phase=ro.Phase.ROLLBACK_RESTORE), True, "")[1] == ro.RolledBack("")
    assert "not verified: t/o" in ro.after_wait(_rollout(phase=ro.Phase.ROLLBACK_RESTORE), False, "t/o")[1].note
    assert ro.after_wait(_rollout(phase=ro.Phase.ROLLBACK_RELEASE), True, "")[1] == ro.RolledBack("")


def test_decisions_after_the_smoke_test():
    r = _rollout()
    assert ro.after_smoke(r, [], "u", True)[1].phase is ro.Phase.PROMOTE
    assert ro.after_smoke(r, [], "u", False)[1] == ro.Finish("canary")
    assert ro.after_smoke(_rollout(canary=False), [], "u", True)[1] == ro.Finish("rolled_out")
    failed, step = ro.after_smoke(r, ["HTTP 500"], "http://u", True)
    assert step.phase is ro.Phase.ROLLBACK_PIN and failed.reason == "smoke test failed against http://u: HTTP 500"


def test_phases_and_undone_while_away():
    assert [p for p in ro.Phase if p.unfinished] == [ro.Phase.ROLLOUT, ro.Phase.PROMOTE, ro.Phase.ROLLBACK_PIN]
    assert [p for p in ro.Phase if p.terminal] == [ro.Phase.DONE, ro.Phase.ROLLED_BACK]
    restored = {"spec": {"predictor": {"model": {"storageUri": "/v1"}}}}
    assert ro.undone_while_away(_rollout(patched=True), restored)
    assert not ro.undone_while_away(_rollout(patched=False), restored)
    assert not ro.undone_while_away(_rollout(patched=True), {"spec": {"predictor": {"model": {"storageUri": "/v2"}}}})


def test_api_error_text_has_status_and_message_only():
    class ApiException(Exception):
        status, reason = 403, "Forbidden"
        body = json.dumps({"kind": "Status", "message": 'inferenceservices is forbidden: cannot list'})
        headers = {"Authorization": "Bearer secret"}

    assert ro.api_error(ApiException()) == "HTTP 403 Forbidden: inferenceservices is forbidden: cannot list"
    assert ro.api_error(ValueError("x")) == "ValueError: x"
