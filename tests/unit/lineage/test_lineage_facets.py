"""Facets built from real operators (kfp_bridge.lineage.facts/facets/mixins), before and after execute.

What ``execute`` leaves on an operator is set as it would be (the run id, a KfpHook with its
settings, the loaded spec, the rollout state); the KFP run and InferenceService dicts have the shape
the hooks return. The emitted events (listener, transport) are covered by
tests/integration/lineage/test_lineage_airflow.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attr
import jsonschema
import pytest
from openlineage.client.serde import Serde

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.lineage.facets import kfp_run_lineage, kserve_lineage
from kfp_bridge.lineage.facts import kfp_run_facts, kserve_facts
from kfp_bridge.operators.kfp import KfpRunOperator
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.utils import rollout as ro
from kfp_bridge.utils.pipeline_specs import load_pipeline_spec, version_name

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "kfp_bridge/lineage/schemas/kfp_bridge.json").read_text())
IRIS = REPO / "dags/pipelines/iris.yaml"


def check_schema(facet: Any, definition: str) -> dict[str, Any]:
    """The facet as it goes on the wire, valid against its definition in the shipped schema."""
    wire = Serde.to_dict(facet)
    assert facet._schemaURL.endswith(f"#/$defs/{definition}")
    own = SCHEMA["$defs"][definition]["allOf"][1]  # the OpenLineage base part is remote
    jsonschema.validate(wire, own)
    return wire


@pytest.fixture
def kfp_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    body = {"conn_type": "kfp", "host": "http://kfp.test:8888", "extra": {"ui_host": "http://ui.test"}}
    monkeypatch.setenv("AIRFLOW_CONN_KFP_LINEAGE_UNIT", json.dumps(body))
    return "kfp_lineage_unit"


def test_kfp_start_names_the_model_and_the_pipeline_source() -> None:
    op = KfpRunOperator(task_id="train", pipeline="pipelines/iris.yaml", experiment="iris", model_uri="file:///m/iris/")
    lineage = op.get_openlineage_facets_on_start()
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/m/iris")]
    assert lineage.inputs == []
    assert lineage.run_facets == {}  # no run yet
    job = check_schema(lineage.job_facets["kfpPipeline"], "KfpPipelineJobFacet")
    assert (job["source"], job["experiment"]) == ("pipelines/iris.yaml", "iris") and "name" not in job


def test_kfp_without_model_uri_has_no_output() -> None:
    op = KfpRunOperator(task_id="train", pipeline="p.yaml")
    assert op.get_openlineage_facets_on_start().outputs == []


def test_kfp_complete_carries_the_run_the_pipeline_and_its_version(kfp_conn: str) -> None:
    op = KfpRunOperator(task_id="train", pipeline=str(IRIS), experiment="iris", model_uri="/m/iris", kfp_conn_id=kfp_conn)
    spec = load_pipeline_spec(str(IRIS))
    op._run_id, op._spec, op._hook = "run-1", spec, KfpHook(kfp_conn_id=kfp_conn)
    op._hook.settings  # noqa: B018 - execute reads it first (fails fast on a bad connection)
    run = {
        "run_id": "run-1",
        "state": "SUCCEEDED",
        "experiment_id": "exp-1",
        "pipeline_version_reference": {"pipeline_id": "p-1", "pipeline_version_id": "pv-1"},
        "run_details": {"task_details": []},
    }
    lineage = kfp_run_lineage(kfp_run_facts(op, run))
    facet = check_schema(lineage.run_facets["kfpRun"], "KfpRunRunFacet")
    assert facet["runId"] == "run-1" and facet["state"] == "SUCCEEDED"
    assert facet["runUrl"] == "http://ui.test/#/runs/details/run-1"
    assert (facet["experiment"], facet["experimentId"]) == ("iris", "exp-1")
    assert (facet["pipelineName"], facet["pipelineVersion"], facet["pipelineVersionId"]) == (
        "iris-train",
        version_name(spec),
        "pv-1",
    )
    assert facet["modelUri"] == "/m/iris"
    external = Serde.to_dict(lineage.run_facets["externalQuery"])
    assert (external["externalQueryId"], external["source"]) == ("run-1", "http://kfp.test:8888")
    job = check_schema(lineage.job_facets["kfpPipeline"], "KfpPipelineJobFacet")
    assert (job["name"], job["version"], job["versionId"]) == ("iris-train", version_name(spec), "pv-1")
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", "/m/iris")]


def test_kfp_run_unreadable_keeps_what_the_operator_knows(kfp_conn: str) -> None:
    op = KfpRunOperator(task_id="train", pipeline="p.yaml", kfp_conn_id=kfp_conn)
    op._run_id, op._hook = "run-2", KfpHook(kfp_conn_id=kfp_conn)
    op._hook.settings  # noqa: B018

    def refuse(run_id: str) -> dict[str, Any]:
        raise ConnectionError("KFP is down")

    op._hook.get_run = refuse  # type: ignore[method-assign]
    lineage = op.get_openlineage_facets_on_complete(None)
    facet = Serde.to_dict(lineage.run_facets["kfpRun"])
    assert facet["runId"] == "run-2" and facet["runUrl"].endswith("/#/runs/details/run-2")
    assert "state" not in facet  # not read, so not claimed


def _isvc(traffic: list[dict[str, Any]], storage_uri: str = "file:///m/iris") -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml", "generation": 3, "annotations": {}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}},
        "status": {
            "url": "http://iris.ml.example.com",
            "components": {"predictor": {"latestReadyRevision": "iris-predictor-00002", "traffic": traffic}},
        },
    }


def _rollout(**kw: Any) -> ro.Rollout:
    base = dict(
        name="iris", namespace="ml", mode="Knative", target_uri="file:///m/iris", previous_uri="/m/old",
        previous_predictor={}, previous_revision="iris-predictor-00001", canary=True, percent=20,
        new_revision="iris-predictor-00002", phase=ro.Phase.DONE, smoke="passed",
    )
    return ro.Rollout(**{**base, **kw})


def test_rollout_start_has_the_model_as_input_only() -> None:
    op = KServeRolloutOperator(task_id="serve", inference_service="iris", storage_uri="/m/iris/")
    lineage = op.get_openlineage_facets_on_start()
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/m/iris")]
    assert lineage.outputs == []
    facet = check_schema(lineage.run_facets["kserveRollout"], "KServeRolloutRunFacet")
    assert (facet["action"], facet["inferenceService"], facet["storageUri"]) == ("rollout", "iris", "/m/iris/")


@pytest.mark.parametrize(
    ("traffic", "serving"),
    [
        ([{"revisionName": "iris-predictor-00002", "percent": 100, "tag": "latest"}], "iris-predictor-00002"),
        # promote=False: the canary (the latest ready revision) serves the new model beside the old one
        (
            [
                {"revisionName": "iris-predictor-00002", "percent": 20, "tag": "latest"},
                {"revisionName": "iris-predictor-00001", "percent": 80, "tag": "prev"},
            ],
            "iris-predictor-00002",
        ),
    ],
)
def test_rollout_complete_outputs_the_inference_service(traffic: list[dict[str, Any]], serving: str) -> None:
    op = KServeRolloutOperator(task_id="serve", inference_service="iris", namespace="ml", storage_uri="file:///m/iris")
    op._rollout = _rollout()

    class Client:  # what KubernetesHook.api_client caches after execute: only its configuration is read
        class configuration:  # noqa: N801
            host = "https://10.0.0.1:443"

    op._hook = type("Hook", (), {})()
    op._hook.api_client = Client()
    lineage = kserve_lineage(kserve_facts(op, _isvc(traffic)), finished=True)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/m/iris")]
    (service,) = lineage.outputs
    assert (service.namespace, service.name) == ("kserve://10.0.0.1:443", "ml/iris")
    facet = check_schema(service.facets["kserveInferenceService"], "KServeInferenceServiceDatasetFacet")
    assert facet["revision"] == serving
    assert facet["traffic"] == [
        {"revision": t["revisionName"], "percent": t["percent"], "tag": t["tag"]} for t in traffic
    ]
    run = check_schema(lineage.run_facets["kserveRollout"], "KServeRolloutRunFacet")
    assert (run["previousRevision"], run["newRevision"], run["canary"], run["smoke"]) == (
        "iris-predictor-00001",
        "iris-predictor-00002",
        True,
        "passed",
    )


def test_no_service_output_without_the_cluster() -> None:
    # No client was built (the task failed before reaching the cluster): no dataset with a guessed name.
    op = KServeRolloutOperator(task_id="serve", inference_service="iris", storage_uri="/m/iris")
    lineage = kserve_lineage(kserve_facts(op, _isvc([])), finished=True)
    assert lineage.outputs == []


def test_rollback_input_is_the_model_served_afterwards() -> None:
    from kfp_bridge.operators.kserve_release import KServeRollbackOperator

    op = KServeRollbackOperator(task_id="rollback", rollout_task_id="canary")
    op._rollout = _rollout(phase=ro.Phase.ROLLED_BACK)
    isvc = _isvc([{"revisionName": "iris-predictor-00001", "percent": 100}], storage_uri="/m/old")
    lineage = kserve_lineage(kserve_facts(op, isvc), finished=True)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/m/old")]
    assert Serde.to_dict(lineage.run_facets["kserveRollout"])["action"] == "rollback"
    assert Serde.to_dict(lineage.run_facets["kserveRollout"])["revision"] == "iris-predictor-00001"


def test_facets_are_attrs_classes_on_the_openlineage_bases() -> None:
    from openlineage.client.generated.base import DatasetFacet, JobFacet, RunFacet

    from kfp_bridge.lineage import facets

    assert issubclass(facets.KfpRunRunFacet, RunFacet) and attr.has(facets.KfpRunRunFacet)
    assert issubclass(facets.KServeRolloutRunFacet, RunFacet)
    assert issubclass(facets.KfpPipelineJobFacet, JobFacet)
    assert issubclass(facets.KServeInferenceServiceDatasetFacet, DatasetFacet)


def test_parsing_a_dag_imports_no_openlineage() -> None:
    """Importing the operators (what a DAG file does) loads neither OpenLineage nor the facet code;
    Airflow's own configuration loads only the provider's package metadata."""
    code = (
        "import sys\n"
        "import kfp_bridge.operators.kfp, kfp_bridge.operators.kserve, kfp_bridge.operators.kserve_release\n"
        "allowed = {'airflow.providers.openlineage', 'airflow.providers.openlineage.get_provider_info'}\n"
        "bad = sorted(m for m in sys.modules if (m == 'openlineage' or m.startswith('openlineage.')\n"
        "    or m.startswith('airflow.providers.openlineage') or m in ('kfp_bridge.lineage.facets',\n"
        "    'kfp_bridge.lineage.facts')) and m not in allowed)\n"
        "print(bad)\n"
        "assert hasattr(kfp_bridge.operators.kfp.KfpRunOperator, 'get_openlineage_facets_on_complete')\n"
        "assert hasattr(kfp_bridge.operators.kserve.KServeRolloutOperator, 'get_openlineage_facets_on_complete')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
