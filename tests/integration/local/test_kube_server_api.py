"""The Kubernetes API of the kube stand-in, driven by the real ``kubernetes`` client.

These objects use a model format no runtime supports, so the controller writes an InvalidSpec
model status without starting a model server: the API tests stay fast.
"""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube_stand_in import GROUP, PLURAL, VERSION, condition

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]


def _body(name: str, fmt: str = "tensorflow", **meta) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name, **meta},
        "spec": {"predictor": {"model": {"modelFormat": {"name": fmt}, "storageUri": "file:///nowhere"}}},
    }


@pytest.fixture
def ns() -> str:
    # A namespace per test keeps watches and lists independent; any name is accepted.
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def api(kube_stand_in):
    return kube_stand_in.api()


def _watch(api, ns: str, **kwargs) -> list[dict]:
    """Every event of one watch on the InferenceServices of ``ns`` (pass ``timeout_seconds`` to end it)."""
    return list(watch.Watch().stream(api.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, **kwargs))


def _raw_watch(http: httpx.Client, ns: str, watch_flag: str, timeout_seconds: str):
    """The same watch as raw HTTP (a context manager streaming the response)."""
    return http.stream(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}",
        params={"watch": watch_flag, "timeoutSeconds": timeout_seconds},
    )


def _api_with_token(stand_in, token: str) -> client.CustomObjectsApi:
    """A client that sends ``token``, whatever the kubeconfig says (verifying the stand-in's CA)."""
    return client.CustomObjectsApi(stand_in.api_client_for(token))


def _settled(kube_stand_in, name, ns):
    """Wait until the controller has written its (InvalidSpec) status, so it stops writing.

    Was PredictorReady=False with observedGeneration 1: a stand-in-only shape. KServe's predictor
    reconciler rejects an unknown model format before any Knative Service exists, so only
    modelStatus changes and there is no observedGeneration (fidelity S1, S5).
    """
    return kube_stand_in.wait_for(
        name,
        lambda o: ((o.get("status") or {}).get("modelStatus") or {}).get("transitionStatus") == "InvalidSpec"
        and "inferenceservice.finalizers" in o["metadata"].get("finalizers", []),
        namespace=ns,
        timeout=30,
        what="InvalidSpec",
    )


def test_crud_round_trip_with_resource_version_and_generation(kube_stand_in, api, ns):
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, _body("a", labels={"team": "x"})
    )
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["namespace"] == ns and meta["uid"]
    assert "status" not in created
    settled = _settled(kube_stand_in, "a", ns)
    rv0 = int(settled["metadata"]["resourceVersion"])

    # A metadata-only change bumps resourceVersion but not generation.
    labelled = api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "a", {"metadata": {"labels": {"env": "dev"}}}
    )
    assert labelled["metadata"]["labels"] == {"team": "x", "env": "dev"}
    assert int(labelled["metadata"]["resourceVersion"]) > rv0
    assert labelled["metadata"]["generation"] == 1

    # A spec change bumps generation; null deletes a key (RFC 7386).
    patched = api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "a",
        {"spec": {"predictor": {"canaryTrafficPercent": 10}}, "metadata": {"labels": {"env": None}}},
    )
    assert patched["metadata"]["generation"] == 2
    assert patched["metadata"]["labels"] == {"team": "x"}
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10

    # PUT with the current resourceVersion.
    current = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
    current["spec"]["predictor"]["canaryTrafficPercent"] = 20
    replaced = api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a", current)
    assert replaced["metadata"]["generation"] == 3
    assert int(replaced["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])

    listed = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert listed["kind"] == "InferenceServiceList" and [o["metadata"]["name"] for o in listed["items"]] == [
        "a"
    ]
    assert int(listed["metadata"]["resourceVersion"]) >= int(replaced["metadata"]["resourceVersion"])
    cluster = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="team=x")
    assert any(o["metadata"]["namespace"] == ns for o in cluster["items"])
    assert (
        api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, label_selector="team=y")["items"] == []
    )

    # Was a Status "Success": custom resources return the object (ReturnDeletedObject), here still
    # holding KServe's finalizer, so it is marked and goes once the controller lets go (fidelity S6).
    deleted = api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
    assert deleted["kind"] == "InferenceService" and deleted["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as err:
        for _ in range(100):
            api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
            threading.Event().wait(0.1)
    assert err.value.status == 404
    assert '"reason": "NotFound"' in err.value.body or '"reason":"NotFound"' in err.value.body


def test_json_patch_via_header_override(kube_stand_in, ns):
    api = kube_stand_in.api()
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("jp"))
    api.api_client.set_default_header("Content-Type", "application/json-patch+json")
    ops = [
        {"op": "test", "path": "/metadata/name", "value": "jp"},
        {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 30},
    ]
    patched = api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "jp", ops)
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 30
    with pytest.raises(ApiException) as failed_test:
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            ns,
            PLURAL,
            "jp",
            [{"op": "test", "path": "/spec/predictor/canaryTrafficPercent", "value": 1}],
        )
    assert failed_test.value.status == 422
    # A dict body with that header override becomes strategic merge patch: custom resources say 415.
    with pytest.raises(ApiException) as strategic:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "jp", {"metadata": {"labels": {"a": "b"}}}
        )
    assert strategic.value.status == 415
    assert "UnsupportedMediaType" in strategic.value.body


