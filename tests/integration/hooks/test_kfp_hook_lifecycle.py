"""KfpHook's run lifecycle against the KFP stand-in as hard as KFP 2.17 (reference/fidelity.md):
the real kfp_server_api client, the real server protocol, no mocks.

* K1 (backend/src/apiserver/server/list_request_util.go): the filter is unescaped twice, so a task
  whose Airflow run id carries ``+00:00`` (every scheduled and manual run) must still be found by its
  tag after a crash between creating the run and saving its id: 0 duplicates.
* K10: several runs with one tag → a deterministic pick.
* K2 (apiserver/resource/resource_manager.go): terminate ends FAILED; the provider says who did it.
* K5 (common/util/workflow.go GenerateRetryExecution): retry of the terminated run is accepted.
* K9 (apiserver/server/run_server.go): a multi-user server without a namespace fails test_connection
  before anything is created, and says to set the namespace.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kfp import compiler

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.utils.run_tags import task_identity
from kfp_bridge.utils.states import RunStatus
from tests.fixtures.kfp_stand_in import start_kfp_stand_in
from tests.integration.operators.pipelines import sleeper

pytestmark = pytest.mark.integration

RUN_IDS = ["scheduled__2026-01-01T00:00:00+00:00", "manual__2026-11-28T06:00:00.123456+00:00"]


@pytest.fixture(scope="module")
def sleeper_spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("pipelines") / "sleeper.yaml"
    compiler.Compiler().compile(sleeper, str(path))
    return yaml.safe_load(path.read_text())


@pytest.fixture
def hook_factory(kfp_connection):
    conn_id = kfp_connection("kfp_lifecycle")
    return lambda: KfpHook(conn_id)


def _create(hook: KfpHook, spec: dict[str, Any], tag: str, seconds: float) -> dict[str, Any]:
    experiment_id = hook.ensure_experiment("kfp-bridge-lifecycle")
    pipeline_id, version_id, _ = hook.ensure_pipeline_version(
        spec, pipeline_name="bridge-sleeper", version_name="lifecycle-v1"
    )
    body = {
        "experiment_id": experiment_id,
        "display_name": "lifecycle",
        "description": tag,
        "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
        "runtime_config": {"parameters": {"seconds": seconds}},
    }
    return hook.create_run(body, tag=tag)


def _wait_state(hook: KfpHook, run_id: str, states: set[str], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = hook.get_run(run_id)
        if run.get("state") in states:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.get('state')}"
        time.sleep(0.5)


@pytest.mark.parametrize("airflow_run_id", RUN_IDS, ids=["scheduled", "manual"])
def test_crash_between_create_and_save_finds_the_run_again(hook_factory, sleeper_spec, kfp_stand_in, airflow_run_id):
    identity = task_identity("lifecycle_dag", "train", airflow_run_id, None, "prod")
    created = _create(hook_factory(), sleeper_spec, identity.tag, 0.1)
    # The worker died before saving the id: the next attempt has only its identity.
    run, found_by = hook_factory().find_task_run(identity, None)
    assert run is not None and run["run_id"] == created["run_id"] and found_by == "run tag"
    assert [r.run_id for r in kfp_stand_in.all_runs() if r.description == identity.tag] == [created["run_id"]]
    # Another Airflow deployment sharing the namespace does not adopt it.
    other = task_identity("lifecycle_dag", "train", airflow_run_id, None, "staging")
    assert hook_factory().find_task_run(other, None) == (None, None)


def test_run_of_the_previous_version_is_found_by_its_legacy_tag(hook_factory, sleeper_spec):
    identity = task_identity("lifecycle_dag", "legacy", RUN_IDS[0], None, "prod")
    created = _create(hook_factory(), sleeper_spec, identity.legacy_tag, 0.1)
    run, found_by = hook_factory().find_task_run(identity, None)
    assert (run["run_id"], found_by) == (created["run_id"], "legacy run tag")


def test_several_runs_with_one_tag_pick_the_latest(hook_factory, sleeper_spec, capfd):
    identity = task_identity("lifecycle_dag", "twice", RUN_IDS[1], 3, "prod")
    hook = hook_factory()
    _create(hook, sleeper_spec, identity.tag, 0.1)
    time.sleep(1.1)  # KFP times are whole seconds (K10)
    second = _create(hook, sleeper_spec, identity.tag, 0.1)
    assert hook.find_run_by_tag(identity.tag)["run_id"] == second["run_id"]
    out = capfd.readouterr()
    assert f"2 KFP runs carry tag {identity.tag}" in out.out + out.err


def test_terminate_ends_failed_reported_as_terminated_by_airflow_then_retry(hook_factory, sleeper_spec):
    identity = task_identity("lifecycle_dag", "killed", RUN_IDS[0], None, "prod")
    hook = hook_factory()
    run_id = _create(hook, sleeper_spec, identity.tag, 600)["run_id"]
    _wait_state(hook, run_id, {"RUNNING"})
    final = hook.terminate_and_wait(run_id)
    assert final["state"] == "FAILED"  # K2: never CANCELED on 2.17
    status = RunStatus.from_api(final, hook.pipeline_spec_of(final), terminated_by_airflow="the task was killed")
    message = status.failure_message()
    assert status.failed_steps == () and "terminated by Airflow (the task was killed); no step failed" in message
    assert "step 'sleep-for' failed" not in message
    # Without the record the run still blames no step: its interrupted pod did not fail by itself.
    assert RunStatus.from_api(final, hook.pipeline_spec_of(final)).failed_steps == ()

    retried = hook.retry_and_confirm(run_id, confirm_seconds=60)
    assert retried["state"] in ("PENDING", "RUNNING")
    assert hook.terminate_and_wait(run_id)["state"] == "FAILED"


def test_multi_user_server_without_namespace_fails_test_connection_before_any_side_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    users = {"namespaces": {"alice": ["team-a"]}, "tokens": {"alice-token": {"user": "alice"}}}
    with start_kfp_stand_in(tmp_path / "state", multi_user=True, users=users) as stand_in:
        monkeypatch.setenv(
            "AIRFLOW_CONN_KFP_MU",
            f'{{"conn_type": "kfp", "host": "{stand_in.host}", "password": "alice-token"}}',
        )
        ok, message = KfpHook("kfp_mu").test_connection()
        assert not ok
        assert "multi-user" in message and "set the connection extra 'namespace'" in message
        with httpx.Client(base_url=stand_in.host, headers={"authorization": "Bearer alice-token"}, timeout=10) as http:
            listed = http.get("/apis/v2beta1/experiments", params={"namespace": "team-a"}).json()
        assert not listed.get("experiments")
        assert KfpHook("kfp_mu", namespace="team-a").test_connection()[0]
