"""fidelity.md S1–S6: the kube stand-in behaves as KServe v0.20 and Kubernetes do, including the
inconvenient parts, seen through the real ``kubernetes`` client. Each test names its upstream file.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube_stand_in import (
    GROUP,
    PLURAL,
    VERSION,
    KubeStandIn,
    condition,
    predictor_status,
    release,
    slow_model,
    start_kube_stand_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
REVISION_HEADER = "x-kfp-bridge-revision"


def _predict(kube: KubeStandIn, host: str, name: str, http: httpx.Client | None = None) -> httpx.Response:
    own = http or httpx.Client(timeout=30)
    try:
        return own.post(f"{kube.ingress_url}/v1/models/{name}:predict", json={"instances": ROWS}, headers={"host": host})
    finally:
        if http is None:
            own.close()


class Load:
    """Requests in a background thread for as long as the block runs; counts who answered."""

    def __init__(self, kube: KubeStandIn, host: str, name: str):
        self.kube, self.host, self.name = kube, host, name
        self.served: Counter = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                resp = _predict(self.kube, self.host, self.name, http)
                if resp.status_code == 200:
                    self.served[resp.headers[REVISION_HEADER]] += 1
                else:
                    self.failures.append(f"{resp.status_code} {resp.text[:200]}")
                time.sleep(0.05)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_s1_observed_generation_is_the_knative_services(kube_stand_in, iris_models):
    """kserve ``pkg/apis/serving/v1beta1/inference_service_status.go`` PropagateStatus:
    ``ss.ObservedGeneration = serviceStatus.ObservedGeneration`` per component, predictor then
    transformer, so the last component's Knative Service generation wins; a spec edit that leaves a
    Knative Service unchanged does not move it."""
    name = "s1"
    kube_stand_in.create_isvc(name, iris_models.v1)
    obj = kube_stand_in.wait_condition(name, "Ready", timeout=180)
    assert (obj["metadata"]["generation"], obj["status"]["observedGeneration"]) == (1, 1)

    # Adding a transformer: a new Knative Service (generation 1) is written after the predictor's.
    transformer = {"containers": [{"name": "kserve-container", "image": "example/transformer:1"}]}
    obj = kube_stand_in.patch_isvc(name, {"spec": {"transformer": transformer}})
    assert obj["metadata"]["generation"] == 2
    time.sleep(1.0)  # the controller reconciles within milliseconds; nothing may move
    obj = kube_stand_in.get_isvc(name)
    assert obj["status"]["observedGeneration"] == 1 and condition(obj, "Ready") == "True"

    # A new model: the predictor's Knative Service moves to generation 2 and a new revision rolls
    # out, but the transformer's Knative Service (written last) still reports generation 1.
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"model": {"storageUri": f"file://{iris_models.v2}"}}}})
    obj = kube_stand_in.wait_for(
        name, lambda o: predictor_status(o).get("latestReadyRevision") == f"{name}-predictor-00002", timeout=180
    )
    assert obj["metadata"]["generation"] == 3 and obj["status"]["observedGeneration"] == 1
    assert predictor_status(obj)["latestCreatedRevision"] == f"{name}-predictor-00002"

    # Removing the transformer: the predictor's Knative Service (generation 2) is the last one.
    kube_stand_in.patch_isvc(name, {"spec": {"transformer": None}})
    obj = kube_stand_in.wait_for(name, lambda o: o["status"].get("observedGeneration") == 2, timeout=30)
    assert obj["metadata"]["generation"] == 4


@pytest.fixture(scope="module")
def short_deadline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandIn]:
    with start_kube_stand_in(
        tmp_path_factory.mktemp("kube-s2"), token="s2-token", env={"PROGRESS_DEADLINE_S": "20"}
    ) as stand_in:
        yield stand_in


def _deployment(kube: KubeStandIn, name: str) -> client.V1Deployment:
    return client.AppsV1Api(kube.api_client()).read_namespaced_deployment(f"{name}-predictor", "default")


def _conditions(dep: client.V1Deployment) -> dict[str, client.V1DeploymentCondition]:
    return {c.type: c for c in dep.status.conditions or []}


def test_s2_standard_mode_rolls_a_deployment(short_deadline, iris_models, tmp_path):
    """kserve ``inference_service_status.go`` PropagateRawStatus (readiness and observedGeneration from
    the Deployment; kserve#4626: Ready stays True while new pods start or crash-loop) and kubernetes
    ``pkg/controller/deployment/sync.go`` calculateStatus / ``progress.go`` (replica counts,
    Available/Progressing, ProgressDeadlineExceeded)."""
    kube, name = short_deadline, "s2"
    host = f"{name}-default.{kube.domain}"
    kube.create_isvc(name, iris_models.v1, annotations={"serving.kserve.io/deploymentMode": "Standard"})
    obj = kube.wait_condition(name, "Ready", timeout=180)
    dep = _deployment(kube, name)
    assert (dep.metadata.generation, dep.status.observed_generation, obj["status"]["observedGeneration"]) == (1, 1, 1)
    assert (dep.spec.replicas, dep.status.replicas, dep.status.updated_replicas, dep.status.available_replicas) == (1, 1, 1, 1)
    assert dep.spec.progress_deadline_seconds == 20
    assert _conditions(dep)["Progressing"].reason == "NewReplicaSetAvailable"
    assert obj["status"]["url"] == f"http://{host}"
    apps = client.AppsV1Api(kube.api_client())
    listed = apps.list_namespaced_deployment("default", label_selector=f"serving.kserve.io/inferenceservice={name}")
    assert [d.metadata.name for d in listed.items] == [f"{name}-predictor"]
    events = list(
        watch.Watch().stream(
            apps.list_namespaced_deployment, "default", field_selector=f"metadata.name={name}-predictor",
            timeout_seconds=1,
        )
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", f"{name}-predictor")]
    (old,) = {_predict(kube, host, name).headers[REVISION_HEADER] for _ in range(3)}

    # A slow new model: the old pod serves until the new one is ready.
    slow = slow_model(tmp_path / "slow")
    with Load(kube, host, name) as load:
        kube.patch_isvc(name, {"spec": {"predictor": {"model": {"storageUri": f"file://{slow}"}}}})
        deadline = time.monotonic() + 30
        while (dep := _deployment(kube, name)).status.observed_generation < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (dep.status.replicas, dep.status.updated_replicas, dep.status.available_replicas) == (2, 1, 1)
        assert dep.status.unavailable_replicas == 1 and dep.status.ready_replicas == 1
        assert _conditions(dep)["Progressing"].reason in ("NewReplicaSetCreated", "ReplicaSetUpdated")
        obj = kube.get_isvc(name)
        assert condition(obj, "Ready") == "True" and obj["status"]["observedGeneration"] == 2
        release(slow, iris_models.v2)
        done = kube.wait_for(name, lambda o: o["status"]["modelStatus"]["transitionStatus"] == "UpToDate", timeout=180)
    dep = _deployment(kube, name)
    assert (dep.status.replicas, dep.status.updated_replicas, dep.status.available_replicas) == (1, 1, 1)
    assert not dep.status.unavailable_replicas and done["status"]["observedGeneration"] == 2
    assert load.failures == [] and old in load.served
    (new,) = {_predict(kube, host, name).headers[REVISION_HEADER] for _ in range(3)}
    assert new != old

    # A model server that exits: the new pod crash-loops, Ready stays True, the old model answers.
    with Load(kube, host, name) as load:
        kube.patch_isvc(name, {"spec": {"predictor": {"model": {"storageUri": f"file://{iris_models.broken}"}}}})
        core = client.CoreV1Api(kube.api_client())
        selector = f"serving.kserve.io/inferenceservice={name}"
        deadline = time.monotonic() + 120
        while True:
            pods = core.list_namespaced_pod("default", label_selector=selector).items
            crashing = [
                p for p in pods
                if (s := p.status.container_statuses[0]).state.waiting is not None
                and s.state.waiting.reason == "CrashLoopBackOff" and s.restart_count >= 1
            ]
            if crashing:
                break
            assert time.monotonic() < deadline, [p.status.container_statuses for p in pods]
            time.sleep(0.5)
        assert len(pods) == 2 and crashing[0].status.container_statuses[0].ready is False
        obj = kube.get_isvc(name)
        assert condition(obj, "Ready") == "True"  # kserve#4626
        assert obj["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
        # progressDeadlineSeconds later (20 s here, 600 s by default) the rollout is declared failed.
        failed = kube.wait_for(name, lambda o: condition(o, "Ready") == "False", timeout=90)
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "PredictorReady")
    assert ready["reason"] == "ProgressDeadlineExceeded"
    progressing = _conditions(_deployment(kube, name))["Progressing"]
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    assert load.failures == [] and set(load.served) == {new}


def test_s3_s4_latest_tag_and_host_routing(kube_stand_in, iris_models):
    """kserve ``controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go``: the
    single 100 % target is tagged ``latest`` with tag routing; URLs are host names
    (``<isvc>.<ns>.<domain>``, Knative's ``<tag>-<ksvc>.<ns>.<domain>``) routed by the gateway."""
    name = "s34"
    kube_stand_in.create_isvc(name, iris_models.v1, annotations={"serving.kserve.io/enable-tag-routing": "true"})
    obj = kube_stand_in.wait_condition(name, "Ready", timeout=180)
    (target,) = predictor_status(obj)["traffic"]
    assert (target["tag"], target["percent"], target["latestRevision"]) == ("latest", 100, True)
    domain = kube_stand_in.domain
    assert target["url"] == f"http://latest-{name}-predictor.default.{domain}"
    assert obj["status"]["url"] == f"http://{name}.default.{domain}"
    assert predictor_status(obj)["url"] == f"http://{name}-predictor.default.{domain}"
    for host in (f"{name}.default.{domain}", f"{name}-predictor.default.{domain}", f"latest-{name}-predictor.default.{domain}"):
        resp = _predict(kube_stand_in, host, name)
        assert resp.status_code == 200 and resp.headers[REVISION_HEADER] == f"{name}-predictor-00001", host
    unknown = _predict(kube_stand_in, f"nope.default.{domain}", name)
    assert unknown.status_code == 404 and "nope.default" in unknown.text
    no_prev = _predict(kube_stand_in, f"prev-{name}-predictor.default.{domain}", name)
    assert no_prev.status_code == 404  # no canary, so no prev target


def test_s5_no_supporting_runtime_creates_no_revision(kube_stand_in, iris_models):
    """kserve ``controller/v1beta1/inferenceservice/components/predictor.go``: no runtime for the model
    format -> UpdateModelTransitionStatus(InvalidSpec, NoSupportingRuntime) and return before the
    Knative Service is touched (``controller.go`` then only writes status)."""
    name = "s5"
    kube_stand_in.create_isvc(name, iris_models.v1)
    before = kube_stand_in.wait_condition(name, "Ready", timeout=180)
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}}}}})
    obj = kube_stand_in.wait_for(
        name, lambda o: o["status"]["modelStatus"]["transitionStatus"] == "InvalidSpec", timeout=30
    )
    model = obj["status"]["modelStatus"]
    assert model["lastFailureInfo"]["reason"] == "NoSupportingRuntime"
    assert model["states"]["targetModelState"] == "FailedToLoad"
    assert predictor_status(obj)["latestCreatedRevision"] == predictor_status(before)["latestCreatedRevision"]
    assert obj["status"]["observedGeneration"] == 1 and obj["metadata"]["generation"] == 2
    revisions = next(s for s in kube_stand_in.admin("GET", "stats")["inferenceServices"] if s["name"] == name)
    assert [r["name"] for r in revisions["revisions"]] == [f"{name}-predictor-00001"]
    resp = _predict(kube_stand_in, f"{name}.default.{kube_stand_in.domain}", name)
    assert resp.status_code == 200  # the last good revision keeps serving