def test_error_paths(kube_stand_in, api, ns):
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("e"))
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("e"))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body

    # kubernetes 30.1 sends a JSON-patch list as merge-patch: the server must refuse it.
    with pytest.raises(ApiException) as as_merge:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "e", [{"op": "remove", "path": "/spec"}]
        )
    assert as_merge.value.status in (400, 422)
    assert api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "e")["spec"]["predictor"]

    obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "e")
    no_rv = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
    with pytest.raises(ApiException) as missing_rv:
        api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "e", no_rv)
    assert missing_rv.value.status == 422 and "must be specified for an update" in missing_rv.value.body

    stale = {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "e", stale)
    assert conflict.value.status == 409 and '"Conflict"' in conflict.value.body.replace(" ", "")

    with pytest.raises(ApiException) as stale_patch:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "e", {"metadata": {"resourceVersion": "1"}}
        )
    assert stale_patch.value.status == 409

    wrong_kind = {**_body("k"), "kind": "Deployment"}
    with pytest.raises(ApiException) as bad:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, wrong_kind)
    assert bad.value.status == 400

    no_predictor = {**_body("np"), "spec": {}}
    with pytest.raises(ApiException) as invalid:
        api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, no_predictor)
    assert invalid.value.status == 422

    bad_token = _api_with_token(kube_stand_in, "wrong")
    with pytest.raises(ApiException) as unauthorized:
        bad_token.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert unauthorized.value.status == 401 and "Unauthorized" in unauthorized.value.body


def test_status_subresource_rules(kube_stand_in, api, ns):
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("s"))
    settled = _settled(kube_stand_in, "s", ns)
    assert condition(settled, "Ready") == "Unknown"  # InvalidSpec leaves the initial conditions (S5)
    assert (
        settled["status"]["modelStatus"]["transitionStatus"] == "InvalidSpec"
        or settled["status"]["modelStatus"]["lastFailureInfo"]
    )

    # A main-resource write carrying status leaves status alone.
    main = api.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "s",
        {"metadata": {"labels": {"x": "1"}}, "status": {"url": "http://evil"}},
    )
    assert main["status"] == settled["status"]

    # A status write carrying spec leaves spec alone and does not bump generation.
    status_write = api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        ns,
        PLURAL,
        "s",
        {"spec": {"predictor": {"canaryTrafficPercent": 5}}, "status": {"url": "http://set-by-test"}},
    )
    assert status_write["status"]["url"] == "http://set-by-test"
    assert "canaryTrafficPercent" not in status_write["spec"]["predictor"]
    assert status_write["metadata"]["generation"] == 1
    assert int(status_write["metadata"]["resourceVersion"]) > int(main["metadata"]["resourceVersion"])
    assert api.get_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, "s")["metadata"]["name"] == "s"


def test_watch_initial_events_resume_and_selectors(kube_stand_in, api, ns):
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("w1", labels={"app": "one"}))
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("w2", labels={"app": "two"}))
    _settled(kube_stand_in, "w1", ns)
    _settled(kube_stand_in, "w2", ns)

    initial = _watch(api, ns, timeout_seconds=1)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in initial) == [
        ("ADDED", "w1"),
        ("ADDED", "w2"),
    ]
    assert all(e["type"] != "BOOKMARK" for e in initial)
    rv = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["metadata"]["resourceVersion"]

    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "w1", {"metadata": {"annotations": {"n": "1"}}}
    )
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "w2", {"metadata": {"annotations": {"n": "2"}}}
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w2")

    resumed = _watch(api, ns, resource_version=rv, timeout_seconds=2)
    kinds = [(e["type"], e["object"]["metadata"]["name"]) for e in resumed]
    # With KServe's finalizer a delete is first a MODIFIED carrying deletionTimestamp (fidelity S6).
    assert kinds[:4] == [("MODIFIED", "w1"), ("MODIFIED", "w2"), ("MODIFIED", "w2"), ("DELETED", "w2")]
    assert resumed[2]["object"]["metadata"]["deletionTimestamp"]
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in resumed)

    by_label = _watch(api, ns, resource_version=rv, label_selector="app=two", timeout_seconds=1)
    assert {e["object"]["metadata"]["name"] for e in by_label} == {"w2"}

    # An object that stops matching the selector is DELETED for that watcher.
    rv = api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["metadata"]["resourceVersion"]
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "w1", {"metadata": {"labels": {"app": "gone"}}}
    )
    left = _watch(api, ns, resource_version=rv, label_selector="app=one", timeout_seconds=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in left] == [("DELETED", "w1")]
    by_field = list(
        watch.Watch().stream(
            api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            field_selector=f"metadata.name=w1,metadata.namespace={ns}",
            timeout_seconds=1,
        )
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in by_field] == [("ADDED", "w1")]


