"""RBAC enforced by the kube stand-in, seen through the real ``kubernetes`` client.

Upstream: kubernetes ``plugin/pkg/auth/authorizer/rbac/rbac.go`` (the authorizer),
``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`` (verb, subresource, name of a
request) and ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go``
(``forbiddenMessage``: the 403 text). The Role under test is the shipped
``deploy/rbac/kserve-rollout.yaml``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube_stand_in import (
    GROUP,
    PLURAL,
    ROLLOUT_ROLE,
    SERVICE_ACCOUNT,
    VERSION,
    KubeStandIn,
    rbac_policy,
    start_kube_stand_in,
)

pytestmark = [pytest.mark.integration]

SA_TOKEN = secrets.token_hex(8)
READER_TOKEN = secrets.token_hex(8)
READER = "system:serviceaccount:airflow:log-reader"
PODS_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: profile}
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list"]
  - apiGroups: ["serving.kserve.io"]
    resources: ["inferenceservices"]
    resourceNames: ["allowed"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pod-reader, namespace: profile}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: log-reader, namespace: airflow}]
"""


def _isvc(name: str) -> dict:
    # An unknown model format: the controller writes InvalidSpec and starts no model server.
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}, "storageUri": "file:///x"}}},
    }


@pytest.fixture(scope="module")
def enforced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandIn]:
    root = tmp_path_factory.mktemp("kube-rbac")
    policy = rbac_policy(root / "rbac", SA_TOKEN, manifests=[ROLLOUT_ROLE])
    config = yaml.safe_load(policy.read_text())
    (root / "rbac" / "pods-role.yaml").write_text(PODS_ROLE)
    config["manifests"].append(str(root / "rbac" / "pods-role.yaml"))
    config["identities"][READER_TOKEN] = {"user": READER}
    policy.write_text(yaml.safe_dump(config))
    kfp = root / "kfp"
    pod_dir = kfp / "pods" / "profile"
    pod_dir.mkdir(parents=True)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run-1-executor", "namespace": "profile",
           "labels": {"pipeline/runid": "r1"}}, "spec": {"containers": [{"name": "main"}, {"name": "wait"}]}}
    (pod_dir / "run-1-executor.json").write_text(json.dumps(pod))
    (pod_dir / "run-1-executor.main.log").write_text("line 1\nboom\n")
    with start_kube_stand_in(
        root / "kube", token=secrets.token_hex(16), rbac=policy, env={"KFP_STATE_DIR": str(kfp)}
    ) as stand_in:
        stand_in.api().create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _isvc("m"))
        yield stand_in


def _custom(stand_in: KubeStandIn, token: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(stand_in.api_client_for(token))


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_shipped_role_allows_what_it_lists(enforced):
    role = next(d for d in yaml.safe_load_all(ROLLOUT_ROLE.read_text()) if d["kind"] == "Role")
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    api = _custom(enforced, SA_TOKEN)
    assert {"get", "patch", "watch"} <= verbs
    assert api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "m")["metadata"]["name"] == "m"
    patched = api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "m", {"metadata": {"labels": {"rolled": "yes"}}}
    )
    assert patched["metadata"]["labels"] == {"rolled": "yes"}
    events = list(
        watch.Watch().stream(
            api.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
            field_selector="metadata.name=m", timeout_seconds=1,
        )
    )
    assert events and events[0]["object"]["metadata"]["name"] == "m"
    # list: allowed exactly when the shipped Role grants it (a 410 re-list needs it).
    if "list" in verbs:
        assert api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
    else:
        with pytest.raises(ApiException) as denied:
            api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
        assert denied.value.status == 403


