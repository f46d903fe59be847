"""Pure InferenceService status model, wait conditions, storage URIs and merge patches."""

from __future__ import annotations

import pytest

from kfp_bridge.utils import kserve_status as ks


def _obj(*, generation=2, observed=2, traffic=(), created="r2", ready="r2", rolled="r1", model="UpToDate",
         failure=None, annotations=None, conditions=None):
    model_status = {"transitionStatus": model}
    if failure:
        model_status["lastFailureInfo"] = failure
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": generation, "resourceVersion": "7",
                     "annotations": annotations or {}},
        "status": {
            "observedGeneration": observed,
            "url": "http://m",
            "conditions": conditions or [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {
                "latestCreatedRevision": created, "latestReadyRevision": ready, "latestRolledoutRevision": rolled,
                "traffic": [{"revisionName": r, "percent": p, "latestRevision": latest, **({"tag": t, "url": f"http://{t}"} if t else {})}
                            for r, p, latest, t in traffic],
            }},
            "modelStatus": model_status,
        },
    }


CANARY = [("r2", 20, True, "latest"), ("r1", 80, False, "prev")]


def test_parse_and_share():
    st = ks.IsvcStatus.from_object(_obj(traffic=CANARY))
    assert st.is_ready and st.mode == ks.KNATIVE
    assert (st.share("r2"), st.share("r1"), st.share("r9")) == (20, 80, 0)
    assert st.sole_revision() is None
    assert st.tag_url("latest") == "http://latest" and st.tag_url("nope") == ""
    assert "r2=20% [latest]" in st.traffic_summary()


def test_sole_revision_sums_targets_of_one_revision():
    st = ks.IsvcStatus.from_object(_obj(traffic=[("r1", 0, True, "latest"), ("r1", 100, False, "prev")]))
    assert st.sole_revision() == "r1"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"annotations": {ks.MODE_ANNOTATION: "RawDeployment"}}}, ks.STANDARD),
        ({"metadata": {"annotations": {ks.MODE_ANNOTATION: "Serverless"}}}, ks.KNATIVE),
        ({"metadata": {}, "status": {"deploymentMode": "Standard"}}, ks.STANDARD),
        ({"metadata": {}, "status": {"components": {"predictor": {"latestCreatedRevision": "r1"}}}}, ks.KNATIVE),
        ({"metadata": {}}, ks.STANDARD),
    ],
)
def test_deployment_mode(obj, expected):
    assert ks.deployment_mode(obj) == expected


def test_spec_failure_reads_model_status_and_predictor_ready():
    invalid = _obj(model="InvalidSpec", failure={"reason": "NoSupportingRuntime", "message": "no runtime"})
    assert ks.IsvcStatus.from_object(invalid).spec_failure() == "NoSupportingRuntime: no runtime"
    load = _obj(conditions=[{"type": "PredictorReady", "status": "False", "reason": "RevisionFailed"}])
    assert ks.IsvcStatus.from_object(load).spec_failure() is None  # a load failure, judged per revision
    assert ks.IsvcStatus.from_object(_obj()).spec_failure() is None


def test_failing_pod_ignores_old_pods_and_running_ones():
    def pod(name, labels, waiting=None, init=False):
        cs = [{"name": "storage-initializer" if init else "kserve-container",
               "state": {"waiting": {"reason": waiting}} if waiting else {"running": {}}}]
        key = "initContainerStatuses" if init else "containerStatuses"
        return {"metadata": {"name": name, "labels": labels}, "status": {key: cs}}

    pods = [pod("a", {"pod-template-hash": "old"}, "CrashLoopBackOff"), pod("b", {"pod-template-hash": "new"})]
    assert ks.failing_pod(pods, {"old"}) is None
    pods.append(pod("c", {}, "ImagePullBackOff", init=True))  # no hash label: the name tells
    assert "new pod c container 'storage-initializer' is in ImagePullBackOff" in ks.failing_pod(pods, {"old"})
    assert ks.failing_pod(pods, {"old", "c"}) is None
    assert ks.pod_key({"metadata": {"name": "x"}}) == "x"


@pytest.mark.parametrize("uri", ["file:///m/v1", "/m/v1", "s3://b/m", "gs://b/m", "pvc://claim/m", "https://h/m.joblib"])
def test_storage_uri_accepted(uri):
    assert ks.validate_storage_uri(uri) == uri


@pytest.mark.parametrize(("uri", "match"), [
    ("", "non-empty"), (None, "non-empty"), ("ftp://h/m", "unsupported scheme"), ("relative/dir", "unsupported scheme"),
    ("file://m/v1", "absolute path"), ("s3://", "no bucket"), ("/m/ v1", "whitespace"),
])
def test_storage_uri_rejected(uri, match):
    with pytest.raises(ValueError, match=match):
        ks.validate_storage_uri(uri)


def test_storage_field_and_merge_patch():
    old = {"sklearn": {"storageUri": "s3://b/1"}}
    assert ks.storage_field(old) == "sklearn" and ks.storage_uri(old) == "s3://b/1"
    assert ks.storage_field({"model": {"storageUri": "x"}}) == "model"
    current = {"model": {"storageUri": "new", "modelFormat": {"name": "sklearn"}, "extra": 1}, "canaryTrafficPercent": 20}
    target = {"model": {"storageUri": "old", "modelFormat": {"name": "sklearn"}}, "canaryTrafficPercent": 0}
    assert ks.merge_patch_to(current, target) == {"model": {"storageUri": "old", "extra": None}, "canaryTrafficPercent": 0}
    assert ks.merge_patch_to({"a": 1}, {}) == {"a": None}