def test_watch_live_delivery_and_bookmarks(kube_stand_in, api, ns):
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("live"))
    _settled(kube_stand_in, "live", ns)
    seen: list[tuple[str, str]] = []
    ready = threading.Event()

    def consume() -> None:
        stream = watch.Watch().stream(
            kube_stand_in.api().list_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            PLURAL,
            allow_watch_bookmarks=True,
            timeout_seconds=4,
        )
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"].get("name", "")))
            ready.set()
            if event["type"] == "MODIFIED":
                return

    worker = threading.Thread(target=consume)
    worker.start()
    assert ready.wait(10)  # the initial ADDED arrived, so the watch is open
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "live", {"metadata": {"labels": {"v": "2"}}}
    )
    worker.join(10)
    assert not worker.is_alive(), (
        "a live change should arrive before the 4 s watch timeout (chunked streaming)"
    )
    assert seen[0] == ("ADDED", "live") and seen[-1] == ("MODIFIED", "live")

    bookmarks = _watch(api, ns, allow_watch_bookmarks=True, timeout_seconds=2)
    bookmark = next(e for e in bookmarks if e["type"] == "BOOKMARK")
    assert bookmark["object"]["metadata"]["resourceVersion"]


def test_watch_410_when_history_is_compacted(kube_stand_in, api, ns):
    api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _body("old"))
    old_rv = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "old")["metadata"][
        "resourceVersion"
    ]
    api.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "old", {"metadata": {"labels": {"a": "b"}}}
    )
    kube_stand_in.admin("POST", "compact")
    with pytest.raises(ApiException) as with_timeout:
        _watch(api, ns, resource_version=old_rv, timeout_seconds=2)
    assert with_timeout.value.status == 410
    # Without timeout_seconds the client reconnects once with the same RV, then gives up.
    with pytest.raises(ApiException) as retried:
        _watch(api, ns, resource_version=old_rv)
    assert retried.value.status == 410 and "too old resource version" in retried.value.reason


def test_drop_watches_ends_open_streams(kube_stand_in, api, ns):
    done = threading.Event()

    def consume() -> None:
        for _ in watch.Watch().stream(
            kube_stand_in.api().list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, timeout_seconds=30
        ):
            pass
        done.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    deadline_ok = False
    for _ in range(100):
        if kube_stand_in.admin("GET", "stats")["watchesOpen"] >= 1:
            deadline_ok = True
            break
        done.wait(0.05)
    assert deadline_ok
    dropped = kube_stand_in.admin("POST", "drop-watches")
    assert dropped["dropped"] >= 1
    assert done.wait(5), "the watch should end right after /_admin/drop-watches"

    # mode=abort breaks the connection instead of ending the chunked stream.
    with kube_stand_in.http() as http, _raw_watch(http, ns, "true", "30") as resp:
        assert resp.status_code == 200
        assert kube_stand_in.admin("POST", "drop-watches", params={"mode": "abort"})["mode"] == "abort"
        with pytest.raises(httpx.HTTPError):
            resp.read()


def test_raw_protocol_details(kube_stand_in, ns):
    with kube_stand_in.http() as http:
        # Booleans are case-insensitive and the watch is chunked.
        with _raw_watch(http, ns, "TRUE", "1") as resp:
            assert resp.status_code == 200
            assert resp.headers.get("transfer-encoding") == "chunked"
            assert resp.headers["content-type"].startswith("application/json")
            resp.read()
        assert http.get("/version/").json()["major"] == "1"
        assert GROUP in {g["name"] for g in http.get("/apis").json()["groups"]}
        resources = http.get(f"/apis/{GROUP}/{VERSION}").json()["resources"]
        assert {r["name"] for r in resources} == {PLURAL, f"{PLURAL}/status"}
        # apps/v1 Deployments are served now (Standard mode, fidelity S2); other groups are not.
        unknown = http.get("/apis/batch/v1/namespaces/default/jobs")
        assert unknown.status_code == 404 and unknown.json()["kind"] == "Status"
    anonymous = httpx.get(f"{kube_stand_in.url}/apis/{GROUP}/{VERSION}/{PLURAL}", verify=kube_stand_in.verify())
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"


def test_dynamic_client_discovers_inferenceservices(kube_stand_in, ns):
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(kube_stand_in.api_client())
    isvc = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="InferenceService")
    isvc.create(body=_body("dyn"), namespace=ns)
    assert isvc.get(name="dyn", namespace=ns).metadata.name == "dyn"


def test_token_file_is_reread_per_request(tmp_path):
    from tests.fixtures.kube_stand_in import start_kube_stand_in

    with start_kube_stand_in(tmp_path / "kube", token="first", admin=False) as private:
        api = private.api()
        assert api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"] == []
        (private.state_dir / "token").write_text("second")
        with pytest.raises(ApiException) as rotated:
            api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        assert rotated.value.status == 401
        with_new_token = _api_with_token(private, "second")
        assert with_new_token.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"] == []
        with httpx.Client(base_url=private.url, verify=private.verify()) as http:
            assert http.get("/_admin/stats", headers={"authorization": "Bearer second"}).status_code == 404
