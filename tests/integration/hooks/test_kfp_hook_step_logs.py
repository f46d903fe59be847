"""Failed steps' log tails through a Kubernetes connection (fidelity.md K4): KFP 2.17 keeps no step
error text (backend/src/apiserver/server/api_converter.go sets no ``error``), so the exception is
read from the executor pod's ``main`` container log, the pod found by KFP's ``pipeline/runid`` label
and Argo's ``workflows.argoproj.io/node-name`` annotation. The Kubernetes stand-in serves the KFP
stand-in's executor pods (pods list, pods/log with tailLines) from its state directory."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.utils.run_tags import task_identity
from kfp_bridge.utils.states import RunStatus
from tests.fixtures.kube_stand_in import TEST_TIMINGS, start_kube_stand_in
from tests.integration.operators.fidelity_pipelines import loop, nested

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kube_for_kfp(kfp_stand_in, tmp_path_factory: pytest.TempPathFactory):
    env = {**TEST_TIMINGS, "KFP_STATE_DIR": str(kfp_stand_in.state_dir)}
    with start_kube_stand_in(tmp_path_factory.mktemp("kube-logs"), token=secrets.token_hex(16), env=env) as kube:
        yield kube


def _run_failing(hook: KfpHook, func: Any, folder: Path, counter: Path) -> dict[str, Any]:
    path = folder / f"{func.name}.yaml"
    compiler.Compiler().compile(func, str(path))
    spec = yaml.safe_load(path.read_text())
    tag = task_identity("logs_dag", func.name, "manual__2026-01-01T00:00:00+00:00", None, "prod").tag
    pipeline_id, version_id, _ = hook.ensure_pipeline_version(spec, pipeline_name=func.name, version_name=f"{func.name}-v1")
    body = {
        "experiment_id": hook.ensure_experiment("kfp-bridge-logs"),
        "display_name": func.name,
        "description": tag,
        "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
        "runtime_config": {"parameters": {"counter_path": str(counter), "bad": 1}},
    }
    run_id = hook.create_run(body, tag=tag)["run_id"]
    deadline = time.monotonic() + 240
    while (run := hook.get_run(run_id)).get("state") not in ("FAILED", "SUCCEEDED"):
        assert time.monotonic() < deadline, run.get("state")
        time.sleep(1)
    return run


@pytest.mark.parametrize(("func", "step"), [(nested, "bridge-inner/explode"), (loop, "for-loop-2[1]/explode")])
def test_failed_step_log_tail_holds_the_exception(
    kfp_connection, kube_for_kfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, func: Any, step: str
) -> None:
    hook = KfpHook(kfp_connection("kfp_logs"))
    extra = {"kube_config_path": str(kube_for_kfp.kubeconfig), "namespace": "kubeflow"}
    monkeypatch.setenv("AIRFLOW_CONN_KFP_LOGS_K8S", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    run = _run_failing(hook, func, tmp_path, tmp_path / "counter")
    assert run["state"] == "FAILED"
    status = RunStatus.from_api(run, hook.pipeline_spec_of(run))
    assert [s.name for s in status.failed_steps] == [step]

    tails = hook.step_log_tails(run["run_id"], status.failed_steps, kubernetes_conn_id="kfp_logs_k8s", lines=30)
    assert "item 1 exploded on purpose" in tails[step]
    message = status.failure_message(run_url=hook.settings.run_url(run["run_id"]), log_tails=tails)
    assert f"step '{step}' failed" in message and "item 1 exploded on purpose" in message
