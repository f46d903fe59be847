"""The RBAC Role in deploy/ grants exactly the verbs KServeRolloutOperator uses: no more, no fewer.

The verbs are derived two ways:
* statically, and this must equal the Role: every Kubernetes API method referenced anywhere in
  kfp_bridge outside the stand-ins (``get_namespaced_custom_object`` -> inferenceservices get,
  ``list_namespaced_deployment`` called -> deployments list, handed to ``watch.stream`` ->
  deployments watch, ...). A verb used on any path, the rare ones included (the re-list after a
  410, Standard mode's pods), cannot be dropped from the Role, and a new call fails this test
  until the Role grants it;
* dynamically, and this must be within the Role: real rollouts (sync canary + smoke test +
  promote, a deferrable canary through the trigger, and the rollback a kill mid-rollout makes) run
  against the kube stand-in while every request the kubernetes / kubernetes_asyncio clients send is
  recorded and mapped to its RBAC verb by Kubernetes' request-info rules (GET on an object = get,
  on a collection = list, with ``watch=true`` = watch, PATCH = patch, POST = create, PUT = update,
  DELETE = delete).
The stand-in enforces the same Role (tests/integration/operators/test_kserve_rbac.py).
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, load
from tests.fixtures.deferral import run_deferrable

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

CONN_ID = "kube_rbac"
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
RESOURCE_PATH = re.compile(
    r"^/apis?(/(?P<group>[^/]+))?/v1(beta1)?/namespaces/[^/]+/(?P<resource>[a-z]+)(?P<name>/[^/]+)?$"
)
METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# Client method prefix -> RBAC verb (a list_ method passed to watch.stream is a watch).
API_VERBS = {"get": "get", "read": "get", "list": "list", "patch": "patch", "create": "create",
             "replace": "update", "delete": "delete"}
# Client method suffix -> (apiGroup, resource); custom objects here are only InferenceServices.
API_RESOURCES = {"custom_object": ("serving.kserve.io", "inferenceservices"),
                 "deployment": ("apps", "deployments"), "pod": ("", "pods"), "pod_log": ("", "pods/log")}
API_METHOD = re.compile(r"^(?P<verb>[a-z]+)_namespaced_(?P<kind>[a-z_]+?)(_status)?$")
# Modules whose Kubernetes calls go elsewhere: the stand-ins and the demo (they are the cluster),
# and hooks/kfp.py, whose pod-log reads in the KFP profile namespace are granted by kubeflow-edit
# (deploy/rbac/kfp-profile-access.yaml).
NOT_ROLLOUT = ("kfp_bridge/local/", "kfp_bridge/demo.py", "kfp_bridge/hooks/kfp.py")


def _role() -> dict[str, Any]:
    (role,) = [d for d in load(DEPLOY / "rbac" / "kserve-rollout.yaml") if d["kind"] == "Role"]
    return role


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def rbac_verb(method: str, url: str, query: Any) -> tuple[str, str]:
    """(verb, resource) for one request, following the API server's request-info rules."""
    parts = urlsplit(url)
    params = dict(query or [])
    if isinstance(query, (list, tuple)):
        params = {k: v for k, v in query}
    params.update(dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p))
    match = RESOURCE_PATH.match(parts.path)
    resource = match.group("resource") if match else parts.path
    if method == "GET":
        if str(params.get("watch", "")).lower() in ("true", "1"):
            return "watch", resource
        return ("get" if match and match.group("name") else "list"), resource
    if method == "DELETE" and match and not match.group("name"):
        return "deletecollection", resource
    return METHOD_VERBS.get(method, method.lower()), resource


class Recorder(Counter):
    """Counts (verb, resource) of the requests sent while ``active``: the operator's, not the setup's."""

    active = False


@pytest.fixture
def recorded(monkeypatch) -> Recorder:
    """Record every request of the sync and async Kubernetes clients (pass-through spies)."""
    from kubernetes.client import rest
    from kubernetes_asyncio.client import rest as arest

    calls = Recorder()
    sync_request, async_request = rest.RESTClientObject.request, arest.RESTClientObject.request

    def spy(self, method, url, query_params=None, *args, **kwargs):
        if calls.active:
            calls[rbac_verb(method, url, query_params)] += 1
        return sync_request(self, method, url, query_params, *args, **kwargs)

    async def aspy(self, method, url, query_params=None, *args, **kwargs):
        if calls.active:
            calls[rbac_verb(method, url, query_params)] += 1
        return await async_request(self, method, url, query_params, *args, **kwargs)

    monkeypatch.setattr(rest.RESTClientObject, "request", spy)
    monkeypatch.setattr(arest.RESTClientObject, "request", aspy)
    return calls


@pytest.fixture
def kube_conn(kube_stand_in, monkeypatch) -> str:
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube_stand_in.kubeconfig),
                                                 "ingress_address": kube_stand_in.ingress_url}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


class _Store(dict):
    def set(self, key: str, value: Any, **_: Any) -> None:
        self[key] = json.loads(json.dumps(value))


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _context() -> dict[str, Any]:
    return {"ti": _TI(), "task_state_store": _Store()}


