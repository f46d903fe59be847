"""KServeRolloutOperator against the kube stand-in with real KServe model servers.

Smoke-test failure, Knative with observedGeneration on the Knative Service's counter (fidelity S1),
Standard mode judged from the Deployment (S2), watch chaos and bad input call the operator with a
context-like object (``ti.xcom_push`` and a dict-backed ``task_state_store``), since Airflow would
add nothing there. The good canary, the failed load, kills and retries run in the shared Airflow
stack (``test_kserve_airflow.py``); the shipped RBAC Role in ``test_kserve_rbac.py``. Every
InferenceService here is unique to its test, so the tests share the session stand-in.

KServe's URLs are host names (S4): requests go to the stand-in's ingress with the Host header, and
the operator's connection carries ``ingress_address`` for the smoke test.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfp_bridge.operators.kserve import STATE_KEY, KServeRolloutError, KServeRolloutOperator
from tests.fixtures.deferral import run_deferrable
from tests.fixtures.kube_stand_in import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    predictor_status,
    release,
    revision_traffic,
    slow_model,
)
from tests.unit.operators.test_kserve_operator import BAD_ARGUMENTS

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

REVISION_HEADER = "x-kfp-bridge-revision"
ROWS = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
CONN_ID = "kube_test"
BUMP_NAMESPACE = "watch-bump"


def _conn_env(kube_stand_in, kubeconfig: Path | None = None) -> dict[str, str]:
    extra = {"kube_config_path": str(kubeconfig or kube_stand_in.kubeconfig),
             "ingress_address": kube_stand_in.ingress_url}
    return {f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({"conn_type": "kubernetes", "extra": extra})}


@pytest.fixture
def kube_conn(kube_stand_in, monkeypatch):
    for key, value in _conn_env(kube_stand_in).items():
        monkeypatch.setenv(key, value)
    return CONN_ID


def _uri(path: Path) -> str:
    return f"file://{path}"


def host(kube, name: str, namespace: str = "default") -> str:
    """The InferenceService's host name (``status.url``), routed by the ingress (S4)."""
    return f"{name}.{namespace}.{kube.domain}"


def predict(http: httpx.Client, kube, name: str) -> httpx.Response:
    return http.post(
        f"{kube.ingress_url}/v1/models/{name}:predict", json={"instances": ROWS}, headers={"host": host(kube, name)}
    )


def served(kube, name: str, n: int) -> Counter:
    counts: Counter = Counter()
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            resp = predict(http, kube, name)
            assert resp.status_code == 200, resp.text
            counts[resp.headers[REVISION_HEADER]] += 1
    return counts


def predictions(kube, name: str) -> list[int]:
    with httpx.Client(timeout=30) as http:
        resp = predict(http, kube, name)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


# Every InferenceService of this module, created together so their model servers start in parallel.
STANDARD = {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}
ISVCS: dict[str, dict[str, Any]] = {
    "ro-smoke": {},
    "ro-counter": {},
    "ro-standard": STANDARD,
    "ro-std-good": STANDARD,
    "ro-input": {},
    "ro-watch": {},
    "ro-watch-async": {},
}


@pytest.fixture(scope="module")
def isvcs(kube_stand_in, iris_models) -> dict[str, dict[str, Any]]:
    return kube_stand_in.create_ready(ISVCS, iris_models.v1)


class _Store(dict):
    def set(self, key: str, value: Any, **_: Any) -> None:
        self[key] = json.loads(json.dumps(value))  # what the real store keeps: JSON


class _TI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _context(store: _Store | None = None) -> dict[str, Any]:
    return {"ti": _TI(), "task_state_store": store if store is not None else _Store()}


