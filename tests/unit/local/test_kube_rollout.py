"""KServe status rules (contracts C.5), checked against the walk-through table step by step.

Upstream: kserve v0.20.0 ``pkg/apis/serving/v1beta1/inference_service_status.go`` (PropagateStatus,
PropagateRawStatus, UpdateModelTransitionStatus) and
``pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go`` (traffic targets).
"""

from __future__ import annotations

import pytest

from kfp_bridge.local.kube import deployments
from kfp_bridge.local.kube.rollout import (
    InvalidSpec,
    Revision,
    Urls,
    bookkeeping,
    deployment_mode,
    desired_traffic,
    invalid_status,
    knative_status,
    standard_status,
)

URLS = Urls("m", "default")
R1, R2, R3 = "m-predictor-00001", "m-predictor-00002", "m-predictor-00003"


def reconcile(status, revisions, canary, *, generation=1, tag=False):
    """Reconcile until the status stops changing, as the controller does on its own status events."""
    history = []
    for _ in range(10):
        new = knative_status(
            status, generation=generation, revisions=revisions, canary=canary, tag=tag, urls=URLS, now="t"
        )
        if new == status:
            return status, history
        history.append(new)
        status = new
    pytest.fail("status never converged")


def traffic(status):
    return sorted(
        (t["revisionName"], t["latestRevision"], t["percent"], t.get("tag"))
        for t in status["components"]["predictor"].get("traffic", [])
    )


def rolled(status):
    p = status["components"]["predictor"]
    return p["latestRolledoutRevision"], p["previousRolledoutRevision"]


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.fixture
def step1():
    status, _ = reconcile({}, [Revision(R1, "Ready")], None)
    return status


def test_step1_create(step1):
    assert traffic(step1) == [(R1, True, 100, None)]
    assert rolled(step1) == (R1, "")
    assert cond(step1, "Ready")["status"] == "True"
    assert step1["modelStatus"]["transitionStatus"] == "UpToDate"
    assert [c["type"] for c in step1["conditions"]] == sorted(c["type"] for c in step1["conditions"])
    assert cond(step1, "RoutesReady")["severity"] == "Info" and "severity" not in cond(step1, "Ready")


def test_step2_canary_waits_for_the_new_revision_then_splits(step1):
    loading, _ = reconcile(step1, [Revision(R1, "Ready"), Revision(R2, "Loading")], 10, generation=2)
    # Knative keeps routing the latest share to the last ready revision meanwhile.
    assert traffic(loading) == [(R1, False, 90, "prev"), (R1, True, 10, None)]
    assert loading["components"]["predictor"]["latestCreatedRevision"] == R2
    assert cond(loading, "Ready")["status"] == "Unknown" and cond(loading, "IngressReady")["status"] == "True"
    assert loading["modelStatus"]["transitionStatus"] == "InProgress"
    ready, _ = reconcile(loading, [Revision(R1, "Ready"), Revision(R2, "Ready")], 10, generation=2)
    assert traffic(ready) == [(R1, False, 90, "prev"), (R2, True, 10, None)]
    assert rolled(ready) == (R1, "")
    assert ready["components"]["predictor"]["latestReadyRevision"] == R2


@pytest.fixture
def step2(step1):
    status, _ = reconcile(step1, [Revision(R1, "Ready"), Revision(R2, "Ready")], 10, generation=2)
    return status


@pytest.mark.parametrize("promote", [None, 100])
def test_step3a_promote(step2, promote):
    status, _ = reconcile(step2, [Revision(R1, "Ready"), Revision(R2, "Ready")], promote, generation=3)
    assert traffic(status) == [(R2, True, 100, None)]
    assert rolled(status) == (R2, R1)


def test_step3b_pin_previous(step2):
    status, _ = reconcile(step2, [Revision(R1, "Ready"), Revision(R2, "Ready")], 0, generation=3)
    assert traffic(status) == [(R1, False, 100, "prev"), (R2, True, 0, None)]
    assert rolled(status)[0] == R1


def test_step3b_prime_zero_after_promoting(step2):
    revisions = [Revision(R1, "Ready"), Revision(R2, "Ready")]
    promoted, _ = reconcile(step2, revisions, None, generation=3)
    final, history = reconcile(promoted, revisions, 0, generation=4)
    # First reconcile: prev points at r2 (0 + 100 = 100 on r2), the rollback rule resets latestRolledout.
    assert traffic(history[0]) == [(R2, False, 100, "prev"), (R2, True, 0, None)]
    assert rolled(history[0])[0] == R1
    assert traffic(final) == [(R1, False, 100, "prev"), (R2, True, 0, None)]
    assert rolled(final)[0] == R1


