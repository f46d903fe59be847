"""The stand-in's RBAC authorizer, rule by rule.

Upstream: kubernetes ``staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go``
(verbs list/watch/deletecollection, subresources, a fieldSelector name on list/watch) and
``plugin/pkg/auth/authorizer/rbac/rbac.go`` + ``pkg/apis/rbac/v1/evaluation_helpers.go``
(``RuleAllows``: verbs, apiGroups, resources with ``*`` and ``*/sub``, resourceNames).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kfp_bridge.local.kube.errors import KubeApiError
from kfp_bridge.local.kube.rbac import Attributes, Policy, identity_for, request_attributes

REPO = Path(__file__).resolve().parents[3]
SA = identity_for("system:serviceaccount:airflow:airflow-kfp-bridge")
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/serving/inferenceservices"


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"{ISVC}/m", "", ("get", "inferenceservices", "", "m")),
        ("GET", ISVC, "", ("list", "inferenceservices", "", "")),
        ("GET", ISVC, "watch=true&fieldSelector=metadata.name%3Dm", ("watch", "inferenceservices", "", "m")),
        ("GET", ISVC, "watch=1", ("watch", "inferenceservices", "", "")),
        ("PATCH", f"{ISVC}/m", "", ("patch", "inferenceservices", "", "m")),
        ("PATCH", f"{ISVC}/m/status", "", ("patch", "inferenceservices", "status", "m")),
        ("DELETE", ISVC, "", ("deletecollection", "inferenceservices", "", "")),
        ("GET", "/api/v1/namespaces/p/pods/x/log", "container=main", ("get", "pods", "log", "x")),
        ("POST", ISVC, "", ("create", "inferenceservices", "", "")),
        ("PUT", f"{ISVC}/m", "", ("update", "inferenceservices", "", "m")),
    ],
)
def test_request_attributes(method, path, query, expected):
    from urllib.parse import unquote

    attrs = request_attributes(method, path, unquote(query))
    assert (attrs.verb, attrs.resource, attrs.subresource, attrs.name) == expected
    assert attrs.namespace in ("serving", "p")


def _policy(tmp_path: Path, rules: list[dict], kind: str = "Role") -> Policy:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": "r"}, "rules": rules}
    if kind == "Role":
        role["metadata"]["namespace"] = "serving"
    binding = {
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": "serving"},
        "roleRef": {"kind": kind, "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "airflow-kfp-bridge", "namespace": "airflow"}],
    }
    policy = Policy()
    policy.add(role)
    policy.add(binding)
    return policy


def test_shipped_role_allows_exactly_its_verbs():
    manifest = REPO / "deploy" / "rbac" / "kserve-rollout.yaml"
    text = manifest.read_text().replace("${SERVING_NAMESPACE}", "serving").replace("${AIRFLOW_NAMESPACE}", "airflow")
    policy = Policy()
    for doc in yaml.safe_load_all(text):
        policy.add(doc)
    role = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Role")
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    for verb in ("get", "list", "watch", "patch", "create", "update", "delete", "deletecollection"):
        attrs = Attributes(verb, ISVC, "serving.kserve.io", "inferenceservices", "", "serving", "m")
        assert policy.authorize(SA, attrs) is (verb in verbs), verb
    # A RoleBinding grants only in its own namespace.
    elsewhere = Attributes("get", ISVC, "serving.kserve.io", "inferenceservices", "", "other", "m")
    assert not policy.authorize(SA, elsewhere)


def test_subresource_needs_its_own_rule(tmp_path):
    policy = _policy(tmp_path, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    log = Attributes("get", "/x", "", "pods", "log", "serving", "p1")
    assert policy.authorize(SA, Attributes("get", "/x", "", "pods", "", "serving", "p1"))
    assert not policy.authorize(SA, log)
    with_log = _policy(tmp_path, [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}])
    assert with_log.authorize(SA, log)
    star = _policy(tmp_path, [{"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}])
    assert star.authorize(SA, log) and not star.authorize(SA, Attributes("get", "/x", "", "pods", "", "serving", "p1"))


def test_resource_names_limit_named_requests_only(tmp_path):
    policy = _policy(
        tmp_path,
        [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "resourceNames": ["m"],
          "verbs": ["get", "list", "watch"]}],
        kind="ClusterRole",
    )
    named = Attributes("get", ISVC, "serving.kserve.io", "inferenceservices", "", "serving", "m")
    assert policy.authorize(SA, named)
    assert not policy.authorize(SA, Attributes("get", ISVC, "serving.kserve.io", "inferenceservices", "", "serving", "n"))
    # An unnamed list is not covered by resourceNames; a watch narrowed to the name is.
    assert not policy.authorize(SA, Attributes("list", ISVC, "serving.kserve.io", "inferenceservices", "", "serving"))
    assert policy.authorize(SA, Attributes("watch", ISVC, "serving.kserve.io", "inferenceservices", "", "serving", "m"))


def test_forbidden_status_has_the_apiservers_words(tmp_path):
    policy = _policy(tmp_path, [])
    with pytest.raises(KubeApiError) as denied:
        policy.check(SA, Attributes("list", ISVC, "serving.kserve.io", "inferenceservices", "", "serving"))
    body = denied.value.body()
    assert body["code"] == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'inferenceservices.serving.kserve.io is forbidden: User "system:serviceaccount:airflow:airflow-kfp-bridge" '
        'cannot list resource "inferenceservices" in API group "serving.kserve.io" in the namespace "serving"'
    )
    assert body["details"] == {"group": "serving.kserve.io", "kind": "inferenceservices"}
    with pytest.raises(KubeApiError) as log:
        policy.check(SA, Attributes("get", "/x", "", "pods", "log", "p", "pod-1"))
    assert log.value.message == (
        'pods "pod-1" is forbidden: User "system:serviceaccount:airflow:airflow-kfp-bridge" cannot get resource '
        '"pods/log" in API group "" in the namespace "p"'
    )


def test_groups_and_masters(tmp_path):
    policy = Policy()
    policy.add({"kind": "ClusterRole", "metadata": {"name": "view"},
                "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]})
    policy.add({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "system:serviceaccounts:airflow"}]})
    dep = Attributes("get", "/x", "apps", "deployments", "", "anywhere", "d")
    assert policy.authorize(SA, dep)
    assert not policy.authorize(identity_for("someone"), dep)
    assert policy.authorize(identity_for("admin", ["system:masters"]), Attributes("delete", "/x", "x", "y", "", "z"))
