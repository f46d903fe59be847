"""A minimal but valid OpenAPI v3 per group-version, as ``/openapi/v3`` serves it.

What ``kubectl`` reads from it (k8s.io/cli-runtime ``resource/query_param_verifier_v3.go`` and
kubectl ``apply/patcher.go``): the PATCH operation of each kind, tagged with
``x-kubernetes-group-version-kind``, whose ``fieldValidation`` parameter says the server validates
fields itself (so kubectl does not download ``/openapi/v2`` to validate client-side), and whose
request media types say whether strategic merge patch is possible (it is not for custom
resources, nor here: kubectl then sends a JSON merge patch). Schemas keep unknown fields.
"""

from __future__ import annotations

from typing import Any

HASH = "kfp-bridge-local-1"
KINDS = {
    "apis/serving.kserve.io/v1beta1": [("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices", True)],
    "apis/apps/v1": [("apps", "v1", "Deployment", "deployments", False)],
    "api/v1": [("", "v1", "Pod", "pods", False)],
}
GROUP_VERSIONS = tuple(KINDS)
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}


def _schema_name(group: str, version: str, kind: str) -> str:
    prefix = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
    return f"{prefix}.{version}.{kind}"


def document(gv: str) -> dict[str, Any] | None:
    kinds = KINDS.get(gv.strip("/"))
    if kinds is None:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for group, version, kind, plural, writable in kinds:
        gvk = {"group": group, "version": version, "kind": kind}
        ref = {"$ref": f"#/components/schemas/{_schema_name(group, version, kind)}"}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        prefix = f"/{gv.strip('/')}/namespaces/{{namespace}}/{plural}"
        item: dict[str, Any] = {
            "get": {"operationId": f"read{kind}", "responses": ok, "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk},
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
        }
        if writable:
            item["patch"] = {
                "operationId": f"patch{kind}",
                "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES}},
                "responses": ok,
                "parameters": [_query("dryRun"), _query("fieldManager"), _query("fieldValidation"), _query("force")],
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }
            item["put"] = {**item["patch"], "operationId": f"replace{kind}", "x-kubernetes-action": "put",
                           "requestBody": {"content": {"application/json": {"schema": ref}}}}
            item["delete"] = {"operationId": f"delete{kind}", "responses": ok, "x-kubernetes-action": "delete",
                              "x-kubernetes-group-version-kind": gvk}
        paths[f"{prefix}/{{name}}"] = item
        collection: dict[str, Any] = {
            "get": {"operationId": f"list{kind}", "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk},
        }
        if writable:
            collection["post"] = {
                "operationId": f"create{kind}",
                "requestBody": {"content": {"application/json": {"schema": ref}}},
                "parameters": [_query("dryRun"), _query("fieldManager"), _query("fieldValidation")],
                "responses": ok,
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": gvk,
            }
        paths[prefix] = collection
        schemas[_schema_name(group, version, kind)] = {
            "type": "object",
            "description": f"{kind} ({'served by the local stand-in'})",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-group-version-kind": [gvk],
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
