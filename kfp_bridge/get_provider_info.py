"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

A literal dict on purpose: Airflow reads it at start-up, so it must import nothing.
"""

from __future__ import annotations


def get_provider_info() -> dict:
    return {
        "package-name": "kfp-bridge",
        "name": "Kubeflow Pipelines and KServe (kfp-bridge)",
        "description": "Run Kubeflow Pipelines v2 runs and KServe InferenceService rollouts as Airflow tasks.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Kubeflow Pipelines",
                "external-doc-url": "https://www.kubeflow.org/docs/components/pipelines/",
                "tags": ["software"],
            },
            {
                "integration-name": "KServe",
                "external-doc-url": "https://kserve.github.io/website/",
                "tags": ["software"],
            },
        ],
        "hooks": [
            {"integration-name": "Kubeflow Pipelines", "python-modules": ["kfp_bridge.hooks.kfp"]},
            {"integration-name": "KServe", "python-modules": ["kfp_bridge.hooks.kserve"]},
        ],
        "operators": [
            {"integration-name": "Kubeflow Pipelines", "python-modules": ["kfp_bridge.operators.kfp"]},
            {
                "integration-name": "KServe",
                "python-modules": ["kfp_bridge.operators.kserve", "kfp_bridge.operators.kserve_release"],
            },
        ],
        "sensors": [
            {"integration-name": "Kubeflow Pipelines", "python-modules": ["kfp_bridge.sensors.kfp"]},
        ],
        "triggers": [
            {"integration-name": "Kubeflow Pipelines", "python-modules": ["kfp_bridge.triggers.kfp"]},
            {"integration-name": "KServe", "python-modules": ["kfp_bridge.triggers.kserve"]},
        ],
        "connection-types": [
            {
                "hook-class-name": "kfp_bridge.hooks.kfp.KfpHook",
                "connection-type": "kfp",
                "hook-name": "Kubeflow Pipelines",
                # Mirrors kfp_bridge.utils.kfp_connection (a unit test keeps them equal).
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "KFP API URL", "password": "Static bearer token (optional)"},
                    "placeholders": {
                        "host": "https://kubeflow.example.com/pipeline",
                        "password": "leave empty to use the projected token file",
                    },
                },
                "conn-fields": {
                    "token_path": {
                        "label": "Token file",
                        "description": (
                            "Projected service-account token file, re-read on every request. Default: "
                            "$KF_PIPELINES_SA_TOKEN_PATH, then /var/run/secrets/kubeflow/pipelines/token when it exists."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "namespace": {
                        "label": "Namespace",
                        "description": "Kubeflow profile namespace for experiments and runs (multi-user KFP).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "ui_host": {
                        "label": "KFP UI URL",
                        "description": "Base URL for links to runs; default: the API host.",
                        "schema": {"type": ["string", "null"], "format": "url"},
                    },
                    "verify_ssl": {
                        "label": "Verify TLS",
                        "description": "Verify the server certificate (default true).",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "ca_cert": {
                        "label": "CA bundle path",
                        "description": "PEM file with the CA that signed the KFP endpoint's certificate.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure_token": {
                        "label": "Allow token over plain http",
                        "description": (
                            "Send the bearer token over http:// to a host that is neither loopback nor a cluster-local "
                            "service name (default false: such a connection is refused; use https)."
                        ),
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "multi_user": {
                        "label": "Multi-user KFP",
                        "description": "The server needs a namespace (fail before any side effect when none is set).",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            },
        ],
        "extra-links": [
            "kfp_bridge.links.kfp.KfpRunLink",
            "kfp_bridge.links.kserve.InferenceServiceLink",
        ],
    }
