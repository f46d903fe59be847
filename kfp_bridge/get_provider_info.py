"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Airflow reads it at start-up, so it imports only the connection's form definition, which is
standard-library only (a unit test keeps it that way).
"""

from __future__ import annotations

from kfp_bridge.utils.kfp_connection import CONN_FIELDS, UI_FIELD_BEHAVIOUR


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
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            },
        ],
        "extra-links": [
            "kfp_bridge.links.kfp.KfpRunLink",
            "kfp_bridge.links.kserve.InferenceServiceLink",
        ],
    }
