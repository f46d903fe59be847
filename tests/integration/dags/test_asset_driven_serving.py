"""Asset-driven serving on a real Airflow 3 stack (issue 14, acceptance 3).

dags/kfp_train.py trains on the KFP stand-in and, on success, records an event on
``kfp://iris-train/model`` whose extra carries the model URI; dags/kfp_serve.py is scheduled on that
asset. The serving runs must be created by those events (run_type ``asset_triggered``), not by a
clock, and roll out exactly the URI each event carries; two trainings give two serving runs in order.

The first training is kfp_train's own daily schedule (the DAG is unpaused when parsed), the second a
REST trigger with ``logical_date: null`` and a different model root, so the two URIs differ. The
stack is this module's own: the example DAG ids and the InferenceService ``iris`` (on a private kube
stand-in) are then nobody else's, and no other test's run can add an event to the asset.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.fixtures.kube_stand_in import (
    TEST_TIMINGS,
    IrisModels,
    KubeStandIn,
    revision_traffic,
    start_kube_stand_in,
)

# Starts its own stack or takes minutes: make e2e, outside make test's 20-minute budget.
pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("asset_stack"), pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[3]
DAGS = REPO / "dags"
ASSET_URI = "kfp://iris-train/model"
RUN_TIMEOUT = 420
DEFAULT_ROOT = '"/tmp/kfp-bridge/models"'


@dataclass
class Env:
    stack: AirflowStack
    kube: KubeStandIn
    models: Path


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, kfp_stand_in: KfpStandIn, airflow_db_cache: Path, iris_models: IrisModels
) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("asset-driven")
    with start_kube_stand_in(root / "kube", token=secrets.token_hex(16), env=TEST_TIMINGS) as kube:
        kube.create_isvc("iris", iris_models.v1)
        kube.wait_condition("iris", "Ready", generation=1, timeout=180)
        conns = {
            "AIRFLOW_CONN_KFP_DEFAULT": json.dumps(
                {"conn_type": "kfp", "host": kfp_stand_in.host, "extra": {"token_path": str(kfp_stand_in.token_file)}}
            ),
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                {
                    "conn_type": "kubernetes",
                    "extra": {"kube_config_path": str(kube.kubeconfig), "ingress_address": kube.ingress_url},
                }
            ),
        }
        dags = root / "dags"
        (dags / "pipelines").mkdir(parents=True)
        (dags / "pipelines" / "iris.yaml").write_text((DAGS / "pipelines" / "iris.yaml").read_text())
        stack = AirflowStack(home=root / "home", dags_folder=dags, env=conns, cache_dir=airflow_db_cache)
        with stack:
            stack.wait_ready(240)
            yield Env(stack=stack, kube=kube, models=root / "models")


def _runs(stack: AirflowStack, dag_id: str) -> list[dict[str, Any]]:
    return stack.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "run_after"}).json()["dag_runs"]


def _wait_runs(stack: AirflowStack, dag_id: str, count: int, timeout: float = RUN_TIMEOUT) -> list[dict[str, Any]]:
    """Wait until ``dag_id`` has ``count`` runs, all finished; fail with the task states otherwise."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(stack, dag_id)
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{dag_id}: wanted {count} finished runs, got "
                + "; ".join(explain(stack, dag_id, run["dag_run_id"]) for run in runs)
            )
        time.sleep(2)


def _events(stack: AirflowStack) -> list[dict[str, Any]]:
    body = stack.get("/api/v2/assets/events", params={"order_by": "timestamp", "limit": 100}).json()
    return [event for event in body["asset_events"] if event["uri"] == ASSET_URI]


def test_each_training_event_creates_one_serving_run_that_rolls_out_its_model(env: Env, kfp_stand_in: KfpStandIn) -> None:
    stack = env.stack
    # The consumer first: an event only queues a run for DAGs already scheduled on the asset.
    stack.add_dag_file(DAGS / "kfp_serve.py")
    stack.wait_dag_parsed("kfp_serve", 120, file_name="kfp_serve.py")
    first_root = env.models / "scheduled"
    train = (DAGS / "kfp_train.py").read_text()
    assert DEFAULT_ROOT in train
    stack.add_dag_file(train.replace(DEFAULT_ROOT, json.dumps(str(first_root))), name="kfp_train.py")
    stack.wait_dag_parsed("kfp_train", 120, file_name="kfp_train.py")

    # Training 1: kfp_train's daily schedule (catchup=False: the latest interval, once unpaused).
    (train_1,) = _wait_runs(stack, "kfp_train", 1)
    assert (train_1["run_type"], train_1["state"]) == ("scheduled", "success"), explain(stack, "kfp_train", train_1["dag_run_id"])
    (serve_1,) = _wait_runs(stack, "kfp_serve", 1)
    assert serve_1["state"] == "success", explain(stack, "kfp_serve", serve_1["dag_run_id"])

    # Training 2: through the REST API, no logical date, another model root and C from the form's field.
    second_root = env.models / "manual"
    run_id = stack.trigger_dag("kfp_train", conf={"model_root": str(second_root), "C": 0.5})
    assert stack.wait_dag_run("kfp_train", run_id, RUN_TIMEOUT) == "success", explain(stack, "kfp_train", run_id)
    serve_runs = _wait_runs(stack, "kfp_serve", 2)
    assert [run["state"] for run in serve_runs] == ["success", "success"], [
        explain(stack, "kfp_serve", run["dag_run_id"]) for run in serve_runs
    ]
    assert len(_runs(stack, "kfp_train")) == 2

    events = _events(stack)
    assert [event["source_run_id"] for event in events] == [train_1["dag_run_id"], run_id]
    uris = [event["extra"]["model_uri"] for event in events]
    assert uris[0].startswith(f"file://{first_root}/iris/") and uris[1].startswith(f"file://{second_root}/iris/")
    for event in events:
        kfp_run = kfp_stand_in.client().get_run(event["extra"]["kfp_run_id"])
        assert kfp_run.state == "SUCCEEDED"
        assert kfp_run.run_id in event["extra"]["kfp_run_url"]
        assert event["extra"]["pipeline_name"] == "iris-train"
        assert event["extra"]["pipeline_version"].startswith("v-")
        assert event["extra"]["pipeline_version_id"] == kfp_run.pipeline_version_reference.pipeline_version_id
        assert kfp_run.runtime_config.parameters["model_dir"] == event["extra"]["model_uri"].removeprefix("file://")
        assert (Path(event["extra"]["model_uri"].removeprefix("file://")) / "model.joblib").is_file()
    assert kfp_stand_in.client().get_run(events[1]["extra"]["kfp_run_id"]).runtime_config.parameters["C"] == 0.5

    # Each serving run: created by the asset (not a clock), consumed exactly its training's event, in order.
    for serve, event in zip(serve_runs, events, strict=True):
        assert serve["run_type"] == "asset_triggered"
        consumed = stack.get(f"/api/v2/dags/kfp_serve/dagRuns/{serve['dag_run_id']}/upstreamAssetEvents").json()
        assert [e["id"] for e in consumed["asset_events"]] == [event["id"]]
        result = stack.xcom("kfp_serve", serve["dag_run_id"], "serve_iris")
        assert result["storage_uri"] == event["extra"]["model_uri"], result
    assert serve_runs[0]["run_after"] < serve_runs[1]["run_after"]

    # The service now serves the second training's model, on one revision.
    isvc = env.kube.get_isvc("iris")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == uris[1]
    assert [percent for _, percent in revision_traffic(isvc) if percent > 0] == [100]
