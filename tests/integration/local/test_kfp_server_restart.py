"""A restarted KFP stand-in keeps everything, and stops runs it was executing when it died (A.6)."""

from __future__ import annotations

import time

import pytest
from kfp import compiler

from tests.fixtures import kfp_pipelines as pipelines
from tests.fixtures.kfp_stand_in import start_kfp_stand_in
from tests.integration.local.kfp_helpers import tasks_by_name, wait_for_state

pytestmark = pytest.mark.integration


def test_restart_keeps_state_and_fails_interrupted_runs(tmp_path):
    state_dir = tmp_path / "state"
    package = tmp_path / "add.yaml"
    compiler.Compiler().compile(pipelines.add_and_double, str(package))
    pid_file = tmp_path / "pid"

    with start_kfp_stand_in(state_dir, token="restart-token") as first:
        client = first.client()
        experiment = client.create_experiment("kept-experiment")
        pipeline = client.upload_pipeline(str(package), pipeline_name="kept-pipeline")
        version = client.upload_pipeline_version(str(package), pipeline_version_name="kept-v2",
                                                 pipeline_id=pipeline.pipeline_id)
        finished = client.run_pipeline(experiment.experiment_id, "finished-run", pipeline_id=pipeline.pipeline_id,
                                       version_id=version.pipeline_version_id, params={"a": 1, "b": 2})
        wait_for_state(client, finished.run_id)
        interrupted = client.create_run_from_pipeline_func(
            pipelines.sleeper, arguments={"seconds": 120.0, "pid_file": str(pid_file)}, run_name="interrupted",
            experiment_name="kept-experiment",
        )
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the long step never started"
            time.sleep(0.1)
        first.kill()  # a crash: no shutdown hook runs

    component_pid = int(pid_file.read_text().split()[0])
    with start_kfp_stand_in(state_dir, token="restart-token") as second:
        client = second.client()
        assert client.get_experiment(experiment_name="kept-experiment").experiment_id == experiment.experiment_id
        assert client.get_pipeline(pipeline.pipeline_id).display_name == "kept-pipeline"
        versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
        assert sorted(v.display_name for v in versions) == ["kept-pipeline", "kept-v2"]
        done = client.get_run(finished.run_id)
        assert done.state == "SUCCEEDED"
        # Argo-node task details (fidelity K3): the steps are the add/double DAG nodes.
        assert {t.display_name: t.state for t in done.run_details.task_details
                if t.display_name in ("add", "double")} == {"add": "SUCCEEDED", "double": "SUCCEEDED"}

        stopped = client.get_run(interrupted.run_id)
        assert stopped.state == "FAILED"
        # KFP 2.17 carries no error text on a run (fidelity K4); the old message was stand-in-only.
        assert stopped.error is None
        assert tasks_by_name(stopped)["sleep-and-record"][0].state == "FAILED"
        # The orphaned run process group was reaped by the new server.
        import psutil

        assert not psutil.pid_exists(component_pid) or psutil.Process(component_pid).status() == psutil.STATUS_ZOMBIE

        client.runs.run_service_retry_run(run_id=interrupted.run_id)
        assert client.get_run(interrupted.run_id).state == "RUNNING"
        client.terminate_run(interrupted.run_id)
        assert wait_for_state(client, interrupted.run_id, timeout=10).state == "FAILED"  # terminated (K2)
