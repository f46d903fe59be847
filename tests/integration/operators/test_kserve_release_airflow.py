"""Canary → approval → promote / rollback in the shared real Airflow stack (issue 14, acceptance 2).

The approval is answered the way the UI's Required Actions page does it: the run's HITL details are
listed (``GET /api/v2/dags/{dag}/dagRuns/{run}/hitlDetails``) and the answer is sent with
``PATCH .../taskInstances/approve/-1/hitlDetails``. Airflow 3.3 parks the approval task in
``awaiting_input`` (no triggerer) and resumes it on the answer. The kill test SIGKILLs the promotion's
task process after it saved its state and before its patch (``PausingPromote`` in the DAG file holds it
there), and the retry must promote with no traffic split left.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain, wait_log
from tests.fixtures.airflow_stack import dags_with_connection
from tests.fixtures.kube_stand_in import IrisModels, KubeStandIn, revision_traffic
from tests.integration.operators.test_kserve_airflow import TrafficLog, _end_time, _serving, _task_process
from tests.integration.operators.test_kserve_rollout import served

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

DAG_FILE = Path(__file__).parent / "kserve_dags" / "kserve_release.py"
CONN_ID = "kube_ops"  # as in kserve_dags/kserve_release.py
DAGS = ("kserve_release_flow", "kserve_release_timeout", "kserve_release_kill")
ISVCS = ("rel-af-approve", "rel-af-reject", "rel-af-timeout", "rel-af-kill", "rel-af-broken")
RUN_TIMEOUT = 240


def _uri(path: Path) -> str:
    return f"file://{path}"


@pytest.fixture(scope="module")
def release_stack(airflow_stack: AirflowStack, kube_stand_in: KubeStandIn) -> Iterator[AirflowStack]:
    connection = {"connection_id": CONN_ID, "conn_type": "kubernetes", "extra": json.dumps(kube_stand_in.connection_extra())}
    with dags_with_connection(airflow_stack, connection, DAG_FILE, DAGS) as stack:
        yield stack


@pytest.fixture(scope="module")
def isvcs(kube_stand_in: KubeStandIn, iris_models: IrisModels) -> dict[str, dict[str, Any]]:
    return kube_stand_in.create_ready(ISVCS, iris_models.v1)


def _required_action(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, Any]:
    """Wait for the approval task to wait for input, then read it as the Required Actions page lists it."""
    state = stack.wait_task_state(dag_id, run_id, "approve", ("awaiting_input", "failed", "upstream_failed"),
                                  RUN_TIMEOUT)
    assert state == "awaiting_input", explain(stack, dag_id, run_id)
    _wait_parking_exit_seen(stack, dag_id, run_id, "approve")
    listing = stack.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/hitlDetails")
    assert listing.status_code == 200, listing.text
    (detail,) = [d for d in listing.json()["hitl_details"] if d["task_instance"]["task_id"] == "approve"]
    assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False
    return detail


def _wait_parking_exit_seen(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> None:
    """Wait until the scheduler has handled the exit of the process that parked the approval.

    Airflow 3.3.2 race (as for a deferral, see test_kserve_airflow): an answer that resumes the task
    before the scheduler processed that exit gets the resumed task marked failed ("finished with state
    success, but the task instance's state attribute is queued/running"). A person is never that
    fast; a test is.
    """
    needle = re.compile(
        r"Received executor event with state \w+ for task instance TaskInstanceKey\(dag_id='"
        + re.escape(dag_id) + r"', task_id='" + re.escape(task_id) + r"', run_id='" + re.escape(run_id) + "'"
    )
    deadline = time.monotonic() + RUN_TIMEOUT
    while not needle.search(stack.service_log("scheduler")):
        assert time.monotonic() < deadline, f"the scheduler never handled the parking of {dag_id}.{task_id}"
        time.sleep(0.5)


def _answer(stack: AirflowStack, dag_id: str, run_id: str, option: str) -> None:
    response = stack.patch(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails", {"chosen_options": [option]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["chosen_options"] == [option]


def _assert_body_shows_the_canary(detail: dict[str, Any], name: str, new_uri: str, old_uri: str) -> None:
    body = detail["body"]
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    assert body.startswith("Release test run ")
    assert f"`{new_uri}` (revision `{r2}`)" in body and f"`{old_uri}` (revision `{r1}`)" in body, body
    assert f"`{r2}` 20 %" in body and f"`{r1}` 80 %" in body, body
    assert f"| Smoke test | passed against `http://latest-{name}-predictor." in body, body


def _states(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}


def test_approve_promotes_the_new_revision_to_100_percent(
    release_stack: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict
) -> None:
    stack, dag_id, name = release_stack, "kserve_release_flow", "rel-af-approve"
    r2 = f"{name}-predictor-00002"
    run_id = stack.trigger_dag(dag_id, conf={"isvc": name, "uri": _uri(iris_models.v2)})
    detail = _required_action(stack, dag_id, run_id)
    _assert_body_shows_the_canary(detail, name, _uri(iris_models.v2), _uri(iris_models.v1))
    # Waiting for the answer, the verified canary holds its 20%.
    assert sorted(revision_traffic(kube_stand_in.get_isvc(name))) == [(f"{name}-predictor-00001", 80), (r2, 20)]

    _answer(stack, dag_id, run_id, "Approve")
    assert stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "success", explain(stack, dag_id, run_id)
    assert _states(stack, dag_id, run_id) == {
        "canary": "success", "approve": "success", "promote": "success", "rollback": "skipped", "outcome": "success"}
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)] and "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert served(kube_stand_in, name, 20) == {r2: 20}
    assert stack.xcom(dag_id, run_id, "promote")["outcome"] == "promoted"


@pytest.mark.parametrize(("dag_id", "name"), [("kserve_release_flow", "rel-af-reject"),
                                              ("kserve_release_timeout", "rel-af-timeout")],
                         ids=["reject", "hitl-timeout"])
def test_reject_or_no_answer_restores_the_previous_model_alone(
    release_stack: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict,
    dag_id: str, name: str,
) -> None:
    stack = release_stack
    r2 = f"{name}-predictor-00002"
    run_id = stack.trigger_dag(dag_id, conf={"isvc": name, "uri": _uri(iris_models.v2)})
    if dag_id == "kserve_release_flow":
        _required_action(stack, dag_id, run_id)
        _answer(stack, dag_id, run_id, "Reject")
    # else: nobody answers; after 3 s the scheduler applies the default answer, Reject.
    assert stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "success", explain(stack, dag_id, run_id)
    assert _states(stack, dag_id, run_id) == {
        "canary": "success", "approve": "success", "promote": "skipped", "rollback": "success", "outcome": "success"}
    hitl = stack.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails").json()
    assert hitl["chosen_options"] == ["Reject"]
    obj = kube_stand_in.get_isvc(name)
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == _uri(iris_models.v1) and "canaryTrafficPercent" not in predictor
    serving = _serving(revision_traffic(obj))
    assert len(serving) == 1 and r2 not in serving and dict(revision_traffic(obj))[next(iter(serving))] == 100
    assert set(served(kube_stand_in, name, 20)) == serving
    assert stack.xcom(dag_id, run_id, "rollback")["outcome"] == "rolled_back"


def test_a_failed_canary_fails_the_run_although_the_rollback_clean_up_skips(
    release_stack: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict
) -> None:
    """The rollback is the last all_done task and skips with nothing recorded: without ``outcome`` a
    run whose canary failed ended "success"."""
    stack, dag_id, name = release_stack, "kserve_release_flow", "rel-af-broken"
    run_id = stack.trigger_dag(dag_id, conf={"isvc": name, "uri": _uri(iris_models.broken)})
    assert stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed", explain(stack, dag_id, run_id)
    assert _states(stack, dag_id, run_id) == {
        "canary": "failed", "approve": "upstream_failed", "promote": "upstream_failed", "rollback": "skipped",
        "outcome": "upstream_failed"}
    obj = kube_stand_in.get_isvc(name)
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == _uri(iris_models.v1) and "canaryTrafficPercent" not in predictor
    # The canary's own rollback: the previous model alone, on whichever revision serves it now.
    serving = _serving(revision_traffic(obj))
    assert len(serving) == 1 and f"{name}-predictor-00002" not in serving


def test_worker_killed_between_approval_and_promotion_the_retry_promotes(
    release_stack: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict, tmp_path: Path
) -> None:
    stack, dag_id, name = release_stack, "kserve_release_kill", "rel-af-kill"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    marker = tmp_path / "promote-paused.json"
    with TrafficLog(kube_stand_in, name) as log:
        run_id = stack.trigger_dag(dag_id, conf={"isvc": name, "uri": _uri(iris_models.v2), "marker": str(marker)})
        _required_action(stack, dag_id, run_id)
        _answer(stack, dag_id, run_id, "Approve")
        deadline = time.monotonic() + RUN_TIMEOUT
        while not marker.exists():
            assert time.monotonic() < deadline, explain(stack, dag_id, run_id)
            time.sleep(0.2)
        saved = json.loads(marker.read_text())
        assert (saved["phase"], saved["patched"], saved["approved"]) == ("promote", False, True)
        ti = stack.task_instance(dag_id, run_id, "promote")
        assert (ti["state"], ti["try_number"]) == ("running", 1)
        # Approved, state saved, patch not sent: the canary still holds 20%.
        assert sorted(revision_traffic(kube_stand_in.get_isvc(name))) == [(r1, 80), (r2, 20)]
        _task_process(stack, ti).send_signal(signal.SIGKILL)

        state = stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT)
        ti = stack.task_instance(dag_id, run_id, "promote")
        time.sleep(2)  # anything that happens after the task ended must show up in the traffic log
    assert log.error is None, log.error
    assert state == "success", explain(stack, dag_id, run_id)
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    assert _states(stack, dag_id, run_id)["rollback"] == "skipped"
    wait_log(stack, dag_id, run_id, "promote", "Resuming the promote of rel-af-kill", try_number=2)
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)] and "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert log.split_after(_end_time(ti)) == []
    assert stack.xcom(dag_id, run_id, "promote")["outcome"] == "promoted"
