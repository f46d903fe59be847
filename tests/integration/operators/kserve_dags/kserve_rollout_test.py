"""Test DAG: one KServeRolloutOperator configured from KFP_BRIDGE_TEST_ROLLOUT (JSON) at parse time.

``smoke`` may be ``"count:<file>"``: a callable smoke test that sends 200 requests to the
InferenceService's split URL while the canary holds, writes which revision answered each to
``<file>``, and checks one prediction from the new revision's tag route.
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kserve import KServeRolloutOperator

CONFIG = json.loads(os.environ.get("KFP_BRIDGE_TEST_ROLLOUT", "{}"))
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]


def count_split(url: str, out: str, split_url: str, name: str) -> bool:
    import httpx

    served: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for _ in range(200):
            resp = http.post(f"{split_url}/v1/models/{name}:predict", json={"instances": ROWS})
            resp.raise_for_status()
            rev = resp.headers["x-kfp-bridge-revision"]
            served[rev] = served.get(rev, 0) + 1
        latest = http.post(f"{url}/v1/models/{name}:predict", json={"instances": ROWS})
    with open(out, "w") as fh:
        json.dump({"served": served, "latest_revision": latest.headers.get("x-kfp-bridge-revision")}, fh)
    return latest.status_code == 200 and len(latest.json()["predictions"]) == len(ROWS)


smoke = CONFIG.get("smoke")
if isinstance(smoke, str) and smoke.startswith("count:"):
    out_file = smoke.split(":", 1)[1]

    def smoke(url: str) -> bool:  # noqa: F811 - the callable replaces the marker
        return count_split(url, out_file, CONFIG["split_url"], CONFIG["inference_service"])


with DAG(
    dag_id="kserve_rollout_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["test"],
) as dag:
    KServeRolloutOperator(
        task_id="rollout",
        inference_service=CONFIG.get("inference_service", "missing"),
        namespace=CONFIG.get("namespace", "default"),
        storage_uri=CONFIG.get("storage_uri", "/tmp/none"),
        canary_traffic_percent=CONFIG.get("canary_traffic_percent"),
        smoke_test=smoke,
        kubernetes_conn_id=CONFIG.get("conn_id", "kube_test"),
        deferrable=CONFIG.get("deferrable", False),
        timeout=CONFIG.get("timeout", 300),
    )
