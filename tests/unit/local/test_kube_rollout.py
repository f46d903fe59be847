"""KServe status rules (contracts C.5), checked against the walk-through table step by step."""

from __future__ import annotations

import pytest

from kfp_bridge.local.kube.rollout import (
    Revision,
    Urls,
    bookkeeping,
    deployment_mode,
    desired_traffic,
    knative_status,
    standard_status,
)

URLS = Urls("http://127.0.0.1:1/serving/default/m")
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
    assert targets["latest"]["url"] == f"{URLS.base}/tag/latest" and targets["latest"]["revisionName"] == R2
    assert targets["prev"]["url"] == f"{URLS.base}/tag/prev" and targets["prev"]["revisionName"] == R1


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
    assert desired_traffic(10, "", True) == [{"latestRevision": True, "percent": 100}]
    assert desired_traffic(100, R1, False) == [{"latestRevision": True, "percent": 100}]


def test_standard_status_has_no_revisions_or_traffic():
    status = standard_status({}, generation=2, serving=True, pending=None, urls=URLS, now="t")
    assert {c["type"] for c in status["conditions"]} == {"PredictorReady", "IngressReady", "Ready"}
    assert status["components"]["predictor"] == {"url": URLS.base}
    assert status["deploymentMode"] == "Standard"
    failed = standard_status(
        status, generation=3, serving=True, pending=Revision("d", "Failed", "bad"), urls=URLS, now="t2"
    )
    assert cond(failed, "Ready")["status"] == "True"  # the old Deployment stays Available
    assert failed["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert cond(failed, "Ready")["lastTransitionTime"] == "t"  # unchanged conditions keep their time


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