def test_s6_stopped_condition_and_finalizer_delete(kube_stand_in, iris_models):
    """kserve ``controller/v1beta1/inferenceservice/controller.go`` (Stopped=False unless stopped; the
    ``inferenceservice.finalizers`` finalizer) and apiextensions-apiserver ``customresource/etcd.go``
    (ReturnDeletedObject) with ``apiserver/pkg/registry/generic/registry/store.go`` (graceful deletion
    with finalizers: deletionTimestamp set, the name taken until the finalizer goes)."""
    name = "s6"
    api = kube_stand_in.api()
    kube_stand_in.create_isvc(name, iris_models.v1)
    obj = kube_stand_in.wait_condition(name, "Ready", timeout=180)
    stopped = next(c for c in obj["status"]["conditions"] if c["type"] == "Stopped")
    assert stopped["status"] == "False" and stopped["severity"] == "Info"
    assert obj["metadata"]["finalizers"] == ["inferenceservice.finalizers"]

    deleted = api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    assert deleted["metadata"]["deletionTimestamp"] and deleted["metadata"]["finalizers"]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": {"name": name},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{iris_models.v1}"}}},
    }
    conflicts = 0
    deadline = time.monotonic() + 60
    while True:
        try:
            api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
            break
        except ApiException as exc:
            assert exc.status == 409 and "AlreadyExists" in exc.body
            conflicts += 1
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert conflicts >= 1  # the name stayed taken while the controller tore down
    api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)


