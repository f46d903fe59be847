"""What a successful run of an example DAG did outside Airflow, read back from the stand-ins.

Training: exactly one KFP run tagged with the DAG run, SUCCEEDED on the KFP stand-in, whose
``model_dir`` now holds ``model.joblib``; for ``kfp_train`` also the asset event it recorded.
Serving: the InferenceService's spec names the expected model, all traffic is on the revision the
task reported, and predictions are answered by that revision's model server.
``reset_isvc`` puts an InferenceService back on a test model, so the next rollout is a real one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kfp_bridge.local.airflow_api import AirflowApiClient
from kfp_bridge.utils import kserve_status as ks
from tests.fixtures.airflow_checks import kfp_runs
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.fixtures.kube_stand_in import (
    IrisModels,
    KubeStandIn,
    condition,
    predictor_status,
    revision_traffic,
)

ASSET_URI = "kfp://iris-train/model"
PREDICTIONS = 6


def trained_model_dir(kfp: KfpStandIn, dag_id: str, run_id: str, task_id: str, root: str) -> str:
    """The ``model_dir`` of the one KFP run the task created; checks it SUCCEEDED and wrote the model."""
    found = kfp_runs(kfp, dag_id=dag_id, run_id=run_id, task_id=task_id)
    if len(found) != 1:
        raise AssertionError(f"{dag_id}/{run_id}: expected one KFP run of {task_id}, got {len(found)}")
    (run,) = found
    if run.state != "SUCCEEDED":
        raise AssertionError(f"KFP run {run.run_id} of {dag_id}/{run_id} is {run.state}: {run.error}")
    model_dir = run.runtime_config.parameters["model_dir"]
    if not model_dir.startswith(f"{root}/iris/"):
        raise AssertionError(f"KFP run {run.run_id}: model_dir {model_dir!r} is not under the run's model_root {root!r}")
    if not (Path(model_dir) / "model.joblib").is_file():
        raise AssertionError(f"KFP run {run.run_id} SUCCEEDED but {model_dir}/model.joblib does not exist")
    return model_dir


def asset_events(api: AirflowApiClient) -> list[dict[str, Any]]:
    response = api.get("/api/v2/assets/events", params={"order_by": "timestamp", "limit": 100})
    response.raise_for_status()
    return [event for event in response.json()["asset_events"] if event["uri"] == ASSET_URI]


def model_event(api: AirflowApiClient, run_id: str, model_dir: str) -> dict[str, Any]:
    """The one asset event kfp_train's run ``run_id`` recorded; its extra must name ``model_dir``."""
    found = [event for event in asset_events(api) if event["source_run_id"] == run_id]
    if len(found) != 1:
        raise AssertionError(f"kfp_train/{run_id}: expected one {ASSET_URI} event, got {found}")
    (event,) = found
    if event["extra"].get("model_uri") != f"file://{model_dir}":
        raise AssertionError(f"event {event['id']} names model {event['extra'].get('model_uri')!r}, not {model_dir}")
    return event


def taking_traffic(obj: dict[str, Any]) -> list[tuple[str, int]]:
    """The revisions that get requests (a tag route at 0 % gets none)."""
    return [(revision, percent) for revision, percent in revision_traffic(obj) if percent > 0]


def serving(kube: KubeStandIn, name: str, storage_uri: str, revision: str) -> str:
    """Check ``name`` serves ``storage_uri`` from ``revision`` alone; return a one-line summary."""
    obj = kube.get_isvc(name)
    predictor = obj["spec"]["predictor"]
    if ks.storage_uri(predictor) != storage_uri or "canaryTrafficPercent" in predictor:
        raise AssertionError(f"{name}: spec predictor is {predictor}, expected {storage_uri} with no canary")
    if taking_traffic(obj) != [(revision, 100)]:
        raise AssertionError(f"{name}: traffic {revision_traffic(obj)}, expected all on {revision}")
    from tests.integration.operators.test_kserve_rollout import served

    answered = served(kube, name, PREDICTIONS)
    if answered != {revision: PREDICTIONS}:
        raise AssertionError(f"{name}: predictions answered by {dict(answered)}, expected {revision} only")
    return f"{name} serves it on {revision}"


def reset_isvc(kube: KubeStandIn, name: str, models: IrisModels, timeout: float = 180.0) -> None:
    """Put ``name`` on whichever test model it does not serve now, wait until that revision takes all traffic."""
    obj = kube.get_isvc(name)
    current = ks.storage_uri(obj["spec"]["predictor"])
    target = f"file://{models.v2 if current == f'file://{models.v1}' else models.v1}"
    patched = kube.patch_isvc(
        name, {"spec": {"predictor": {"canaryTrafficPercent": None, "model": {"storageUri": target}}}}
    )
    generation = patched["metadata"]["generation"]

    deadline = time.monotonic() + timeout
    while True:
        obj = kube.get_isvc(name)
        status = obj.get("status") or {}
        latest = predictor_status(obj).get("latestReadyRevision")
        if (
            status.get("observedGeneration", 0) >= generation
            and condition(obj, "Ready") == "True"
            and predictor_status(obj).get("latestCreatedRevision") == latest
            and taking_traffic(obj) == [(latest, 100)]
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} not back on {target} after {timeout:.0f}s; status {status}")
        time.sleep(0.2)