def test_denied_request_gets_the_apiservers_403(enforced):
    api = _custom(enforced, SA_TOKEN)
    with pytest.raises(ApiException) as denied:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _isvc("new"))
    body = _status(denied.value)
    assert denied.value.status == 403
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["reason"] == "Forbidden"
    assert body["message"] == (
        f'inferenceservices.serving.kserve.io is forbidden: User "{SERVICE_ACCOUNT}" cannot create resource '
        '"inferenceservices" in API group "serving.kserve.io" in the namespace "default"'
    )
    assert body["details"] == {"group": "serving.kserve.io", "kind": "inferenceservices"}
    # The Role is namespaced: the same verb elsewhere is refused and names that namespace.
    with pytest.raises(ApiException) as elsewhere:
        api.get_namespaced_custom_object(GROUP, VERSION, "other", PLURAL, "m")
    assert elsewhere.value.status == 403
    assert _status(elsewhere.value)["message"].startswith('inferenceservices.serving.kserve.io "m" is forbidden')
    assert 'in the namespace "other"' in _status(elsewhere.value)["message"]
    # Deployments (Standard mode) are a different resource and group: allowed only by their own rule.
    role = next(d for d in yaml.safe_load_all(ROLLOUT_ROLE.read_text()) if d["kind"] == "Role")
    granted = any(
        "apps" in r["apiGroups"] and "deployments" in r["resources"] and "list" in r["verbs"] for r in role["rules"]
    )
    apps = client.AppsV1Api(enforced.api_client_for(SA_TOKEN))
    if granted:
        assert apps.list_namespaced_deployment("default").items == []
    else:
        with pytest.raises(ApiException) as deployments:
            apps.list_namespaced_deployment("default")
        assert 'cannot list resource "deployments" in API group "apps"' in _status(deployments.value)["message"]
    # An unknown token is not an identity: 401, not 403.
    with pytest.raises(ApiException) as unknown:
        _custom(enforced, "nobody").get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "m")
    assert unknown.value.status == 401


def test_subresource_pods_log_needs_its_own_rule(enforced):
    core = client.CoreV1Api(enforced.api_client_for(READER_TOKEN))
    pods = core.list_namespaced_pod("profile", label_selector="pipeline/runid=r1")
    assert [p.metadata.name for p in pods.items] == ["run-1-executor"]
    with pytest.raises(ApiException) as denied:
        core.read_namespaced_pod_log("run-1-executor", "profile", container="main", tail_lines=1)
    assert denied.value.status == 403
    assert _status(denied.value)["message"] == (
        f'pods "run-1-executor" is forbidden: User "{READER}" cannot get resource "pods/log" in API group "" '
        'in the namespace "profile"'
    )
    # The administrator (token file) reads it. kubernetes 36 returns str(bytes) for a "str" response
    # ("b'boom\\n'"), whatever the server sends: read the raw body instead.
    admin = client.CoreV1Api(enforced.api_client())
    raw = admin.read_namespaced_pod_log(
        "run-1-executor", "profile", container="main", tail_lines=1, _preload_content=False
    )
    assert raw.data.decode() == "boom\n"


def test_resource_names_allow_only_the_named_object(enforced):
    admin = enforced.api()
    for name in ("allowed", "other"):
        admin.create_namespaced_custom_object(GROUP, VERSION, "profile", PLURAL, _isvc(name))
    api = _custom(enforced, READER_TOKEN)
    assert api.get_namespaced_custom_object(GROUP, VERSION, "profile", PLURAL, "allowed")["metadata"]["name"]
    with pytest.raises(ApiException) as other:
        api.get_namespaced_custom_object(GROUP, VERSION, "profile", PLURAL, "other")
    assert other.value.status == 403 and '"other" is forbidden' in _status(other.value)["message"]
    with pytest.raises(ApiException) as listing:
        api.list_namespaced_custom_object(GROUP, VERSION, "profile", PLURAL)
    assert listing.value.status == 403


def test_rbac_is_off_without_a_policy(kube_stand_in: KubeStandIn):
    # The session stand-in has no policy: its token may do anything (existing tests rely on it).
    api = kube_stand_in.api()
    assert api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["kind"] == "InferenceServiceList"
    assert Path(kube_stand_in.kubeconfig).exists()


def test_rbac_fixture_kubeconfig_is_the_service_account(tmp_path):
    from kubernetes import config as kube_config

    from tests.fixtures.kube_stand_in import start_rbac_kube_stand_in

    with start_rbac_kube_stand_in(tmp_path) as enforced:
        enforced.kube.api().create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, _isvc("m"))
        api = client.CustomObjectsApi(kube_config.new_client_from_config(config_file=str(enforced.kubeconfig)))
        assert api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "m")["metadata"]["name"] == "m"
        with pytest.raises(ApiException) as denied:
            api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "m")
        assert denied.value.status == 403 and SERVICE_ACCOUNT in _status(denied.value)["message"]