def test_s6_bookmarks_and_410_on_realistic_timing(tmp_path):
    """kubernetes ``apiserver/pkg/storage/cacher/cacher.go`` (bookmarkFrequency: a bookmark about once
    a minute) and ``cacher/watch_cache.go`` (eventFreshDuration: history kept for a time window,
    older resourceVersions get ``410 Expired``) — shortened here through the stand-in's options."""
    from kfp_bridge.local.kube.server import Options

    assert Options().bookmark_interval_s == 60 and Options().watch_window_s == 75
    env = {"BOOKMARK_INTERVAL_S": "2", "WATCH_WINDOW_S": "3"}
    with start_kube_stand_in(tmp_path / "kube", token="t6", env=env) as kube:
        api = kube.api()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": {"name": "w"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}}}},
        }
        api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
        rv = api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"]["resourceVersion"]
        started = time.monotonic()
        events = list(
            watch.Watch().stream(
                api.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=5,
            )
        )
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        assert 1 <= len(bookmarks) <= 3, events  # every 2 s over 5 s, not every second
        assert time.monotonic() - started >= 4

        api.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w", {"metadata": {"labels": {"a": "1"}}})
        # Within the window, resuming from rv replays the change; after it, 410 (no event count involved).
        resumed = list(
            watch.Watch().stream(
                api.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                resource_version=rv, timeout_seconds=1,
            )
        )
        assert any(e["type"] == "MODIFIED" for e in resumed)
        time.sleep(3.5)
        with pytest.raises(ApiException) as expired:
            list(
                watch.Watch().stream(
                    api.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
                    resource_version=rv, timeout_seconds=1,
                )
            )
        assert expired.value.status == 410