def static_verbs(sources: list[Path]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) implied by the Kubernetes client methods referenced in ``sources``."""
    verbs: set[tuple[str, str, str]] = set()
    for path in sources:
        tree = ast.parse(path.read_text())
        streamed = {
            id(call.args[0]) for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "stream"
            and call.args
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not (match := API_METHOD.match(node.attr)):
                continue
            if match.group("kind") not in API_RESOURCES or match.group("verb") not in API_VERBS:
                continue
            group, resource = API_RESOURCES[match.group("kind")]
            # Handed to watch.stream: a watch; any other reference is a call of its own verb.
            verb = "watch" if id(node) in streamed else API_VERBS[match.group("verb")]
            verbs.add((group, resource, verb))
    return verbs


def rollout_sources() -> list[Path]:
    return [p for p in sorted((ROOT / "kfp_bridge").rglob("*.py"))
            if not str(p.relative_to(ROOT)).startswith(NOT_ROLLOUT)]


def test_role_grants_exactly_the_verbs_the_code_can_use():
    static = static_verbs(rollout_sources())
    granted = _granted(_role())
    assert static == granted, (
        f"the code calls {sorted(static - granted)} that the Role does not grant; "
        f"the Role grants {sorted(granted - static)} that no code uses"
    )
    # The rare paths are in: the re-list after a 410 and Standard mode's Deployment and pods.
    assert {("serving.kserve.io", "inferenceservices", "list"), ("apps", "deployments", "watch"),
            ("", "pods", "list")} <= static


def test_dropping_any_verb_from_the_role_fails_the_check():
    role = _role()
    for i, rule in enumerate(role["rules"]):
        for verb in rule["verbs"]:
            smaller = {**role, "rules": [*role["rules"][:i], {**rule, "verbs": [v for v in rule["verbs"] if v != verb]},
                                         *role["rules"][i + 1:]]}
            assert static_verbs(rollout_sources()) != _granted(smaller), f"dropping {verb} went unnoticed"


def test_static_verbs_read_calls_and_watches(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "def f(api, apps, core, w):\n"
        "    api.get_namespaced_custom_object()\n"
        "    api.list_namespaced_custom_object()\n"
        "    w.stream(apps.list_namespaced_deployment, 'ns')\n"
        "    core.read_namespaced_pod_log()\n"
    )
    assert static_verbs([source]) == {("serving.kserve.io", "inferenceservices", "get"),
                                      ("serving.kserve.io", "inferenceservices", "list"),
                                      ("apps", "deployments", "watch"), ("", "pods/log", "get")}


def test_real_rollouts_use_only_granted_verbs(kube_stand_in, iris_models, kube_conn, recorded, capsys):
    from kfp_bridge.operators.kserve import STATE_KEY, KServeRolloutOperator
    from kfp_bridge.utils.rollout import Rollout

    name = "rbac-rollout"
    kube_stand_in.create_ready([name], iris_models.v1)  # setup: not recorded
    smoke = {"payload": {"instances": ROWS}, "expected_shape": [3]}
    recorded.active = True

    # 1. sync 20% canary, smoke test, promote.
    op = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=f"file://{iris_models.v2}",
        canary_traffic_percent=20, smoke_test=smoke, kubernetes_conn_id=kube_conn, timeout=240,
    )
    context = _context()
    assert op.execute(context)["outcome"] == "promoted"

    # 2. back to v1, deferrable: the waits run in the trigger (kubernetes_asyncio).
    deferring = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=f"file://{iris_models.v1}",
        canary_traffic_percent=20, smoke_test=smoke, kubernetes_conn_id=kube_conn, timeout=240,
        deferrable=True,
    )
    assert run_deferrable(deferring, _context())["outcome"] == "promoted"

    # 3. a kill mid-rollout rolls back from on_kill (given the state a rollout in progress saves).
    patches = recorded[("patch", "inferenceservices")]
    op._rollout = Rollout.from_json({**context["task_state_store"][STATE_KEY], "phase": "rollout"})
    op.on_kill()
    assert recorded[("patch", "inferenceservices")] == patches + 1, "on_kill did not patch the rollback"
    recorded.active = False

    granted = {(resource, verb) for _, resource, verb in _granted(_role())}
    used = {(resource, verb) for verb, resource in recorded}
    with capsys.disabled():
        print(f"\n  requests by RBAC verb: {dict(recorded)}\n  Role grants: {sorted(granted)}")
    assert used <= granted, f"rollouts used {sorted(used - granted)}, which the Role does not grant"
    assert {("inferenceservices", v) for v in ("get", "patch", "watch")} <= used


def test_rbac_has_no_wildcards_and_binds_the_airflow_identity():
    docs = [doc for path in (DEPLOY / "rbac").glob("*.yaml") for doc in load(path)]
    for doc in docs:
        for rule in doc.get("rules", []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), f"{doc['kind']}/{doc['metadata']['name']}: wildcard in {key}"
        assert doc["kind"] in ("Role", "RoleBinding"), "namespaced grants only: no ClusterRole(Binding)"
    binding = next(d for d in docs if d["metadata"]["name"] == "kfp-bridge-kserve-rollout" and d["kind"] == "RoleBinding")
    role = _role()
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    sa = next(d for d in load(DEPLOY / "airflow" / "serviceaccount.yaml") if d["kind"] == "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]


def test_verb_mapping_follows_kubernetes_request_info():
    base = "http://k/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
    assert rbac_verb("GET", f"{base}/iris", []) == ("get", "inferenceservices")
    assert rbac_verb("GET", base, [("fieldSelector", "metadata.name=iris")]) == ("list", "inferenceservices")
    assert rbac_verb("GET", base, [("watch", True)]) == ("watch", "inferenceservices")
    assert rbac_verb("GET", f"{base}?watch=true", None) == ("watch", "inferenceservices")
    assert rbac_verb("PATCH", f"{base}/iris", []) == ("patch", "inferenceservices")
    assert rbac_verb("DELETE", base, []) == ("deletecollection", "inferenceservices")
    assert rbac_verb("GET", "http://k/api/v1/namespaces/default/pods", []) == ("list", "pods")
    assert rbac_verb("GET", "http://k/apis/apps/v1/namespaces/m/deployments", [("watch", "True")]) == (
        "watch", "deployments")
    assert rbac_verb("GET", "http://k/version", []) == ("list", "/version")
