"""`make up` -> the example DAGs are in Airflow's REST API without import errors, a DAG triggered
through the REST API succeeds on the stand-ins; `make down` -> no process of the stack is left.

This runs the real Makefile targets as a user would (with the state directory and UI port moved
to a temporary place through KFP_BRIDGE_DEVSTACK_DIR / KFP_BRIDGE_DEVSTACK_PORT so a developer's
own `make up` is not disturbed). It starts its own stack, so it has its own xdist group.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pendulum
import psutil
import pytest

from kfp_bridge.local.airflow import free_port
from kfp_bridge.local.airflow_api import AirflowApiClient
from kfp_bridge.local.devstack import read_state, stack_processes

# Starts its own stack or takes minutes: make e2e, outside make test's 20-minute budget.
pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.xdist_group("devstack"), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = {"kfp_train", "train_and_serve"}


def rest_commands(port: int) -> list[str]:
    """The REST commands in docs/deployment.md's bash blocks, pointed at ``port``."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL) for line in block.splitlines()
             if "http://127.0.0.1:8080/" in line]
    assert len(lines) == 2, lines
    return [line.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for line in lines]


def _not_zombie(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_run(api: AirflowApiClient, dag_id: str, run_id: str, timeout: float) -> str:
    """Poll the run's state; a slow answer from a loaded machine is retried, not a failure."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        try:
            state = api.dag_run(dag_id, run_id)["state"]
        except httpx.TimeoutException:
            continue
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    return f"still {state!r} after {timeout:.0f}s"


def _make(target: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_make_up_serves_the_example_dags_and_make_down_leaves_nothing(tmp_path, capsys):
    state_dir = tmp_path / "devstack"
    port = free_port()
    env = {**os.environ, "KFP_BRIDGE_DEVSTACK_DIR": str(state_dir), "KFP_BRIDGE_DEVSTACK_PORT": str(port)}
    timings: dict[str, float] = {}
    started = time.monotonic()
    up = _make("up", env, timeout=540)
    timings["make up"] = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
        url = f"http://127.0.0.1:{port}"
        assert f"Airflow UI:     {url}" in up.stdout and "login admin / admin" in up.stdout, up.stdout
        assert "make down" in up.stdout
        state = read_state(state_dir)
        assert state and state["status"] == "ready" and state["url"] == url
        running = {p.pid for p in stack_processes(state_dir)}
        assert state["supervisor_pid"] in running and len(running) >= 6, running  # supervisor, 2 stand-ins, 4 Airflow

        api = AirflowApiClient(url, {"admin": "admin"}, request_timeout=60)
        health = api.health()
        assert all(health[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
        dags = {d["dag_id"]: d for d in api.list_dags()}
        assert EXAMPLE_DAGS <= set(dags), sorted(dags)
        assert api.import_errors() == []
        assert all(dags[d]["is_paused"] for d in EXAMPLE_DAGS), "example DAGs start paused"

        # The demo's InferenceService exists and is ready on the kube stand-in.
        from kubernetes import client, config

        custom = client.CustomObjectsApi(config.new_client_from_config(config_file=state["kubeconfig"]))
        isvc = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", "default", "inferenceservices", "iris")
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in isvc["status"]["conditions"])

        # A run triggered through the REST API succeeds: the KFP pipeline runs on the KFP stand-in and
        # the deferred task completes in the triggerer.
        started = time.monotonic()
        run_id = api.trigger_dag("kfp_train", conf={"model_root": str(tmp_path / "models")},
                                 logical_date=pendulum.now("UTC"))
        api.set_paused("kfp_train", False)
        assert _wait_run(api, "kfp_train", run_id, timeout=420) == "success"
        timings["kfp_train run"] = time.monotonic() - started
        tries = api.task_tries("kfp_train", run_id, "train_iris")
        assert [t["state"] for t in tries][-1] == "success"
        model_dirs = list((tmp_path / "models" / "iris").glob("*/model.joblib"))
        assert model_dirs, "the KFP run wrote no model"

        # The REST commands docs/deployment.md shows, verbatim but for the port: the trigger answers
        # with a new run (make down then also has a running task to stop).
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(rest_commands(port))],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        created = json.loads(out.stdout)
        assert created["dag_id"] == "kfp_train" and created["state"] in ("queued", "running"), created
        assert created["logical_date"], "the documented trigger passes a logical date"
        api.close()
        running = stack_processes(state_dir)
    finally:
        started = time.monotonic()
        down = _make("down", env, timeout=180)
        timings["make down"] = time.monotonic() - started

    assert down.returncode == 0, down.stdout + down.stderr
    assert "no process left" in down.stdout, down.stdout
    assert stack_processes(state_dir) == []
    # is_running() compares create times, so a recycled pid does not count.
    assert not [p.pid for p in running if p.is_running() and _not_zombie(p)]
    assert json.loads((state_dir / "state.json").read_text())["status"] == "stopped"
    with capsys.disabled():
        print("\n  " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
