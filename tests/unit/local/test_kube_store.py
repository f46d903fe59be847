"""Object semantics of the kube stand-in store: resourceVersion, generation, status subresource, history."""

from __future__ import annotations

import pytest

from kfp_bridge.local.kube.errors import KubeApiError
from kfp_bridge.local.kube.store import Store


def _body(name="m", **predictor):
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"sklearn": {"storageUri": "file:///m"}, **predictor}},
        "status": {"url": "ignored on create"},
    }


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "kube.sqlite", history=3)
    yield s
    s.close()


def test_create_sets_system_metadata_and_drops_status(store):
    obj = store.create("ns", _body())
    assert obj["metadata"]["generation"] == 1 and obj["metadata"]["resourceVersion"] == "1"
    assert obj["metadata"]["namespace"] == "ns" and obj["metadata"]["uid"]
    assert "status" not in obj
    with pytest.raises(KubeApiError) as err:
        store.create("ns", _body())
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"


def test_generation_only_moves_with_spec_and_status_writes_ignore_spec(store):
    obj = store.create("ns", _body())
    meta_only = store.update("ns", "m", {**obj, "metadata": {**obj["metadata"], "labels": {"a": "b"}}})
    assert meta_only["metadata"]["generation"] == 1 and meta_only["metadata"]["resourceVersion"] == "2"
    with_status = store.update("ns", "m", {**meta_only, "status": {"url": "x"}})
    assert "status" not in with_status and with_status["metadata"]["resourceVersion"] == "2"  # a no-op write
    status = store.update(
        "ns", "m", {**meta_only, "spec": {"predictor": {}}, "status": {"url": "x"}}, subresource="status"
    )
    assert (
        status["status"] == {"url": "x"}
        and status["spec"] == obj["spec"]
        and status["metadata"]["generation"] == 1
    )
    spec = store.update("ns", "m", {**status, "spec": {"predictor": {"canaryTrafficPercent": 5}}})
    assert spec["metadata"]["generation"] == 2 and spec["status"] == {"url": "x"}
    assert int(spec["metadata"]["resourceVersion"]) == 4


def test_put_preconditions(store):
    obj = store.create("ns", _body())
    no_rv = {**obj, "metadata": {"name": "m"}}
    with pytest.raises(KubeApiError) as missing:
        store.update("ns", "m", no_rv, require_rv=True)
    assert missing.value.code == 422
    store.update("ns", "m", {**obj, "metadata": {**obj["metadata"], "labels": {"x": "y"}}})
    with pytest.raises(KubeApiError) as stale:
        store.update("ns", "m", obj, require_rv=True)
    assert stale.value.code == 409 and stale.value.reason == "Conflict"
    with pytest.raises(KubeApiError) as renamed:
        store.update("ns", "m", {**obj, "metadata": {"name": "other"}})
    assert renamed.value.code == 400


def test_invalid_canary_type_is_422(store):
    with pytest.raises(KubeApiError) as err:
        store.create("ns", _body(canaryTrafficPercent="10"))
    assert err.value.code == 422 and "canaryTrafficPercent" in err.value.message


def test_history_window_and_410(store):
    store.create("ns", _body("a"))
    for i in range(4):
        store.create("ns", _body(f"b{i}"))
    # history=3 keeps rv 3..5: resuming from rv 2 still works, rv 1 is too old.
    assert [e.rv for e in store.events_since(2)] == [3, 4, 5]
    with pytest.raises(KubeApiError) as err:
        store.events_since(1)
    assert err.value.code == 410 and err.value.reason == "Expired"
    store.compact()
    assert store.events_since(5) == []
    with pytest.raises(KubeApiError):
        store.events_since(4)


def test_restart_keeps_objects_and_resource_version(tmp_path):
    first = Store(tmp_path / "db.sqlite")
    first.create("ns", _body())
    first.delete("ns", "m")
    first.create("ns", _body("n"))
    first.close()
    second = Store(tmp_path / "db.sqlite")
    assert [o["metadata"]["name"] for o in second.list(None)] == ["n"]
    assert second.rv == 3
    # The watch history did not survive: any older RV is expired.
    with pytest.raises(KubeApiError):
        second.events_since(2)
    assert second.create("ns", _body("o"))["metadata"]["resourceVersion"] == "4"
    second.close()


def test_delete_emits_last_state_with_new_rv(store):
    store.create("ns", _body())
    deleted = store.delete("ns", "m")
    assert deleted["metadata"]["resourceVersion"] == "2"
    assert store.history[-1].type == "DELETED"
    with pytest.raises(KubeApiError) as err:
        store.get("ns", "m")
    assert err.value.code == 404


def test_filtered_watch_sees_objects_enter_and_leave(store):
    from kfp_bridge.local.kube.filtering import label_selector

    obj = store.create("ns", {**_body(), "metadata": {"name": "m", "labels": {"app": "one"}}})
    store.update("ns", "m", {**obj, "metadata": {**obj["metadata"], "labels": {"app": "two"}}})
    moved = store.history[-1]
    assert moved.type == "MODIFIED"
    assert moved.as_seen_by(label_selector("app=one")) == "DELETED"
    assert moved.as_seen_by(label_selector("app=two")) == "ADDED"
    assert moved.as_seen_by(label_selector("app")) == "MODIFIED"
    assert moved.as_seen_by(label_selector("app=three")) is None


def test_delete_with_finalizers_marks_then_removes_when_the_last_goes(store):
    """apiserver ``registry/generic/registry/store.go``: pending finalizers -> deletionTimestamp, the
    object (and its name) stays; removing the last finalizer deletes it."""
    obj = store.create("ns", {**_body(), "metadata": {"name": "m", "finalizers": ["inferenceservice.finalizers"]}})
    marked = store.delete("ns", "m")
    assert marked["metadata"]["deletionTimestamp"] and store.history[-1].type == "MODIFIED"
    with pytest.raises(KubeApiError) as taken:
        store.create("ns", _body())
    assert taken.value.code == 409
    again = store.delete("ns", "m")
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]  # no second event
    store.update("ns", "m", {**marked, "metadata": {**marked["metadata"], "finalizers": []}})
    assert store.history[-1].type == "DELETED" and store.find("ns", "m") is None
    assert store.create("ns", _body())["metadata"]["uid"] != obj["metadata"]["uid"]


def test_history_expires_by_time_not_only_by_count(tmp_path):
    """apiserver ``storage/cacher/watch_cache.go``: events older than the window are gone -> 410."""
    s = Store(tmp_path / "t.sqlite", history=1000, window_s=60)
    try:
        s.create("ns", _body())
        s.create("ns", _body("n"))
        assert [e.rv for e in s.events_since(1)] == [2]
        s.expire_history(now=s.history[-1].at + 61)
        with pytest.raises(KubeApiError) as gone:
            s.events_since(1)
        assert gone.value.code == 410
        assert s.events_since(2) == []  # caught up: nothing missed, so no 410
    finally:
        s.close()
