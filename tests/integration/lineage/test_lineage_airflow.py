"""OpenLineage events of a train → serve DAG, captured with the OpenLineage file transport.

``airflow dags test`` runs the DAG with the OpenLineage provider enabled (its listener runs in the
task process, as in a worker), against the KFP and Kubernetes stand-ins: the training is the real
iris pipeline writing ``model.joblib`` to the model folder, the rollout serves that folder behind
a 20% canary and promotes it. The events file must hold START and COMPLETE for both tasks with the
provider's facets, and the rollout's input dataset must be the training's output dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.fixtures.kube_stand_in import IrisModels, KubeStandIn

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

DAG_FILE = Path(__file__).parent / "dags" / "lineage_train_serve.py"
PIPELINE = Path(__file__).resolve().parents[3] / "dags" / "pipelines" / "iris.yaml"
ISVC = "lineage-iris"


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def task_events(events: list[dict[str, Any]], dag_id: str, task_id: str) -> dict[str, dict[str, Any]]:
    """``{eventType: first event}`` of one task's job (``<dag_id>.<task_id>``), checking that every
    event is of one OpenLineage run. A deferred task sends START again when it resumes (Airflow
    calls the running listener for the resumed process); COMPLETE comes once."""
    mine = [event for event in events if event["job"]["name"] == f"{dag_id}.{task_id}"]
    assert len({event["run"]["runId"] for event in mine}) == 1, [event["run"]["runId"] for event in mine]
    types = [event["eventType"] for event in mine]
    assert types.count("COMPLETE") <= 1, types
    found: dict[str, dict[str, Any]] = {}
    for event in mine:
        found.setdefault(event["eventType"], event)
    return found


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side) or []]


@pytest.fixture
def lineage_env(kfp_stand_in: KfpStandIn, kube_stand_in: KubeStandIn, tmp_path: Path) -> dict[str, str]:
    events = tmp_path / "openlineage.jsonl"
    return {
        "AIRFLOW_CONN_KFP_LINEAGE": json.dumps(
            {"conn_type": "kfp", "host": kfp_stand_in.host, "extra": {"token_path": str(kfp_stand_in.token_file)}}
        ),
        "AIRFLOW_CONN_KUBE_LINEAGE": json.dumps(
            {
                "conn_type": "kubernetes",
                "extra": kube_stand_in.connection_extra(),
            }
        ),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "kfp-bridge-tests",
        "KFP_BRIDGE_TEST_EVENTS": str(events),
    }


@pytest.mark.parametrize("dag_id", ["lineage_train_serve", "lineage_train_serve_deferred"])
def test_train_and_serve_emit_connected_lineage(
    dag_id: str,
    lineage_env: dict[str, str],
    kfp_stand_in: KfpStandIn,
    kube_stand_in: KubeStandIn,
    iris_models: IrisModels,
    airflow_dags_test: Any,
    tmp_path: Path,
) -> None:
    isvc = f"{ISVC}-{'d' if 'deferred' in dag_id else 's'}"
    kube_stand_in.create_isvc(isvc, iris_models.v1)
    kube_stand_in.wait_condition(isvc, "Ready", generation=1, timeout=180)
    model_dir = tmp_path / "models" / "iris"
    conf = {"pipeline_file": str(PIPELINE), "model_path": str(model_dir), "isvc": isvc}

    proc = airflow_dags_test(DAG_FILE, dag_id, env=lineage_env, conf=conf, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert (model_dir / "model.joblib").is_file()  # the pipeline really wrote the model the rollout served

    events = read_events(Path(lineage_env["KFP_BRIDGE_TEST_EVENTS"]))
    train, serve = task_events(events, dag_id, "train"), task_events(events, dag_id, "serve")
    assert set(train) == {"START", "COMPLETE"}, sorted(train)
    assert set(serve) == {"START", "COMPLETE"}, sorted(serve)
    model = ("file", str(model_dir))

    # Training: the model location is the output, already on START (model_uri is rendered by then).
    assert datasets(train["START"], "outputs") == [model]
    done = train["COMPLETE"]
    assert datasets(done, "outputs") == [model]
    run = done["run"]["facets"]["kfpRun"]
    kfp_run = kfp_stand_in.client().get_run(run["runId"])
    assert run["state"] == "SUCCEEDED"
    assert run["runUrl"].endswith(f"/#/runs/details/{run['runId']}")
    assert run["experimentId"] == kfp_run.experiment_id
    assert run["experiment"] == "lineage"
    assert run["pipelineVersionId"] == kfp_run.pipeline_version_reference.pipeline_version_id
    assert run["modelUri"] == f"file://{model_dir}"
    assert run["_producer"] and run["_schemaURL"].endswith("#/$defs/KfpRunRunFacet")
    assert done["run"]["facets"]["externalQuery"]["externalQueryId"] == run["runId"]
    job = done["job"]["facets"]["kfpPipeline"]
    assert job["source"] == str(PIPELINE) and job["experiment"] == "lineage"

    # Rollout: its input is the training's output; its output the InferenceService, promoted.
    assert datasets(serve["START"], "inputs") == [model]
    finished = serve["COMPLETE"]
    assert datasets(finished, "inputs") == datasets(done, "outputs") == [model]
    cluster = kube_stand_in.url.split("://", 1)[1].rstrip("/")
    assert datasets(finished, "outputs") == [(f"kserve://{cluster}", f"default/{isvc}")]
    service = finished["outputs"][0]["facets"]["kserveInferenceService"]
    obj = kube_stand_in.api().get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "default", "inferenceservices", isvc
    )
    served = obj["status"]["components"]["predictor"]
    assert service["revision"] == served["latestReadyRevision"]
    assert service["traffic"] == [
        {"revision": t["revisionName"], "percent": t["percent"], "tag": t.get("tag") or ""}
        for t in served["traffic"]
    ]
    assert [t["percent"] for t in service["traffic"] if t["revision"] == service["revision"]] == [100]
    rollout = finished["run"]["facets"]["kserveRollout"]
    assert rollout["action"] == "rollout" and rollout["inferenceService"] == isvc
    assert rollout["storageUri"] == f"file://{model_dir}" and rollout["canary"] is True
    assert rollout["newRevision"] == service["revision"] != rollout["previousRevision"]

    # The pipeline's name and content-hash version, also after a deferral (the resumed process never
    # loaded the spec: they come back through the trigger's event into execute_complete).
    assert run["pipelineName"] == job["name"] == "iris-train"
    assert run["pipelineVersion"] == job["version"] and run["pipelineVersion"].startswith("v-")