def test_canary_on_first_creation_has_no_effect():
    status, history = reconcile({}, [Revision(R1, "Ready")], 30)
    assert traffic(history[0]) == [(R1, True, 100, None)]
    # Afterwards the split is over the same revision: r1 still gets everything.
    assert {t[0] for t in traffic(status)} == {R1} and sum(t[2] for t in traffic(status)) == 100


def test_tag_routing_adds_latest_tag_and_urls(step1):
    status, _ = reconcile(step1, [Revision(R1, "Ready"), Revision(R2, "Ready")], 20, generation=2, tag=True)
    targets = {t["tag"]: t for t in status["components"]["predictor"]["traffic"]}
    assert targets["latest"]["url"] == "http://latest-m-predictor.default.example.com"
    assert targets["latest"]["revisionName"] == R2
    assert targets["prev"]["url"] == "http://prev-m-predictor.default.example.com"
    assert targets["prev"]["revisionName"] == R1


def test_single_full_target_carries_the_latest_tag():
    """S3: ksvc_reconciler.go's blue-green branch tags the one 100 % target ``latest`` too."""
    status, _ = reconcile({}, [Revision(R1, "Ready")], None, tag=True)
    assert traffic(status) == [(R1, True, 100, "latest")]
    assert status["components"]["predictor"]["traffic"][0]["url"] == URLS.tag("latest")


def test_urls_are_host_names_as_kserve_writes_them(step1):
    """S4: status.url is http://<isvc>.<ns>.<domain>; the component URL is the predictor's ksvc host."""
    assert step1["url"] == "http://m.default.example.com"
    assert step1["address"]["url"] == "http://m.default.svc.cluster.local"
    assert step1["components"]["predictor"]["url"] == "http://m-predictor.default.example.com"


def test_observed_generation_is_the_knative_service_generation(step1):
    """S1: PropagateStatus copies serviceStatus.ObservedGeneration; the caller passes the ksvc's."""
    status, _ = reconcile(step1, [Revision(R1, "Ready")], None, generation=7)
    assert status["observedGeneration"] == 7


def test_stopped_condition_is_false_and_informational(step1):
    """S6: controller.go sets Stopped False unless the stop annotation is set."""
    assert cond(step1, "Stopped")["status"] == "False" and cond(step1, "Stopped")["severity"] == "Info"


def test_invalid_spec_touches_only_model_status(step1):
    """S5: predictor.go UpdateModelTransitionStatus(InvalidSpec, NoSupportingRuntime) then returns."""
    invalid = InvalidSpec("NoSupportingRuntime", "No runtime found to support specified framework/version")
    status = invalid_status(step1, invalid, "later")
    assert status["modelStatus"]["transitionStatus"] == "InvalidSpec"
    assert status["modelStatus"]["lastFailureInfo"]["reason"] == "NoSupportingRuntime"
    assert status["modelStatus"]["states"]["targetModelState"] == "FailedToLoad"
    assert status["components"] == step1["components"] and status["conditions"] == step1["conditions"]
    fresh = invalid_status({}, invalid, "t")
    assert {c["type"]: c["status"] for c in fresh["conditions"]} == {
        "IngressReady": "Unknown", "PredictorReady": "Unknown", "Ready": "Unknown"
    }


def test_failed_load_keeps_previous_serving(step1):
    status, _ = reconcile(step1, [Revision(R1, "Ready"), Revision(R2, "Failed", "boom")], None, generation=2)
    assert traffic(status) == [(R1, True, 100, None)]
    assert cond(status, "PredictorReady")["status"] == "False"
    assert (
        cond(status, "PredictorReady")["reason"] == "RevisionFailed"
        and "boom" in cond(status, "PredictorReady")["message"]
    )
    assert cond(status, "RoutesReady")["status"] == "True"
    assert cond(status, "LatestDeploymentReady")["reason"] == "PredictorConfigurationReady not ready"
    model = status["modelStatus"]
    assert model["transitionStatus"] == "BlockedByFailedLoad"
    assert (
        model["lastFailureInfo"]["reason"] == "ModelLoadFailed"
        and model["lastFailureInfo"]["message"] == "boom"
    )
    assert model["states"]["activeModelState"] == "Loaded"
    assert status["components"]["predictor"]["latestCreatedRevision"] == R2


