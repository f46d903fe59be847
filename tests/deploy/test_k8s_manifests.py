"""Every manifest in deploy/ validates against Kubernetes schemas, offline, and says what it must.

Validators come from PyPI: kubernetes-validate (vendored Kubernetes OpenAPI schemas, strict mode)
for built-in kinds; the PodDefault CRD's own openAPIV3Schema (vendored in tests/deploy/) for the
PodDefault. The Helm values file is checked against the chart's keys and the core/v1 schemas of
the volumes and mounts it injects.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import (
    DEPLOY,
    PLACEHOLDERS,
    all_resources,
    k8s_definition_validator,
    load,
    manifest_files,
    placeholders_in,
    validate,
)

TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"
SA_NAME = "airflow-kfp-bridge"
ONCALL_SA_NAME = "airflow-kfp-bridge-oncall"  # the api-server's identity (on-call plugin)
CHART_VERSION = "1.22.0"


def _by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in all_resources() if doc["kind"] == kind]


def _projected_token(volume: dict) -> dict:
    (source,) = volume["projected"]["sources"]
    return source["serviceAccountToken"]


def test_deploy_holds_the_expected_manifests():
    kinds = sorted(doc["kind"] for _, doc in all_resources())
    assert kinds == [
        "Pod",
        "PodDefault",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "RoleBinding",
        "ServiceAccount",
        "ServiceAccount",
    ], kinds


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_manifest_validates_against_its_schema(path: Path, capsys):
    docs = load(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        checked = validate(doc)
        with capsys.disabled():
            print(f"\n  {path.relative_to(DEPLOY)}: {doc['kind']}/{doc['metadata']['name']} valid against {checked}")
    # Only the documented placeholders, so `envsubst` with those variables renders the whole file.
    assert placeholders_in(path.read_text()) <= set(PLACEHOLDERS), path


def test_validators_reject_broken_manifests():
    """The validators are not vacuous: a typo'd field, a wrong type and a missing selector fail."""
    role = _by_kind("Role")[0]
    typo = copy.deepcopy(role)
    typo["rules"][0]["verb"] = typo["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    (poddefault,) = _by_kind("PodDefault")
    no_selector = copy.deepcopy(poddefault)
    del no_selector["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError, match="selector"):
        validate(no_selector)
    bad_volume = copy.deepcopy(poddefault)
    _projected_token(bad_volume["spec"]["volumes"][0])["expirationSeconds"] = "2h"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_volume)


def test_poddefault_projects_the_kfp_token():
    (pd,) = _by_kind("PodDefault")
    assert pd["apiVersion"] == "kubeflow.org/v1alpha1"
    assert pd["metadata"]["namespace"] == PLACEHOLDERS["PROFILE_NAMESPACE"]
    (volume,) = pd["spec"]["volumes"]
    token = _projected_token(volume)
    assert token == {"path": "token", "expirationSeconds": 7200, "audience": "pipelines.kubeflow.org"}
    (mount,) = pd["spec"]["volumeMounts"]
    assert mount == {"mountPath": TOKEN_DIR, "name": volume["name"], "readOnly": True}
    assert pd["spec"]["env"] == [{"name": "KF_PIPELINES_SA_TOKEN_PATH", "value": f"{TOKEN_DIR}/token"}]
    # The selector must match pods that carry the label the PodDefault documents.
    assert pd["spec"]["selector"] == {"matchLabels": {"access-ml-pipeline": "true"}}


def test_poddefault_is_parametrized_by_namespace():
    path = DEPLOY / "poddefault.yaml"
    assert placeholders_in(path.read_text()) == {"PROFILE_NAMESPACE"}
    (pd,) = load(path, {"PROFILE_NAMESPACE": "alice"})
    assert pd["metadata"]["namespace"] == "alice"
    with pytest.raises(KeyError):  # unrendered: envsubst would leave an invalid namespace behind
        string.Template(path.read_text()).substitute({})


def test_service_accounts_mount_the_kubernetes_token_only_where_it_is_used():
    accounts = {sa["metadata"]["name"]: sa for sa in _by_kind("ServiceAccount")}
    assert set(accounts) == {SA_NAME, ONCALL_SA_NAME}
    for sa in accounts.values():
        assert sa["metadata"]["namespace"] == PLACEHOLDERS["AIRFLOW_NAMESPACE"]
    # Workers and triggerer: the in-cluster KServe connection needs the API token.
    assert accounts[SA_NAME]["automountServiceAccountToken"] is True
    # The api-server (on-call plugin) talks to KFP with the projected token and to nothing else.
    assert accounts[ONCALL_SA_NAME]["automountServiceAccountToken"] is False


def test_worker_pod_example_uses_the_service_account_and_projected_token():
    (pod,) = _by_kind("Pod")
    spec = pod["spec"]
    assert spec["serviceAccountName"] == SA_NAME
    assert spec["automountServiceAccountToken"] is False, "the check talks to KFP only"
    (volume,) = spec["volumes"]
    assert _projected_token(volume) == {"path": "token", "expirationSeconds": 7200, "audience": "pipelines.kubeflow.org"}
    (container,) = spec["containers"]
    assert {"name": volume["name"], "mountPath": TOKEN_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "KF_PIPELINES_SA_TOKEN_PATH", "value": f"{TOKEN_DIR}/token"} in container["env"]


def test_kfp_profile_bindings_grant_kubeflow_pipelines_edit_to_both_airflow_identities():
    """kubeflow-pipelines-edit is what KFP's SubjectAccessReview checks; kubeflow-edit would add
    pods/exec and secrets in the profile, which nothing here uses."""
    bindings = {doc["metadata"]["name"]: doc for doc in _by_kind("RoleBinding")}
    for name, account in (("airflow-kfp-bridge-kubeflow-pipelines-edit", SA_NAME),
                          ("airflow-kfp-bridge-oncall-kubeflow-pipelines-edit", ONCALL_SA_NAME)):
        kfp = bindings[name]
        assert kfp["metadata"]["namespace"] == PLACEHOLDERS["PROFILE_NAMESPACE"]
        assert kfp["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "kubeflow-pipelines-edit"}
        assert kfp["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                    "namespace": PLACEHOLDERS["AIRFLOW_NAMESPACE"]}]
    assert not [b for b in bindings.values() if b["roleRef"]["name"] == "kubeflow-edit"]


def test_helm_values_mount_the_token_into_workers_triggerer_and_api_server():
    values = yaml.safe_load((DEPLOY / "helm" / "values-airflow.yaml").read_text())
    volume_schema = k8s_definition_validator("io.k8s.api.core.v1.Volume")
    mount_schema = k8s_definition_validator("io.k8s.api.core.v1.VolumeMount")
    env_schema = k8s_definition_validator("io.k8s.api.core.v1.EnvVar")
    identities = {"workers": SA_NAME, "triggerer": SA_NAME, "apiServer": ONCALL_SA_NAME}
    for component, name in identities.items():
        section = values[component]
        assert {k: v for k, v in section["serviceAccount"].items() if k != "automountServiceAccountToken"} == {
            "create": False,
            "name": name,
        }, component
        (volume,) = section["extraVolumes"]
        (mount,) = section["extraVolumeMounts"]
        volume_schema.validate(volume)
        mount_schema.validate(mount)
        assert _projected_token(volume) == {"path": "token", "expirationSeconds": 7200, "audience": "pipelines.kubeflow.org"}
        assert mount == {"name": volume["name"], "mountPath": TOKEN_DIR, "readOnly": True}
    # The chart sets automountServiceAccountToken on the pod too (default true), which overrides the
    # ServiceAccount's false: the api-server's must be false here as well.
    assert values["apiServer"]["serviceAccount"]["automountServiceAccountToken"] is False
    assert values["apiServer"]["allowPodLogReading"] is False
    for component in ("workers", "triggerer"):
        assert values[component]["serviceAccount"].get("automountServiceAccountToken", True) is True
    env = {item["name"]: item for item in values["env"]}
    for item in env.values():
        env_schema.validate(item)
    assert env["KF_PIPELINES_SA_TOKEN_PATH"]["value"] == f"{TOKEN_DIR}/token"
    kfp_conn = yaml.safe_load(env["AIRFLOW_CONN_KFP_DEFAULT"]["value"])
    # In cluster: no password (static token) anywhere, the projected token is found by path.
    assert kfp_conn["conn_type"] == "kfp" and "password" not in kfp_conn
    kube_conn = yaml.safe_load(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]["value"])
    assert kube_conn["extra"]["in_cluster"] is True
    # Keys the official chart accepts at the top level (values.schema.json is 650 kB; not vendored).
    assert set(values) <= {"images", "airflowVersion", "env", "workers", "triggerer", "apiServer"}
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert f"apache/airflow:{values['airflowVersion']}-python3.11" in dockerfile


def test_chart_version_is_pinned_where_the_chart_is_installed():
    for path in (DEPLOY / "helm" / "values-airflow.yaml", DEPLOY.parent / "docs" / "deployment.md"):
        commands = [line for line in path.read_text().splitlines() if "helm upgrade --install" in line]
        assert commands, path
        for command in commands:
            assert f"--version {CHART_VERSION}" in command, f"{path}: {command.strip()}"
