"""Rollout DAGs for the shared Airflow stack: everything per run comes from ``dag_run.conf``.

``kserve_ops_crash``: one sync rollout with a retry (the test SIGKILLs the first try).
``kserve_ops_kill``: a sync and a deferrable rollout side by side (the test marks both failed).
``kserve_ops_canary``: a deferrable rollout with ``promote=False`` (the canary stays).
``kserve_ops_split``: a deferrable rollout whose smoke test (a callable) counts which revision
answers 200 requests to the split URL while the canary holds.
``kserve_ops_rollout``: a plain sync rollout with a smoke-test spec.
Connection ``kube_ops`` is created by the test module through the REST API.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from kfp_bridge.operators.kserve import KServeRolloutOperator

CONN_ID = "kube_ops"
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
SMOKE = {"payload": {"instances": ROWS}, "expected_shape": [3], "allowed_values": [0, 1, 2]}
START = pendulum.datetime(2026, 11, 1, tz="UTC")


def count_split(url: str) -> bool:
    """Smoke test: 200 requests to the service's host name while the canary holds, then one to ``url``
    (the ``latest`` tag's host name), all through the ingress with the Host header (KServe routes by
    host name; the names do not resolve here)."""
    import json
    from urllib.parse import urlsplit

    import httpx
    from airflow.sdk import get_current_context

    conf = get_current_context()["dag_run"].conf
    name = conf["split_isvc"]
    predict = f"{conf['ingress']}/v1/models/{name}:predict"
    service_host = urlsplit(url).netloc.removeprefix("latest-").replace(f"{name}-predictor.", f"{name}.", 1)
    served: dict[str, int] = {}
    with httpx.Client(timeout=30) as http:
        for _ in range(200):
            resp = http.post(predict, json={"instances": ROWS}, headers={"host": service_host})
            resp.raise_for_status()
            revision = resp.headers["x-kfp-bridge-revision"]
            served[revision] = served.get(revision, 0) + 1
        latest = http.post(predict, json={"instances": ROWS}, headers={"host": urlsplit(url).netloc})
    with open(conf["counts_file"], "w") as fh:
        json.dump({"served": served, "latest_revision": latest.headers.get("x-kfp-bridge-revision")}, fh)
    return latest.status_code == 200 and len(latest.json()["predictions"]) == len(ROWS)


def rollout(task_id: str, prefix: str, **kwargs: object) -> KServeRolloutOperator:
    return KServeRolloutOperator(
        task_id=task_id,
        inference_service="{{ dag_run.conf['" + prefix + "_isvc'] }}",
        storage_uri="{{ dag_run.conf['" + prefix + "_uri'] }}",
        namespace="default",
        canary_traffic_percent=20,
        kubernetes_conn_id=CONN_ID,
        timeout=180,
        **{"smoke_test": SMOKE, **kwargs},
    )


with DAG(dag_id="kserve_ops_crash", schedule=None, start_date=START, catchup=False, tags=["test"]):
    rollout("rollout", "crash", retries=1, retry_delay=timedelta(seconds=1))

with DAG(dag_id="kserve_ops_kill", schedule=None, start_date=START, catchup=False, tags=["test"]):
    rollout("sync", "sync", deferrable=False)
    rollout("deferred", "deferred", deferrable=True)

with DAG(dag_id="kserve_ops_canary", schedule=None, start_date=START, catchup=False, tags=["test"]):
    rollout("canary", "canary", deferrable=True, promote=False)

with DAG(dag_id="kserve_ops_split", schedule=None, start_date=START, catchup=False, tags=["test"]):
    rollout("rollout", "split", deferrable=True, smoke_test=count_split)

with DAG(dag_id="kserve_ops_rollout", schedule=None, start_date=START, catchup=False, tags=["test"]):
    rollout("rollout", "plain", deferrable=False)
