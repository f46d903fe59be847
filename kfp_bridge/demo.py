"""``make demo``: the main job end to end on the embedded stand-ins.

1. Starts the KFP stand-in and the Kubernetes/KServe stand-in, both requiring a bearer token read
   from a file (the projected-token pattern).
2. Creates the ``iris`` InferenceService serving a first model, as a platform team would have.
3. Runs the ``train_and_serve`` DAG with ``airflow dags test``: KFP trains a new model into a dated
   directory, then the rollout canaries it at 20%, smoke-tests it and promotes it.
4. Prints each task's state, the KFP run and its steps, the traffic before and after, and one
   prediction answered by the new revision. Everything lives under ``.demo/`` and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
ISVC = "iris"
SAMPLE = {"instances": [[6.2, 2.9, 4.3, 1.3]]}


def main() -> int:
    from kfp_bridge.local.airflow import run_dags_test
    from kfp_bridge.local.launch import run_stand_in

    work = ROOT / ".demo"
    work.mkdir(exist_ok=True)
    token_file = work / "token"
    token_file.write_text(secrets.token_urlsafe(24))
    token_file.chmod(0o600)
    models = work / "models"
    os.environ["HOME"] = str(work / "home")  # kfp.Client may write ~/.config/kfp

    print("== starting the stand-ins (kfp-bridge local kfp / local kube) ...", flush=True)
    with run_stand_in("kfp", work / "kfp-state", token_file=token_file) as kfp_server, run_stand_in(
        # The kube stand-in also serves the KFP run's executor pods (failed-step log tails).
        "kube", work / "kube-state", token_file=token_file, kube_options={"KFP_STATE_DIR": str(work / "kfp-state")}
    ) as kube_server:
        kubeconfig = work / "kube-state" / "kubeconfig"
        print(f"   KFP API {kfp_server.url}; Kubernetes API {kube_server.url} (kubeconfig {kubeconfig})")
        api = _custom_objects(kubeconfig)
        isvc = _create_initial_service(api, models / "initial")
        before = _traffic(isvc)
        print(f"== InferenceService {ISVC} ready at {isvc['status']['url']}; traffic before: {before}")

        env = {
            "AIRFLOW_CONN_KFP_DEFAULT": json.dumps(
                {"conn_type": "kfp", "host": kfp_server.url, "extra": {"token_path": str(token_file)}}
            ),
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(
                # Service host names (iris.default.example.com) resolve nowhere here: smoke tests go
                # through the stand-in's ingress with the Host header, as from outside a cluster.
                {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kubeconfig), "namespace": "default",
                                                      "ingress_address": kube_server.ingress_url}}
            ),
            "HOME": str(work / "home"),
        }
        print("== airflow dags test train_and_serve (deferrable tasks; triggers in-process) ...", flush=True)
        result = run_dags_test(
            DAGS / "train_and_serve.py",
            "train_and_serve",
            home=work / "airflow",
            env=env,
            conf={"model_root": str(models), "inference_service": ISVC},
            timeout=1200,
        )
        states = _task_states(work / "airflow", "train_and_serve")
        print("== Airflow task states")
        for task, state in states.items():
            print(f"   {task}: {state}")
        run_ok = _report_kfp_run(kfp_server.url, token_file.read_text().strip())
        after_obj = api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, ISVC)
        print(f"== traffic after: {_traffic(after_obj)}")
        revision, prediction = _predict(kube_server.ingress_url, after_obj["status"]["url"])
        print(f"== prediction for {SAMPLE['instances'][0]}: {prediction} (served by {revision})")
        new_revision = after_obj["status"]["components"]["predictor"].get("latestReadyRevision")

    ok = (
        result.returncode == 0
        and states
        and all(state == "success" for state in states.values())
        and run_ok
        and revision == new_revision
    )
    if not ok:
        print(f"\nDEMO FAILED (airflow exit code {result.returncode}); log: {work / 'airflow' / 'logs' / 'dags-test.log'}")
        print("\n".join(result.stdout.splitlines()[-40:]))
        return 1
    print("\nDEMO OK")
    return 0


def _custom_objects(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    return client.CustomObjectsApi(api_client)


def _create_initial_service(api: Any, model_dir: Path) -> dict[str, Any]:
    """The service the platform team already runs: a first iris model, fully rolled out."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    model_dir.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500, C=0.1).fit(features, labels), model_dir / "model.joblib")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": ISVC, "namespace": "default"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}}},
    }
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    except ApiException as exc:
        if exc.status != 409:  # a previous demo left it: reuse it
            raise
    give_up = time.monotonic() + 180
    while time.monotonic() < give_up:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, ISVC)
        status = obj.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        time.sleep(1)
    raise TimeoutError(f"InferenceService {ISVC} did not become ready")


def _traffic(obj: dict[str, Any]) -> str:
    traffic = ((obj.get("status") or {}).get("components") or {}).get("predictor", {}).get("traffic") or []
    return ", ".join(f"{t.get('revisionName')}={t.get('percent')}%" for t in traffic) or "(no traffic split)"


def _predict(ingress_url: str | None, service_url: str) -> tuple[str, Any]:
    """One prediction through the ingress, addressed by the service's host name (Host header)."""
    from urllib.parse import urlparse

    import httpx

    assert ingress_url, "the Kubernetes stand-in wrote no ingress address"
    response = httpx.post(f"{ingress_url}/v1/models/{ISVC}:predict", json=SAMPLE, timeout=30,
                          headers={"host": urlparse(service_url).netloc})
    response.raise_for_status()
    return response.headers.get("x-kfp-bridge-revision", "?"), response.json().get("predictions")


def _task_states(home: Path, dag_id: str) -> dict[str, str]:
    """Final state of each task of the DAG's latest run, read from the demo's Airflow database."""
    import sqlite3

    from kfp_bridge.local.airflow import DB_NAME

    with sqlite3.connect(home / DB_NAME) as db:
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY task_id, map_index",
            (dag_id, dag_id),
        ).fetchall()
    return {(task if index < 0 else f"{task}[{index}]"): state for task, index, state in rows}


def _report_kfp_run(host: str, token: str) -> bool:
    import kfp

    warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
    client = kfp.Client(host=host, existing_token=token, namespace="demo")
    runs = client.list_runs(page_size=5, sort_by="created_at desc").runs or []
    if not runs:
        print("== no KFP run was created")
        return False
    run = client.get_run(runs[0].run_id)
    print(f"== KFP run {run.run_id}: {run.state}")
    print(f"   link: {host}/#/runs/details/{run.run_id}")
    for task in (run.run_details.task_details or []) if run.run_details else []:
        print(f"   step {task.display_name:<22} {task.state}")
    model_dir = (run.runtime_config.parameters or {}).get("model_dir") if run.runtime_config else None
    if model_dir:
        model = Path(model_dir) / "model.joblib"
        print(f"   model: {model} ({'present' if model.exists() else 'MISSING'})")
    return run.state == "SUCCEEDED"


if __name__ == "__main__":
    sys.exit(main())
