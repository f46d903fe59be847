"""The KFP stand-in's executor pods, served read-only by the kube stand-in (``KFP_STATE_DIR``).

Files as the KFP stand-in writes them: ``<kfp-state>/pods/<ns>/<pod>.json`` (a core/v1 Pod) and
``<pod>.main.log``. Query semantics follow kubernetes ``apimachinery/pkg/labels/selector.go``
(equality and set-based label selectors), ``pkg/registry/core/pod/strategy.go`` (field selector
``metadata.name``) and ``pkg/registry/core/pod/rest/log.go`` (``container``, ``tailLines``; a
container name is required when the pod has several).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube_stand_in import KubeStandIn, start_kube_stand_in

pytestmark = [pytest.mark.integration]


def _pod(name: str, run: str, phase: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "profile",
            "uid": f"uid-{name}",
            "labels": {"pipeline/runid": run, "workflows.argoproj.io/completed": "true"},
            "annotations": {"workflows.argoproj.io/node-name": f"{run}.train"},
        },
        "spec": {"containers": [{"name": "main", "image": "python:3.11"}, {"name": "wait", "image": "argo"}]},
        "status": {"phase": phase},
    }


@pytest.fixture(scope="module")
def with_pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandIn]:
    root = tmp_path_factory.mktemp("kube-pods")
    folder = root / "kfp" / "pods" / "profile"
    folder.mkdir(parents=True)
    for name, run, phase in (("a-executor", "run-a", "Failed"), ("b-executor", "run-b", "Succeeded")):
        (folder / f"{name}.json").write_text(json.dumps(_pod(name, run, phase)))
    (folder / "a-executor.main.log").write_text("".join(f"line {i}\n" for i in range(1, 11)) + "ValueError: boom\n")
    with start_kube_stand_in(root / "kube", token="pods", env={"KFP_STATE_DIR": str(root / "kfp")}) as stand_in:
        yield stand_in


@pytest.fixture
def core(with_pods: KubeStandIn) -> client.CoreV1Api:
    return client.CoreV1Api(with_pods.api_client())


def test_list_with_label_and_field_selectors(core):
    names = lambda pods: sorted(p.metadata.name for p in pods.items)  # noqa: E731
    assert names(core.list_namespaced_pod("profile")) == ["a-executor", "b-executor"]
    assert names(core.list_namespaced_pod("profile", label_selector="pipeline/runid=run-a")) == ["a-executor"]
    assert names(core.list_namespaced_pod("profile", label_selector="pipeline/runid in (run-b,run-x)")) == ["b-executor"]
    assert names(core.list_namespaced_pod("profile", label_selector="pipeline/runid notin (run-b)")) == ["a-executor"]
    assert names(core.list_namespaced_pod("profile", field_selector="metadata.name=b-executor")) == ["b-executor"]
    assert names(core.list_namespaced_pod("other")) == []
    pod = core.read_namespaced_pod("a-executor", "profile")
    assert pod.metadata.annotations["workflows.argoproj.io/node-name"] == "run-a.train"
    assert pod.status.phase == "Failed"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", "profile")
    assert missing.value.status == 404 and '"reason":"NotFound"' in missing.value.body.replace(" ", "")


def test_log_tail_and_container(core):
    raw = core.read_namespaced_pod_log("a-executor", "profile", container="main", tail_lines=2, _preload_content=False)
    assert raw.data.decode() == "line 10\nValueError: boom\n"
    whole = core.read_namespaced_pod_log("a-executor", "profile", container="main", _preload_content=False)
    assert whole.data.decode().count("\n") == 11
    with pytest.raises(ApiException) as ambiguous:
        core.read_namespaced_pod_log("a-executor", "profile", _preload_content=False)
    assert ambiguous.value.status == 400 and "a container name must be specified" in ambiguous.value.body
    with pytest.raises(ApiException) as bad_container:
        core.read_namespaced_pod_log("a-executor", "profile", container="sidecar", _preload_content=False)
    assert bad_container.value.status == 400


def test_pods_are_read_only(with_pods):
    core = client.CoreV1Api(with_pods.api_client())
    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_pod("a-executor", "profile")
    assert refused.value.status == 405
    assert core.read_namespaced_pod("a-executor", "profile").metadata.name == "a-executor"