def test_every_traffic_entry_has_the_keys_isvc_watch_reads(step2):
    for target in step2["components"]["predictor"]["traffic"]:
        assert {"latestRevision", "percent", "revisionName"} <= set(target)


def test_bookkeeping_ignores_targets_that_are_not_the_latest_ready():
    traffic_ = [{"revisionName": R1, "latestRevision": True, "percent": 100}]
    assert bookkeeping({"latestRolledoutRevision": R1}, traffic_, R1, R2) == (R1, "")


def test_desired_traffic_without_anything_rolled_out_is_blue_green():
    assert desired_traffic(10, "", True) == [{"latestRevision": True, "percent": 100, "tag": "latest"}]
    assert desired_traffic(100, R1, False) == [{"latestRevision": True, "percent": 100}]


def _deployment(pods, *, previous=None, generation=1, new_hash="h1", now_s=0.0, since=0.0):
    return deployments.deployment(
        isvc="m", namespace="default", uid="00000000-0000-0000-0000-000000000001", generation=generation,
        new_hash=new_hash, pods=pods, previous=previous, now="t", now_s=now_s, progress_deadline_s=600,
        progress_since_s=since,
    )


def test_standard_status_follows_the_deployment():
    """S2: PropagateRawStatus — Available=True keeps PredictorReady True through a rolling update;
    observedGeneration is the Deployment's."""
    done = _deployment([deployments.Pod("m-predictor-h1-x", "h1", True)])
    status = standard_status({}, deployment=done, failure="", urls=URLS, now="t")
    assert {c["type"] for c in status["conditions"]} == {"PredictorReady", "IngressReady", "Ready", "Stopped"}
    assert cond(status, "PredictorReady")["reason"] == "NewReplicaSetAvailable"
    assert status["components"]["predictor"] == {"url": "http://m-predictor-default.example.com"}
    assert status["url"] == "http://m-default.example.com" and status["observedGeneration"] == 1
    rolling = _deployment(
        [deployments.Pod("m-predictor-h1-x", "h1", True), deployments.Pod("m-predictor-h2-x", "h2", False, 2, "CrashLoopBackOff")],
        previous=done, generation=2, new_hash="h2",
    )
    assert rolling["status"]["updatedReplicas"] == 1 and rolling["status"]["replicas"] == 2
    assert rolling["status"]["availableReplicas"] == 1 and rolling["status"]["unavailableReplicas"] == 1
    crashing = standard_status(status, deployment=rolling, failure="bad", urls=URLS, now="t2")
    assert cond(crashing, "Ready")["status"] == "True"  # kserve#4626: the old pod stays Available
    assert crashing["observedGeneration"] == 2
    assert crashing["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert cond(crashing, "Ready")["lastTransitionTime"] == "t"  # unchanged conditions keep their time


def test_progress_deadline_exceeded_turns_predictor_ready_false():
    """S2: progress.go marks Progressing False/ProgressDeadlineExceeded; PropagateRawStatus takes it."""
    done = _deployment([deployments.Pod("a", "h1", True)])
    pods = [deployments.Pod("a", "h1", True), deployments.Pod("b", "h2", False)]
    early = _deployment(pods, previous=done, generation=2, new_hash="h2", now_s=10)
    late = _deployment(pods, previous=early, generation=2, new_hash="h2", now_s=700)
    progressing = {c["type"]: c for c in late["status"]["conditions"]}["Progressing"]
    assert progressing["status"] == "False" and progressing["reason"] == "ProgressDeadlineExceeded"
    status = standard_status({}, deployment=late, failure="", urls=URLS, now="t")
    assert cond(status, "PredictorReady")["reason"] == "ProgressDeadlineExceeded"
    assert cond(status, "Ready")["status"] == "False"


@pytest.mark.parametrize(
    ("annotation", "mode"),
    [
        (None, "Knative"),
        ("Serverless", "Knative"),
        ("RawDeployment", "Standard"),
        ("Standard", "Standard"),
        ("knative", "Knative"),
    ],
)
def test_deployment_mode_normalises_legacy_names(annotation, mode):
    annotations = {"serving.kserve.io/deploymentMode": annotation} if annotation else {}
    assert deployment_mode({"metadata": {"annotations": annotations}}) == mode
