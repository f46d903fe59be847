"""The RBAC Role in deploy/ grants exactly the verbs KServeRolloutOperator uses: no more, no fewer.

The verbs are derived two ways, and both must equal the Role's:
* dynamically: real rollouts (sync canary + smoke test + promote, a deferrable canary through the
  trigger, and the rollback a kill mid-rollout makes) run against the kube stand-in while
  every request the kubernetes / kubernetes_asyncio clients send is recorded and mapped to its RBAC
  verb by Kubernetes' request-info rules (GET on an object = get, on a collection = list, with
  ``watch=true`` = watch, PATCH = patch, POST = create, PUT = update, DELETE = delete);
* statically: the CustomObjectsApi methods called anywhere in kfp_bridge's operators, hooks,
  triggers and sensors (``get_namespaced_custom_object`` -> get, ``list_...`` handed to a watch
  -> watch, ...). A new call (say ``delete_namespaced_custom_object``) fails this test until the
  Role is updated.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, load

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

CONN_ID = "kube_rbac"
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
ISVC_PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/[^/]+/inferenceservices(?P<name>/[^/]+)?$")
METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# CustomObjectsApi method -> RBAC verb (a list_ method passed to watch.stream is a watch).
API_VERBS = {"get": "get", "list": "list", "patch": "patch", "create": "create", "replace": "update",
             "delete": "delete"}


def _role() -> dict[str, Any]:
    (role,) = [d for d in load(DEPLOY / "rbac" / "kserve-rollout.yaml") if d["kind"] == "Role"]
    return role


def rbac_verb(method: str, url: str, query: Any) -> tuple[str, str]:
    """(verb, resource) for one request, following the API server's request-info rules."""
    parts = urlsplit(url)
    params = dict(query or [])
    if isinstance(query, (list, tuple)):
        params = {k: v for k, v in query}
    params.update(dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p))
    match = ISVC_PATH.match(parts.path)
    resource = "inferenceservices" if match else parts.path
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
    conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube_stand_in.kubeconfig)}}
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


def _ready(kube_stand_in, name: str, model: Path) -> None:
    kube_stand_in.create_isvc(name, model)
    kube_stand_in.wait_condition(name, "Ready", generation=1, timeout=180)


def _run_deferrable(op: Any, context: dict[str, Any]) -> Any:
    """What the worker and the triggerer do with a deferring operator, in this process."""
    from airflow.exceptions import TaskDeferred

    call, kwargs = op.execute, {"context": context}
    while True:
        try:
            return call(**kwargs)
        except TaskDeferred as deferred:
            async def first_event(trigger=deferred.trigger) -> Any:
                async for event in trigger.run():
                    return event.payload

            event = asyncio.run(first_event())
            call = getattr(op, deferred.method_name)
            kwargs = {"context": context, "event": event, **(deferred.kwargs or {})}


def _static_verbs() -> set[str]:
    """RBAC verbs implied by the CustomObjectsApi calls in the package (the stand-ins excluded)."""
    verbs: set[str] = set()
    sources = [p for folder in ("operators", "hooks", "triggers", "sensors", "utils")
               for p in (ROOT / "kfp_bridge" / folder).glob("*.py")]
    for path in sources:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else None
            if not name or not name.endswith("_namespaced_custom_object"):
                continue
            verb = API_VERBS[name.split("_", 1)[0]]
            verbs.add(verb)
        # A list method handed to watch.stream(...) is a watch, not a list.
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = call.func
            if isinstance(func, ast.Attribute) and func.attr == "stream" and call.args:
                first = call.args[0]
                if isinstance(first, ast.Attribute) and first.attr == "list_namespaced_custom_object":
                    verbs.add("watch")
                    verbs.discard("list")
    return verbs


def test_role_grants_exactly_the_verbs_a_rollout_uses(kube_stand_in, iris_models, kube_conn, recorded, capsys):
    from kfp_bridge.operators.kserve import STATE_KEY, KServeRolloutOperator

    name = "rbac-rollout"
    _ready(kube_stand_in, name, iris_models.v1)  # setup: not recorded
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
    assert _run_deferrable(deferring, _context())["outcome"] == "promoted"

    # 3. a kill mid-rollout rolls back from on_kill (given the state a rollout in progress saves).
    patches = recorded[("patch", "inferenceservices")]
    op._rollout = {**context["task_state_store"][STATE_KEY], "phase": "rollout"}
    op.on_kill()
    assert recorded[("patch", "inferenceservices")] == patches + 1, "on_kill did not patch the rollback"
    recorded.active = False

    used = {verb for verb, resource in recorded if resource == "inferenceservices"}
    other = sorted({(verb, resource) for verb, resource in recorded if resource != "inferenceservices"})
    role = _role()
    (rule,) = role["rules"]
    granted = set(rule["verbs"])
    static = _static_verbs()
    with capsys.disabled():
        print(f"\n  requests by RBAC verb: {dict(recorded)}\n  verbs in code: {sorted(static)}; "
              f"Role grants: {sorted(granted)}")
    assert other == [], f"requests outside inferenceservices need RBAC too: {other}"
    assert rule["apiGroups"] == ["serving.kserve.io"] and rule["resources"] == ["inferenceservices"]
    assert used == granted, f"rollouts used {sorted(used)}, the Role grants {sorted(granted)}"
    assert static == granted, f"the code calls {sorted(static)}, the Role grants {sorted(granted)}"


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
    (sa,) = load(DEPLOY / "airflow" / "serviceaccount.yaml")
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
    assert rbac_verb("GET", "http://k/api/v1/namespaces/default/pods", []) == ("list", "/api/v1/namespaces/default/pods")
