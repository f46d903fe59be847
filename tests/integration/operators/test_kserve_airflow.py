"""KServeRolloutOperator in the shared real Airflow stack (scheduler, triggerer, LocalExecutor).

What only a real Airflow can show: a task process SIGKILLed mid-rollout whose retry resumes from
``task_state_store``; a running task and a deferred task marked failed through the REST API (the
operator's and the trigger's ``on_kill``); ``promote=False`` with its XCom; and, since the stack is
up anyway, the good 20% canary (deferrable) and the model that fails to load (sync). A model folder whose
``model.joblib`` is a FIFO keeps a revision loading until the test writes the real model into it,
so "mid-rollout" is a state the test holds, not a race it hopes to win.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain, wait_log
from tests.fixtures.airflow_stack import dags_with_connection
from tests.fixtures.kube_stand_in import (
    GROUP,
    PLURAL,
    VERSION,
    IrisModels,
    KubeStandIn,
    predictor_status,
    release,
    revision_traffic,
    slow_model,
)
from tests.integration.operators.test_kserve_rollout import Requests, predictions, served

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

DAG_FILE = Path(__file__).parent / "kserve_dags" / "kserve_ops.py"
CONN_ID = "kube_ops"  # as in kserve_dags/kserve_ops.py
RUN_TIMEOUT = 180
KILL_TIMEOUT = 90
# One InferenceService per test, created together (their model servers start in parallel).
ISVCS = ("ro-af-crash", "ro-af-sync", "ro-af-deferred", "ro-af-canary", "ro-af-good", "ro-af-broken")
DAGS = ("kserve_ops_crash", "kserve_ops_kill", "kserve_ops_canary", "kserve_ops_split", "kserve_ops_rollout")


def _uri(path: Path) -> str:
    return f"file://{path}"


def _serving(traffic: list[tuple[str, int]]) -> set[str]:
    """Revisions that take requests: more than one means the traffic is split."""
    return {revision for revision, percent in traffic if percent > 0}


@pytest.fixture(scope="module")
def kube_ops(airflow_stack: AirflowStack, kube_stand_in: KubeStandIn) -> Iterator[AirflowStack]:
    """The shared stack with connection ``kube_ops`` (kubeconfig of the session kube stand-in) and the DAGs."""
    connection = {"connection_id": CONN_ID, "conn_type": "kubernetes", "extra": json.dumps(kube_stand_in.connection_extra())}
    with dags_with_connection(airflow_stack, connection, DAG_FILE, DAGS) as stack:
        yield stack


@pytest.fixture(scope="module")
def isvcs(kube_stand_in: KubeStandIn, iris_models: IrisModels) -> dict[str, dict[str, Any]]:
    return kube_stand_in.create_ready(ISVCS, iris_models.v1)


class TrafficLog(threading.Thread):
    """Watches one InferenceService and records (wall time, generation, spec canary, traffic) per change."""

    def __init__(self, kube: KubeStandIn, name: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.name = kube, name
        self.records: list[tuple[float, int, Any, list[tuple[str, int]]]] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def _record(self, obj: dict[str, Any]) -> str:
        predictor = obj["spec"]["predictor"]
        generation, canary = obj["metadata"]["generation"], predictor.get("canaryTrafficPercent")
        self.records.append((time.time(), generation, canary, revision_traffic(obj)))
        return obj["metadata"]["resourceVersion"]

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        api = self.kube.api()
        try:
            rv = self._record(api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, self.name))
            while not self.stop_event.is_set():
                try:
                    for event in watch.Watch().stream(
                        api.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        "default",
                        PLURAL,
                        field_selector=f"metadata.name={self.name}",
                        resource_version=rv,
                        timeout_seconds=1,
                    ):
                        rv = self._record(event["object"])
                except ApiException as exc:
                    if exc.status != 410:
                        raise
                    rv = self._record(
                        api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, self.name)
                    )
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> TrafficLog:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.join(timeout=30)

    def split_after(self, moment: float) -> list[tuple[float, int, Any, list[tuple[str, int]]]]:
        return [r for r in self.records if r[0] >= moment and len(_serving(r[3])) > 1]


def _end_time(ti: dict[str, Any]) -> float:
    return datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00")).timestamp()


def _task_process(stack: AirflowStack, ti: dict[str, Any]) -> psutil.Process:
    """The task runner of ``ti``: a process of this stack titled ``airflow worker -- <ti id>``.

    setproctitle reuses the memory of argv and environ for the title (so the stack's marker
    variable is unreadable there, and argv is padded with empty strings): the process is
    recognised as a descendant of the stack's services instead.
    """
    title = f"airflow worker -- {ti['id']}"
    found = [p for p in stack._processes() if _first_arg(p) == title]
    assert [p.pid for p in found] == [ti["pid"]], (ti, [(p.pid, _first_arg(p)) for p in found])
    return found[0]


def _first_arg(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return (proc.cmdline() or [""])[0]
    return ""


def _log(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    return stack.task_log(dag_id, run_id, task_id, try_number)


def _wait_deferral_exit_seen(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> None:
    """Wait until the scheduler has handled the exit of the process that deferred.

    Airflow race: if the trigger fires and the task resumes before the scheduler handles that
    exit ("success"), the scheduler marks the running task failed. Tests that let the trigger
    fire hold the model load (FIFO) until then.
    """
    needle = (
        f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{dag_id}', "
        f"task_id='{task_id}', run_id='{run_id}'"
    )
    deadline = time.monotonic() + RUN_TIMEOUT
    while needle not in stack.service_log("scheduler"):
        assert time.monotonic() < deadline, f"the scheduler never handled the deferral of {dag_id}.{task_id}"
        time.sleep(0.5)


def _release_once_deferred(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, model: Path, real_model: Path
) -> None:
    """Let the :func:`slow_model` ``model`` load only after ``task_id`` deferred and the scheduler saw
    it exit; then the dag run must succeed."""
    assert stack.wait_task_state(dag_id, run_id, task_id, ("deferred",), RUN_TIMEOUT) == "deferred"
    _wait_deferral_exit_seen(stack, dag_id, run_id, task_id)
    release(model, real_model)
    state = stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT)
    assert state == "success", _log(stack, dag_id, run_id, task_id, 1)[-5000:]


# ---- acceptance 6: SIGKILL mid-rollout, the retry finishes it, traffic is never left split ----------
def test_task_killed_mid_rollout_the_retry_promotes_and_traffic_is_not_left_split(
    kube_ops: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict, tmp_path: Path
) -> None:
    stack, dag_id, name = kube_ops, "kserve_ops_crash", "ro-af-crash"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    model = slow_model(tmp_path / "v2-slow")
    with TrafficLog(kube_stand_in, name) as log:
        run_id = stack.trigger_dag(dag_id, conf={"crash_isvc": name, "crash_uri": _uri(model)})
        # The canary patch is in and its revision is loading (blocked on the FIFO): mid-rollout.
        obj = kube_stand_in.wait_for(
            name,
            lambda o: predictor_status(o).get("latestCreatedRevision") == r2,
            timeout=RUN_TIMEOUT,
            what="the canary revision created",
        )
        assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 20
        wait_log(stack, dag_id, run_id, "rollout", f"latestCreated={r2}")  # the first try is watching
        ti = stack.task_instance(dag_id, run_id, "rollout")
        assert (ti["state"], ti["try_number"]) == ("running", 1)
        _task_process(stack, ti).send_signal(signal.SIGKILL)

        # The retry comes up and resumes; only then may the model finish loading.
        assert stack.wait_task_state(dag_id, run_id, "rollout", ("running",), RUN_TIMEOUT) == "running"
        wait_log(stack, dag_id, run_id, "rollout", "Resuming an unfinished rollout", try_number=2)
        release(model, iris_models.v2)
        state = stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT)
        ti = stack.task_instance(dag_id, run_id, "rollout")
        time.sleep(2)  # anything that happens after the task ended must show up in the log
    assert log.error is None, log.error
    assert state == "success", explain(stack, dag_id, run_id)
    assert (ti["state"], ti["try_number"]) == ("success", 2)

    # The canary really held 20/80 between the tries, and nothing was split after the task ended.
    assert any(traffic == [(r1, 80), (r2, 20)] for *_, traffic in log.records), log.records
    assert log.split_after(_end_time(ti)) == []
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)] and "canaryTrafficPercent" not in obj["spec"]["predictor"]
    result = stack.xcom(dag_id, run_id, "rollout")
    assert (result["outcome"], result["previous_revision"], result["new_revision"]) == ("promoted", r1, r2)
    assert [(t["revision"], t["percent"]) for t in result["traffic"]] == [(r2, 100)]
    first = _log(stack, dag_id, run_id, "rollout", 1)
    assert "rolling out" in first and "promoting" not in first


# ---- on_kill: a running task and a deferred task marked failed roll back ----------------------------
def test_marking_a_running_and_a_deferred_rollout_failed_rolls_both_back(
    kube_ops: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict, tmp_path: Path
) -> None:
    stack, dag_id = kube_ops, "kserve_ops_kill"
    names = {"sync": "ro-af-sync", "deferred": "ro-af-deferred"}
    conf = {}
    for task_id, name in names.items():
        conf[f"{task_id}_isvc"] = name
        conf[f"{task_id}_uri"] = _uri(slow_model(tmp_path / f"{task_id}-slow"))
    logs = {task_id: TrafficLog(kube_stand_in, name) for task_id, name in names.items()}
    for log in logs.values():
        log.start()
    try:
        run_id = stack.trigger_dag(dag_id, conf=conf)
        for name in names.values():
            kube_stand_in.wait_for(
                name,
                lambda o, n=name: predictor_status(o).get("latestCreatedRevision") == f"{n}-predictor-00002",
                timeout=RUN_TIMEOUT,
                what="the canary revision created",
            )
        assert stack.wait_task_state(dag_id, run_id, "deferred", ("deferred",), RUN_TIMEOUT) == "deferred"
        # Both are waiting on their watch (the trigger logs its first look at the object).
        wait_log(stack, dag_id, run_id, "sync", "latestCreated=ro-af-sync-predictor-00002")
        wait_log(stack, dag_id, run_id, "deferred", "Trigger watching default/ro-af-deferred")
        assert stack.task_instance(dag_id, run_id, "sync")["state"] == "running"

        # What on-call does in the UI: mark them failed; Airflow kills the task and the trigger.
        for task_id in names:
            response = stack.patch(
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": "failed"}
            )
            assert response.status_code == 200, response.text
        for task_id, name in names.items():
            r1 = f"{name}-predictor-00001"
            kube_stand_in.wait_for(
                name,
                lambda o, r1=r1: (
                    o["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)
                    and _serving(revision_traffic(o)) == {r1}
                ),
                timeout=KILL_TIMEOUT,
                what=f"{task_id}: rolled back to {r1}",
            )
        assert stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed"
        tis = {task_id: stack.task_instance(dag_id, run_id, task_id) for task_id in names}
        time.sleep(2)
    finally:
        for log in logs.values():
            log.__exit__()
    for task_id, name in names.items():
        r1 = f"{name}-predictor-00001"
        assert logs[task_id].error is None, logs[task_id].error
        assert (tis[task_id]["state"], tis[task_id]["try_number"]) == ("failed", 1)
        obj = kube_stand_in.get_isvc(name)
        # The previous spec is back, pinned (canaryTrafficPercent 0) to the previous revision.
        assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert _serving(revision_traffic(obj)) == {r1} and dict(revision_traffic(obj))[r1] == 100
        assert logs[task_id].split_after(_end_time(tis[task_id])) == []
    assert "Rolled back ro-af-sync on kill" in _log(stack, dag_id, run_id, "sync", 1)

    # Cleared afterwards, each task's next try reads task_state_store and the InferenceService,
    # finishes the rollback (releases the pin) and fails saying why; the deferred one's saved
    # state still says "rollout", but the spec no longer serves its target.
    stack.clear_task(dag_id, run_id, list(names))
    assert stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT) == "failed", explain(stack, dag_id, run_id)
    reasons = {
        "sync": "the task was killed during the rollout",
        "deferred": "the rollout was undone while no attempt",
    }
    for task_id, name in names.items():
        ti = stack.task_instance(dag_id, run_id, task_id)
        assert (ti["state"], ti["try_number"]) == ("failed", 2)
        log = _log(stack, dag_id, run_id, task_id, 2)
        assert reasons[task_id] in log and "Rolled back to" in log, log[-3000:]
        obj = kube_stand_in.get_isvc(name)
        r3 = f"{name}-predictor-00003"  # the restored spec's revision, now released
        traffic = revision_traffic(obj)
        assert traffic in ([(r3, 100)], [(f"{name}-predictor-00001", 0), (r3, 100)]), traffic
        assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
        assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)


# ---- promote=False: the canary stays, and XCom says so ------------------------------------------------
def test_promote_false_leaves_the_canary_and_says_so(
    kube_ops: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict, tmp_path: Path
) -> None:
    stack, dag_id, name = kube_ops, "kserve_ops_canary", "ro-af-canary"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    model = slow_model(tmp_path / "v2-slow")
    run_id = stack.trigger_dag(dag_id, conf={"canary_isvc": name, "canary_uri": _uri(model)})
    _release_once_deferred(stack, dag_id, run_id, "canary", model, iris_models.v2)
    result = stack.xcom(dag_id, run_id, "canary")
    assert (result["outcome"], result["canary"], result["new_revision"]) == ("canary", True, r2)
    assert sorted((t["revision"], t["percent"]) for t in result["traffic"]) == [(r1, 80), (r2, 20)]
    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert revision_traffic(obj) == [(r1, 80), (r2, 20)]


# ---- acceptance 2: good 20% canary (deferrable: the waits run in the triggerer) --------------------
def test_good_canary_splits_about_20_percent_then_promotes(
    kube_ops: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict, tmp_path: Path
) -> None:
    stack, dag_id, name = kube_ops, "kserve_ops_split", "ro-af-good"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    counts_file = tmp_path / "split.json"
    model = slow_model(tmp_path / "v2-slow")
    conf = {
        "split_isvc": name,
        "split_uri": _uri(model),
        "ingress": kube_stand_in.ingress_url,
        "counts_file": str(counts_file),
    }
    run_id = stack.trigger_dag(dag_id, conf=conf)
    _release_once_deferred(stack, dag_id, run_id, "rollout", model, iris_models.v2)

    # While the canary held (inside the smoke test): 200 requests split ~20/80. Binomial(200, 0.2)
    # has mean 40 and sd 5.7; 18..62 is ±3.9 sd (a false failure about once in 10^4 runs).
    split = json.loads(counts_file.read_text())
    assert set(split["served"]) == {r1, r2}, split
    assert 18 <= split["served"][r2] <= 62, split
    assert split["latest_revision"] == r2

    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)]
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert served(kube_stand_in, name, 50) == {r2: 50}
    result = stack.xcom(dag_id, run_id, "rollout")
    assert (result["outcome"], result["previous_revision"], result["new_revision"]) == ("promoted", r1, r2)


# ---- acceptance 3: a model that fails to load, with requests throughout ---------------------------
def test_failed_load_fails_the_task_with_the_load_error_and_rolls_back(
    kube_ops: AirflowStack, kube_stand_in: KubeStandIn, iris_models: IrisModels, isvcs: dict
) -> None:
    stack, dag_id, name = kube_ops, "kserve_ops_rollout", "ro-af-broken"
    before = predictions(kube_stand_in, name)
    with Requests(kube_stand_in, name) as load:
        run_id = stack.trigger_dag(dag_id, conf={"plain_isvc": name, "plain_uri": _uri(iris_models.broken)})
        state = stack.wait_dag_run(dag_id, run_id, RUN_TIMEOUT)
        time.sleep(0.5)
    assert state == "failed"
    ti = stack.task_instance(dag_id, run_id, "rollout")
    assert (ti["state"], ti["try_number"]) == ("failed", 1)
    log = _log(stack, dag_id, run_id, "rollout", 1)
    assert "ModelLoadFailed" in log and "Rolled back to" in log, log[-4000:]
    assert load.failures == [] and load.ok > 20, (load.ok, load.failures[:5])

    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    answered = served(kube_stand_in, name, 40)
    assert len(answered) == 1 and revision_traffic(obj) == [(next(iter(answered)), 100)]
    assert predictions(kube_stand_in, name) == before
    assert stack.xcom(dag_id, run_id, "rollout", key="rollout")["outcome"] == "rolled_back"