class Requests(threading.Thread):
    """Sends predictions to the service's host name until stopped; counts who answered, records failures."""

    def __init__(self, kube, name: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.name = kube, name
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.served: Counter = Counter()

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop_event.is_set():
                try:
                    resp = predict(http, self.kube, self.name)
                    if resp.status_code == 200:
                        self.ok += 1
                        self.served[resp.headers[REVISION_HEADER]] += 1
                    else:
                        self.failures.append(f"{resp.status_code}: {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.02)

    def __enter__(self) -> Requests:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.join(timeout=60)


def _rollout_json(name: str, phase: str, previous_revision: str) -> dict[str, Any]:
    """The saved rollout a trigger carries (only what its wait needs is meaningful here)."""
    from kfp_bridge.utils.rollout import Phase, Rollout

    return Rollout(
        name=name, namespace="default", mode="Knative", target_uri="/new", previous_uri="/old",
        previous_predictor={}, previous_revision=previous_revision, phase=Phase(phase), patched=True,
    ).to_json()


def _run_in_thread(op: KServeRolloutOperator, context: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = op.execute(context)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


# ---- acceptance 4: smoke test fails (wrong expected predictions) -----------------------------------
def test_smoke_failure_rolls_back(isvcs, kube_stand_in, iris_models, kube_conn):
    name = "ro-smoke"
    before = predictions(kube_stand_in, name)
    op = KServeRolloutOperator(
        task_id="t",
        inference_service=name,
        storage_uri=_uri(iris_models.v2),
        canary_traffic_percent=20,
        smoke_test={"payload": {"instances": ROWS}, "expected_values": [9, 9, 9]},
        kubernetes_conn_id=kube_conn,
        timeout=240,
    )
    context = _context()
    with (
        Requests(kube_stand_in, name) as load,
        pytest.raises(KServeRolloutError, match=r"smoke test failed.*\[9, 9, 9\]") as err,
    ):
        op.execute(context)
    assert "Rolled back to" in str(err.value)
    assert load.failures == [], load.failures[:5]
    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)
    assert len(revision_traffic(obj)) == 1 and revision_traffic(obj)[0][1] == 100
    assert predictions(kube_stand_in, name) == before
    assert context["task_state_store"][STATE_KEY]["phase"] == "rolled_back"
    assert context["ti"].xcom["rollout"]["outcome"] == "rolled_back"


# ---- issue 12 acceptance 2: observedGeneration on the Knative Service's counter (S1) -----------------
def test_knative_rollout_never_waits_for_observed_generation_to_equal_generation(
    isvcs, kube_stand_in, iris_models, kube_conn
):
    """A spec edit KServe refuses (no runtime for the format: S5, no revision, the Knative Service
    untouched) and its revert move the InferenceService's generation by 2 and the Knative Service's by
    0: from then on observedGeneration (the ksvc's, kserve PropagateStatus) never equals generation.
    The rollout still waits for the right thing, promotes, and later rolls a broken model back."""
    name = "ro-counter"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    model = kube_stand_in.get_isvc(name)["spec"]["predictor"]["model"]
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"}}}}})
    kube_stand_in.wait_for(
        name,
        lambda o: (o["status"].get("modelStatus") or {}).get("transitionStatus") == "InvalidSpec",
        what="the refused spec reported",
    )
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"model": model}}})
    obj = kube_stand_in.wait_for(
        name,
        lambda o: (o["status"].get("modelStatus") or {}).get("transitionStatus") == "UpToDate",
        what="the reverted spec serving again",
    )
    assert obj["metadata"]["generation"] == 3 and obj["status"]["observedGeneration"] == 1
    assert predictor_status(obj)["latestCreatedRevision"] == r1

    smoke = {"payload": {"instances": ROWS}, "expected_shape": [3], "allowed_values": [0, 1, 2]}
    good = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=_uri(iris_models.v2), canary_traffic_percent=20,
        smoke_test=smoke, kubernetes_conn_id=kube_conn, timeout=180,
    )
    result = good.execute(_context())
    assert (result["outcome"], result["previous_revision"], result["new_revision"]) == ("promoted", r1, r2)
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)]
    assert obj["status"]["observedGeneration"] != obj["metadata"]["generation"], "the counters met: no S1 case"

    bad = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=_uri(iris_models.broken), canary_traffic_percent=20,
        smoke_test=smoke, kubernetes_conn_id=kube_conn, timeout=180,
    )
    context = _context()
    with Requests(kube_stand_in, name) as load, pytest.raises(KServeRolloutError, match="ModelLoadFailed") as err:
        bad.execute(context)
    assert "Rolled back to" in str(err.value)
    r3 = f"{name}-predictor-00003"
    assert context["ti"].xcom["rollout"]["new_revision"] == r3  # the broken one, named
    # Every request answered, none by the broken revision (r2, then the restored spec's revision).
    assert load.failures == [] and load.ok > 20 and r3 not in load.served, (load.failures[:5], load.served)
    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v2)
    assert _sole(revision_traffic(obj)) and obj["status"]["observedGeneration"] != obj["metadata"]["generation"]


