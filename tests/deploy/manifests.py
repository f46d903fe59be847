"""Load deploy/ manifests with their ``${PLACEHOLDER}``s substituted, and validate them offline.

The manifests are parametrized with envsubst-style placeholders (``${PROFILE_NAMESPACE}``, ...), which
``string.Template`` substitutes exactly as ``envsubst`` does for these names. Built-in kinds are
validated with kubernetes-validate (the Kubernetes OpenAPI schemas it vendors, strict: unknown
fields fail); the PodDefault CRD by its own openAPIV3Schema (tests/deploy/poddefault-crd.yaml).
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests must apply to
# Every placeholder the manifests may use, with the value the tests substitute.
PLACEHOLDERS = {
    "PROFILE_NAMESPACE": "team-ml",
    "AIRFLOW_NAMESPACE": "airflow",
    "SERVING_NAMESPACE": "models",
    "AIRFLOW_IMAGE": "registry.example.com/kfp-bridge-airflow:0.1.0",
}
CRD_FILE = Path(__file__).with_name("poddefault-crd.yaml")


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest under deploy/ (the Helm values file is not one)."""
    return sorted(p for p in DEPLOY.rglob("*.yaml") if "helm" not in p.relative_to(DEPLOY).parts)


def placeholders_in(text: str) -> set[str]:
    return {
        m.group("braced") or m.group("named")
        for m in string.Template.pattern.finditer(text)
        if m.group("braced") or m.group("named")
    }


def load(path: Path, values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    text = string.Template(path.read_text()).substitute(values or PLACEHOLDERS)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def all_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in load(path)]


@cache
def poddefault_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"]["names"]["kind"] == "PodDefault"
    return crd["spec"]["validation"]["openAPIV3Schema"]


@cache
def k8s_definition_validator(definition: str) -> Any:
    """A jsonschema validator for one Kubernetes definition, e.g. ``io.k8s.api.core.v1.Volume``."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    definitions = utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    resource = Resource.from_contents(definitions)  # registered under its $id
    schema = {"$ref": f"{resource.id()}#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=resource @ Registry())


def validate(resource: dict[str, Any]) -> str:
    """Validate one resource; return what it was checked against. Raises on any violation."""
    import jsonschema
    import kubernetes_validate

    if resource.get("kind") == "PodDefault":
        jsonschema.Draft7Validator(poddefault_schema()).validate(resource)
        # The webhook decodes these lists into core/v1 types and merges them into the pod.
        spec = resource["spec"]
        for field, definition in (
            ("volumes", "io.k8s.api.core.v1.Volume"),
            ("volumeMounts", "io.k8s.api.core.v1.VolumeMount"),
            ("env", "io.k8s.api.core.v1.EnvVar"),
        ):
            for item in spec.get(field, []):
                k8s_definition_validator(definition).validate(item)
        jsonschema.validate(spec["selector"], {"type": "object"})
        k8s_definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").validate(spec["selector"])
        return "PodDefault CRD openAPIV3Schema + core/v1 item schemas"
    version = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    return f"Kubernetes {version} (strict)"
