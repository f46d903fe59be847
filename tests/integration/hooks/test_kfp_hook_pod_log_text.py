"""A failed step's log tail is the pod log's text, line by line (fidelity.md K4: the exception is only
in the executor pod's ``main`` log, read with ``pods/log`` and ``tailLines``).

kubernetes (the Python client) 36.x returns ``read_namespaced_pod_log`` as ``str(bytes)``: the text
``b'...'`` with every newline escaped, one line in all (kubernetes-client/python#2596, a v36
regression: ``api_client.__call_api`` no longer decodes a ``str`` response). The failure message and
the on-call tab showed one unreadable line instead of the last lines of the log until the hook read
the log raw and decoded it (``_pod_log_text``).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest
import yaml
from kfp import compiler

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.utils.run_tags import task_identity
from kfp_bridge.utils.states import RunStatus
from tests.fixtures.kube_stand_in import TEST_TIMINGS, start_kube_stand_in
from tests.integration.operators.fidelity_pipelines import loop

pytestmark = pytest.mark.integration

STEP = "for-loop-2[1]/explode"
EXCEPTION = "RuntimeError: item 1 exploded on purpose"


def test_log_tail_is_the_last_lines_of_the_pod_log_as_text(
    kfp_stand_in, kfp_connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**TEST_TIMINGS, "KFP_STATE_DIR": str(kfp_stand_in.state_dir)}
    with start_kube_stand_in(tmp_path / "kube", token=secrets.token_hex(16), env=env) as kube:
        extra = {"kube_config_path": str(kube.kubeconfig), "namespace": "kubeflow"}
        monkeypatch.setenv(
            "AIRFLOW_CONN_KFP_TEXT_K8S", json.dumps({"conn_type": "kubernetes", "extra": extra})
        )
        hook = KfpHook(kfp_connection("kfp_text"))
        path = tmp_path / "loop.yaml"
        compiler.Compiler().compile(loop, str(path))
        spec = yaml.safe_load(path.read_text())
        tag = task_identity("text_dag", "loop", "manual__2026-01-01T00:00:00+00:00", None, "prod").tag
        pipeline_id, version_id, _ = hook.ensure_pipeline_version(
            spec, pipeline_name="loop", version_name="loop-v1"
        )
        body = {
            "experiment_id": hook.ensure_experiment("kfp-bridge-logs"),
            "display_name": "loop",
            "description": tag,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": {"counter_path": str(tmp_path / "counter"), "bad": 1}},
        }
        run_id = hook.create_run(body, tag=tag)["run_id"]
        deadline = time.monotonic() + 240
        while (run := hook.get_run(run_id)).get("state") not in ("FAILED", "SUCCEEDED"):
            assert time.monotonic() < deadline, run.get("state")
            time.sleep(1)
        status = RunStatus.from_api(run, spec)
        assert [s.name for s in status.failed_steps] == [STEP]

        tail = hook.step_log_tails(run_id, status.failed_steps, kubernetes_conn_id="kfp_text_k8s", lines=5)[
            STEP
        ]

    assert EXCEPTION in tail  # holds either way: the text is there, only not as lines
    lines = tail.rstrip("\n").splitlines()
    assert not tail.startswith("b'"), tail[:200]
    assert 1 < len(lines) <= 5, lines
    assert lines[-1].startswith(EXCEPTION), lines
    message = status.failure_message(log_tails={STEP: tail})
    assert f"      {lines[-1]}" in message.splitlines()