def _sole(traffic: list[tuple[str, int]]) -> bool:
    return len({revision for revision, percent in traffic if percent > 0}) == 1


# ---- issue 12 acceptance 3: Standard mode, judged from the Deployment (S2) ----------------------------
def _deployment(kube, name: str) -> dict[str, Any]:
    from kubernetes import client

    api = client.AppsV1Api(kube.api_client())
    return api.api_client.sanitize_for_serialization(api.read_namespaced_deployment(f"{name}-predictor", "default"))


def _rolled_out(dep: dict[str, Any]) -> bool:
    st, spec = dep["status"], dep["spec"]
    return (
        st.get("observedGeneration", 0) >= dep["metadata"]["generation"]
        and st.get("updatedReplicas", 0) == spec["replicas"] == st.get("replicas", 0) == st.get("availableReplicas", 0)
    )


def test_standard_mode_crash_looping_model_is_rolled_back_and_the_old_model_answers_throughout(
    isvcs, kube_stand_in, iris_models, kube_conn
):
    name = "ro-standard"
    before = served(kube_stand_in, name, 5)
    (old_server,) = before
    # Deferrable: the trigger (kubernetes_asyncio) watches the Deployment and reads the pods.
    op = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=_uri(iris_models.broken),
        smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]},
        kubernetes_conn_id=kube_conn, timeout=240, deferrable=True,
    )
    context = _context()
    with Requests(kube_stand_in, name) as load, pytest.raises(KServeRolloutError) as err:
        run_deferrable(op, context)
    message = str(err.value)
    assert "CrashLoopBackOff" in message and "Rolled back to" in message, message
    assert context["ti"].xcom["rollout"]["outcome"] == "rolled_back"
    # The old model answered every request of the load, the whole rollout long.
    assert load.failures == [], load.failures[:5]
    assert load.ok > 20 and load.served == Counter({old_server: load.ok}), load.served
    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)
    assert _rolled_out(_deployment(kube_stand_in, name))
    assert context["task_state_store"][STATE_KEY]["phase"] == "rolled_back"


def test_standard_mode_good_model_is_done_only_when_the_deployment_rollout_completes(
    isvcs, kube_stand_in, iris_models, kube_conn, tmp_path
):
    name = "ro-std-good"
    model = slow_model(tmp_path / "v2-slow")
    op = KServeRolloutOperator(
        task_id="t", inference_service=name, storage_uri=_uri(model), canary_traffic_percent=20,
        smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]},
        kubernetes_conn_id=kube_conn, timeout=240,
    )
    worker, outcome = _run_in_thread(op, _context())
    generation = kube_stand_in.wait_for(
        name, lambda o: o["metadata"]["generation"] == 2, what="the rollout patch"
    )["metadata"]["generation"]
    assert generation == 2
    # The new pod loads (held): KServe says Ready (the old pod is Available), the Deployment is mid-rollout.
    deadline = time.monotonic() + 60
    while _rolled_out(dep := _deployment(kube_stand_in, name)) or dep["metadata"]["generation"] < 2:
        assert time.monotonic() < deadline, dep["status"]
        time.sleep(0.2)
    time.sleep(3)
    obj = kube_stand_in.get_isvc(name)
    assert condition(obj, "Ready") == "True" and not _rolled_out(_deployment(kube_stand_in, name))
    assert worker.is_alive(), outcome  # not "rolled_out" while the Deployment is rolling
    release(model, iris_models.v2)
    worker.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert (result["mode"], result["canary"], result["outcome"]) == ("Standard", False, "rolled_out")
    assert _rolled_out(_deployment(kube_stand_in, name))
    assert "canaryTrafficPercent" not in kube_stand_in.get_isvc(name)["spec"]["predictor"]


