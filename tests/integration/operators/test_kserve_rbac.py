"""Rollouts under the shipped RBAC Role, enforced by the kube stand-in like the Kubernetes authorizer.

The operator's connection authenticates as the Airflow service account, held to
deploy/rbac/kserve-rollout.yaml in the serving namespace; the test itself acts as cluster admin. A
model held loading (FIFO) makes the wait long; the stand-in keeps watch history for a few seconds
only, so the operator's watch, resumed from its last resourceVersion, gets 410 Gone by time (as
from an apiserver's watch cache) and must re-list:
* with the shipped Role the re-list is allowed and the rollout finishes (promoted);
* with ``list`` removed the re-list is a 403: the rollout is rolled back (100 % the previous model),
  never left split.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kfp_bridge.operators.kserve import STATE_KEY, KServeRolloutError, KServeRolloutOperator
from tests.fixtures.kube_stand_in import (
    ROLLOUT_ROLE,
    KubeStandIn,
    predictor_status,
    rbac_policy,
    release,
    revision_traffic,
    slow_model,
    start_kube_stand_in,
)
from tests.integration.operators.test_kserve_rollout import ROWS, Requests, _context, _run_in_thread

pytestmark = [pytest.mark.integration]

CONN_ID = "kube_rbac_sa"
WATCH_WINDOW_S = 3  # watch history kept (the apiserver's is minutes): an idle watch resumes into a 410
NAME = "rbac-isvc"


def _no_list_role() -> str:
    text = ROLLOUT_ROLE.read_text()
    granted = 'verbs: ["get", "list", "patch", "watch"]'
    assert text.count(granted) == 1, "the shipped Role changed; update this test's edit"
    return text.replace(granted, 'verbs: ["get", "patch", "watch"]')


@pytest.fixture(params=["shipped", "without-list"])
def rbac_cluster(request, tmp_path: Path, iris_models, monkeypatch) -> Iterator[tuple[str, KubeStandIn]]:
    """A private stand-in enforcing the Role (shipped, or with ``list`` removed) for the operator's token."""
    sa_token = secrets.token_hex(16)
    role_yaml = None if request.param == "shipped" else _no_list_role()
    policy = rbac_policy(tmp_path / "rbac", sa_token, role_yaml=role_yaml)
    env = {"BOOKMARK_INTERVAL_S": "1", "WATCH_WINDOW_S": str(WATCH_WINDOW_S)}
    with start_kube_stand_in(tmp_path / "kube", token=secrets.token_hex(16), rbac=policy, env=env) as kube:
        config = yaml.safe_load(kube.kubeconfig.read_text())
        config["users"][0]["user"] = {"token": sa_token}
        sa_kubeconfig = tmp_path / "sa-kubeconfig"
        sa_kubeconfig.write_text(yaml.safe_dump(config))
        extra = {"kube_config_path": str(sa_kubeconfig), "ingress_address": kube.ingress_url}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "kubernetes", "extra": extra}))
        kube.create_isvc(NAME, iris_models.v1)
        kube.wait_condition(NAME, "Ready", timeout=180)
        yield request.param, kube


def _wait_watching(kube: KubeStandIn, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while kube.admin("GET", "stats")["watchesOpen"] < 1:
        assert time.monotonic() < deadline, "the operator never opened its watch"
        time.sleep(0.05)


def test_410_during_a_long_wait_relists_under_the_role_or_rolls_back_without_list(
    rbac_cluster, iris_models, tmp_path, capfd
):
    role, kube = rbac_cluster
    r1, r2 = f"{NAME}-predictor-00001", f"{NAME}-predictor-00002"
    model = slow_model(tmp_path / "v2-slow")
    op = KServeRolloutOperator(
        task_id="t", inference_service=NAME, storage_uri=f"file://{model}", canary_traffic_percent=20,
        smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]}, kubernetes_conn_id=CONN_ID,
        timeout=180,
    )
    context = _context()
    worker: threading.Thread | None = None
    try:
        with Requests(kube, NAME) as load:
            worker, outcome = _run_in_thread(op, context)
            kube.wait_for(NAME, lambda o: predictor_status(o).get("latestCreatedRevision") == r2,
                          timeout=60, what="the canary revision created")
            _wait_watching(kube)
            # Elsewhere the cluster moves on; the watched object does not change while the model loads,
            # so the watch's resourceVersion falls out of the history window.
            kube.create_isvc("rbac-bump", "/nonexistent", namespace="elsewhere")
            time.sleep(WATCH_WINDOW_S + 2)
            assert kube.admin("POST", "drop-watches")["dropped"] >= 1  # the watch ends; it resumes into a 410
            if role == "shipped":
                time.sleep(1.0)
                _wait_watching(kube)  # re-listed and watching again, still waiting for the canary
                assert worker.is_alive(), outcome
                release(model, iris_models.v2)
            worker.join(timeout=180)
            assert not worker.is_alive()
    finally:
        if worker is None or worker.is_alive() or role != "shipped":
            release_if_read(model, iris_models.v2)
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "expired (410); re-listing" in text
    obj = kube.get_isvc(NAME)
    traffic = revision_traffic(obj)
    assert load.failures == [], load.failures[:5]
    if role == "shipped":
        assert "error" not in outcome, outcome.get("error")
        assert (outcome["result"]["outcome"], outcome["result"]["new_revision"]) == ("promoted", r2)
        assert traffic == [(r2, 100)]
        return
    error = outcome.get("error")
    assert isinstance(error, KServeRolloutError), outcome
    assert "HTTP 403" in str(error) and "Rolled back to" in str(error), str(error)
    # 100 % the previous model (r1, or the restored spec's revision serving v1), not split.
    assert len({rev for rev, percent in traffic if percent > 0}) == 1 and r2 not in dict(traffic), traffic
    assert obj["spec"]["predictor"]["model"]["storageUri"] == f"file://{iris_models.v1}"
    assert context["task_state_store"][STATE_KEY]["phase"] == "rolled_back"
    assert r1 in load.served and r2 not in load.served


def release_if_read(model: Path, real: Path) -> None:
    """Unblock a model server still reading the FIFO (so the stand-in stops cleanly), if there is one."""
    def run() -> None:
        with contextlib.suppress(Exception):
            release(model, real, timeout=5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