# ---- issue 12 acceptance 5: bad input rejected before the cluster changes ------------------------
CLUSTER_BAD_INPUTS = [
    ({"inference_service": "ro-nope"}, "does not exist"),
    ({"storage_uri": "file://relative/model"}, "absolute path"),
    ({"storage_uri": "s3://"}, "no bucket"),
    ({"kubernetes_conn_id": "no_such_conn"}, "no_such_conn.*does not exist"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_ARGUMENTS + CLUSTER_BAD_INPUTS)
def test_bad_input_rejected_before_any_change(isvcs, kube_stand_in, iris_models, kube_conn, kwargs, match):
    name = "ro-input"
    before = kube_stand_in.get_isvc(name)
    args = {
        "inference_service": name,
        "storage_uri": _uri(iris_models.v2),
        "canary_traffic_percent": 20,
        "kubernetes_conn_id": kube_conn,
        **kwargs,
    }
    context = _context()
    with pytest.raises((ValueError, LookupError), match=match):
        KServeRolloutOperator(task_id="t", **args).execute(context)
    after = kube_stand_in.get_isvc(name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert STATE_KEY not in context["task_state_store"]


# ---- the hook's watch: history compacted (410), watches ended and connections broken mid-rollout ----
def _wait_watching(kube_stand_in, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while kube_stand_in.admin("GET", "stats")["watchesOpen"] < 1:
        assert time.monotonic() < deadline, "the operator never opened its watch"
        time.sleep(0.05)


def _expire_watch_history(kube_stand_in, bump: str) -> int:
    """Once the operator watches, move the global resourceVersion past the watched object's (by
    creating the throwaway InferenceService ``bump``) and forget the history: the operator's resume
    from its last resourceVersion then gets 410 and must re-list. Returns the compacted version."""
    _wait_watching(kube_stand_in)
    kube_stand_in.create_isvc(bump, "/nonexistent", namespace=BUMP_NAMESPACE)
    return int(kube_stand_in.admin("POST", "compact")["compactedResourceVersion"])


def _delete_bump(kube_stand_in, bump: str) -> None:
    with contextlib.suppress(Exception):
        kube_stand_in.api().delete_namespaced_custom_object(GROUP, VERSION, BUMP_NAMESPACE, PLURAL, bump)


def _end_then_break_watches(kube_stand_in) -> None:
    """End every watch cleanly, wait until it is watched again, then break every watch connection."""
    assert kube_stand_in.admin("POST", "drop-watches")["dropped"] >= 1
    time.sleep(1.0)
    _wait_watching(kube_stand_in)
    assert kube_stand_in.admin("POST", "drop-watches", params={"mode": "abort"})["dropped"] >= 1
    time.sleep(1.0)


def test_watch_expired_dropped_and_broken_mid_rollout_still_promotes(
    isvcs, kube_stand_in, iris_models, kube_conn, tmp_path, capfd
):
    name = "ro-watch"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    model = slow_model(tmp_path / "v2-slow")
    op = KServeRolloutOperator(
        task_id="t",
        inference_service=name,
        storage_uri=_uri(model),
        canary_traffic_percent=20,
        smoke_test={"payload": {"instances": ROWS}, "expected_shape": [3]},
        kubernetes_conn_id=kube_conn,
        timeout=120,
    )
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = op.execute(_context())
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        kube_stand_in.wait_for(
            name,
            lambda o: predictor_status(o).get("latestCreatedRevision") == r2,
            timeout=60,
            what="the canary revision created",
        )
        compacted = _expire_watch_history(kube_stand_in, "ro-watch-bump")
        assert int(kube_stand_in.get_isvc(name)["metadata"]["resourceVersion"]) < compacted
        _end_then_break_watches(kube_stand_in)
        assert worker.is_alive(), outcome  # still waiting for the canary, not failed
        release(model, iris_models.v2)
        worker.join(timeout=120)
    finally:
        _delete_bump(kube_stand_in, "ro-watch-bump")
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert (result["outcome"], result["previous_revision"], result["new_revision"]) == ("promoted", r1, r2)
    assert revision_traffic(kube_stand_in.get_isvc(name)) == [(r2, 100)]
    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "expired (410); re-listing" in text
    assert "broke (ProtocolError" in text


def test_trigger_watch_survives_expiry_and_broken_connections(
    isvcs, kube_stand_in, iris_models, kube_conn, tmp_path, capfd
):
    """The deferrable path: KServeAsyncHook (kubernetes_asyncio) under the same watch chaos."""
    import asyncio

    from kfp_bridge.triggers.kserve import KServeRolloutTrigger

    name = "ro-watch-async"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    model = slow_model(tmp_path / "v2-slow")
    obj = kube_stand_in.patch_isvc(
        name,
        {
            "metadata": {"annotations": {"serving.kserve.io/enable-tag-routing": "true"}},
            "spec": {"predictor": {"canaryTrafficPercent": 20, "model": {"storageUri": _uri(model)}}},
        },
    )
    trigger = KServeRolloutTrigger(
        name=name,
        namespace="default",
        kubernetes_conn_id=kube_conn,
        # The pre-typed condition form: what a trigger deferred before the upgrade carries.
        condition={
            "kind": "canary",
            "percent": 20,
            "previous": r1,
            "generation": obj["metadata"]["generation"],
        },
        deadline=time.time() + 120,
        rollout=_rollout_json(name, "rollout", r1),
    )
    events: list[Any] = []

    async def first_event() -> None:
        async for event in trigger.run():
            events.append(event.payload)
            return

    worker = threading.Thread(target=lambda: asyncio.run(first_event()), daemon=True)
    worker.start()
    try:
        _expire_watch_history(kube_stand_in, "ro-watch-bump2")
        _end_then_break_watches(kube_stand_in)
        assert worker.is_alive() and events == []
        release(model, iris_models.v2)
        worker.join(timeout=120)
    finally:
        _delete_bump(kube_stand_in, "ro-watch-bump2")
        # Leave the service whole: promote the canary (or drop it if the test failed early).
        kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert [e["status"] for e in events] == ["success"], events
    assert revision_traffic(events[0]["object"]) == [(r1, 80), (r2, 20)]
    logs = capfd.readouterr()
    assert "expired (410); re-listing" in logs.out + logs.err
    assert "broke (" in logs.out + logs.err


def test_trigger_met_right_after_deferral_fires_only_after_the_settle_time(isvcs, kube_conn):
    """A wait already met when the trigger starts is handed back RESUME_SETTLE_S after the deferral
    (Airflow 3.3.2's resume-after-defer race); a trigger started later fires at once."""
    import asyncio

    from kfp_bridge.triggers.base import RESUME_SETTLE_S
    from kfp_bridge.triggers.kserve import KServeRolloutTrigger

    name = "ro-input"  # Ready at generation 1 and never changed by this module's tests
    condition = {"kind": "sole", "previous": "", "generation": 1}  # pre-typed form, still read

    async def first_event(deferred_at: float) -> tuple[dict[str, Any], float]:
        trigger = KServeRolloutTrigger(
            name=name, namespace="default", kubernetes_conn_id=kube_conn, condition=condition,
            deadline=time.time() + 60, rollout=_rollout_json(name, "promote", ""), deferred_at=deferred_at,
        )
        async for event in trigger.run():
            return event.payload, time.time()
        raise AssertionError("no event")

    just_now = time.time()
    payload, fired = asyncio.run(first_event(just_now))
    assert payload["status"] == "success"
    assert fired - just_now >= RESUME_SETTLE_S - 0.1

    long_ago = time.time() - 60
    started = time.time()
    payload, fired = asyncio.run(first_event(long_ago))
    assert payload["status"] == "success"
    assert fired - started < RESUME_SETTLE_S


def test_polling_fallback_reads_until_the_condition_holds_or_the_time_is_up(isvcs, kube_conn):
    """How a rollback is verified when its watch is refused: reads only, on an injected clock."""
    from kfp_bridge.hooks.kserve import KServeHook
    from kfp_bridge.utils.rollout import Serving, evaluate

    hook = KServeHook(kube_conn)
    served_alone = Serving("")
    snap = hook.poll_rollout("ro-input", "default", False, lambda s: evaluate(served_alone, s).done, 5)
    assert snap.isvc.latest_created == "ro-input-predictor-00001"
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(TimeoutError) as err:
        hook.poll_rollout("ro-input", "default", False, lambda s: False, 5, interval=2, sleep=sleep,
                          clock=lambda: now[0])
    assert slept == [2, 2] and err.value.args[1].isvc.name == "ro-input"
