"""KServePromoteOperator / KServeRollbackOperator against the kube stand-in with real model servers.

The canary is left by a real ``KServeRolloutOperator(promote=False)``; its XCom return value is
what the release operators read. The context is the dict-backed one of ``test_kserve_rollout``
(``ti.xcom_push`` and a JSON ``task_state_store``). A killed worker is the one thing that cannot
run here: ``_WorkerKilled`` (a BaseException, so no handler of the operator catches it) is raised
from the hook right before or right after a patch, and a new operator with the same state store is
the retry. The approval itself, and a real SIGKILL, run in the Airflow stack
(``test_kserve_release_airflow.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from kfp_bridge.hooks.kserve import KServeHook
from kfp_bridge.operators.kserve import KServeRolloutOperator
from kfp_bridge.operators.kserve_release import (
    RELEASE_STATE_KEY,
    KServePromoteOperator,
    KServeReleaseRefused,
    KServeRollbackOperator,
)
from tests.fixtures.deferral import run_deferrable
from tests.fixtures.kube_stand_in import revision_traffic
from tests.integration.operators.test_kserve_rollout import (
    CONN_ID,
    ROWS,
    Requests,
    _conn_env,
    _context,
    _Store,
    _uri,
    served,
)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kube_stand_in")]

SMOKE = {"payload": {"instances": ROWS}, "expected_shape": [3], "allowed_values": [0, 1, 2]}
ISVCS = ("rel-promote", "rel-rollback", "rel-changed", "rel-kill-promote", "rel-kill-rollback", "rel-standard")
STANDARD = {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}


class _WorkerKilled(BaseException):
    """The worker process died here (SIGKILL): nothing after this line of the attempt runs."""


@pytest.fixture
def kube_conn(kube_stand_in, monkeypatch) -> str:
    for key, value in _conn_env(kube_stand_in).items():
        monkeypatch.setenv(key, value)
    return CONN_ID


@pytest.fixture(scope="module")
def isvcs(kube_stand_in, iris_models) -> dict[str, dict[str, Any]]:
    specs = {name: STANDARD if name == "rel-standard" else {} for name in ISVCS}
    return kube_stand_in.create_ready(specs, iris_models.v1)


def _canary(name: str, uri: str, conn: str) -> dict[str, Any]:
    """A real 20% canary left by the rollout operator; its XCom return value."""
    op = KServeRolloutOperator(
        task_id="canary", inference_service=name, namespace="default", storage_uri=uri,
        canary_traffic_percent=20, smoke_test=SMOKE, promote=False, kubernetes_conn_id=conn, timeout=180,
    )
    return op.execute(_context())


def _spec(kube, name: str) -> tuple[int, dict[str, Any]]:
    obj = kube.get_isvc(name)
    return obj["metadata"]["generation"], obj["spec"]["predictor"]


def _killing_hook(conn: str, *, after: bool, phase_patches: int = 1) -> KServeHook:
    """A hook whose ``phase_patches``-th patch kills the worker, before (``after=False``) or after it is sent."""
    hook = KServeHook(conn)
    real = hook.patch_isvc
    calls = [0]

    def patch_isvc(name: str, namespace: str, patch: dict[str, Any]) -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == phase_patches and not after:
            raise _WorkerKilled(f"killed before patch {patch}")
        obj = real(name, namespace, patch)
        if calls[0] == phase_patches:
            raise _WorkerKilled(f"killed after patch {patch}")
        return obj

    hook.patch_isvc = patch_isvc  # type: ignore[method-assign]
    return hook


# ---- promote=False records the canary ---------------------------------------------------------------
def test_canary_record_promote_then_promote_again_is_a_no_op(isvcs, kube_stand_in, iris_models, kube_conn):
    name = "rel-promote"
    r1, r2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    result = _canary(name, _uri(iris_models.v2), kube_conn)
    recorded = result["recorded"]
    assert (result["outcome"], result["smoke"]) == ("canary", "passed")
    assert (recorded["previous_uri"], recorded["target_uri"]) == (_uri(iris_models.v1), _uri(iris_models.v2))
    assert (recorded["previous_revision"], recorded["new_revision"], recorded["percent"]) == (r1, r2, 20)
    assert sorted((t["revision"], t["percent"]) for t in recorded["traffic"]) == [(r1, 80), (r2, 20)]
    generation, predictor = _spec(kube_stand_in, name)
    assert recorded["generation"] == generation and recorded["resource_version"]
    assert recorded["smoke_url"].startswith(f"http://latest-{name}-predictor.")
    assert "storageUri" not in str(recorded) and "predictor" not in recorded  # no spec in XCom

    with Requests(kube_stand_in, name) as load:
        out = KServePromoteOperator(task_id="promote", rollout=result, kubernetes_conn_id=kube_conn).execute(
            _context())
    assert (out["outcome"], out["storage_uri"]) == ("promoted", _uri(iris_models.v2))
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(r2, 100)] and "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert served(kube_stand_in, name, 20) == {r2: 20}
    assert load.failures == [], load.failures[:5]

    # Again (a cleared task, a second DAG run with the same record): success, no patch.
    before = _spec(kube_stand_in, name)
    again = KServePromoteOperator(task_id="promote", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert again["outcome"] == "promoted" and _spec(kube_stand_in, name) == before
    # Rolling back a promoted canary is refused, before any patch.
    with pytest.raises(KServeReleaseRefused, match="already promoted"):
        KServeRollbackOperator(task_id="rollback", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert _spec(kube_stand_in, name) == before


def test_rollback_restores_the_previous_model_alone_and_again_is_a_no_op(isvcs, kube_stand_in, iris_models,
                                                                         kube_conn):
    name = "rel-rollback"
    r2 = f"{name}-predictor-00002"
    result = _canary(name, _uri(iris_models.v2), kube_conn)
    with Requests(kube_stand_in, name) as load:
        out = run_deferrable(  # deferrable: any wait longer than the inline watch goes to the trigger
            KServeRollbackOperator(task_id="rollback", rollout=result, kubernetes_conn_id=kube_conn, deferrable=True),
            _context(),
        )
    assert out["outcome"] == "rolled_back" and out["storage_uri"] == _uri(iris_models.v1)
    assert load.failures == [], load.failures[:5]
    obj = kube_stand_in.get_isvc(name)
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == _uri(iris_models.v1) and "canaryTrafficPercent" not in predictor
    traffic = dict(revision_traffic(obj))
    serving = {r for r, p in traffic.items() if p > 0}
    assert len(serving) == 1 and traffic[next(iter(serving))] == 100 and r2 not in serving
    assert set(served(kube_stand_in, name, 20)) == serving

    before = _spec(kube_stand_in, name)
    again = KServeRollbackOperator(task_id="rollback", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert again["outcome"] == "rolled_back" and _spec(kube_stand_in, name) == before
    with pytest.raises(KServeReleaseRefused, match="the canary is gone"):
        KServePromoteOperator(task_id="promote", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert _spec(kube_stand_in, name) == before


def test_a_service_changed_since_the_record_is_refused_before_any_patch(isvcs, kube_stand_in, iris_models, kube_conn):
    name = "rel-changed"
    first = _canary(name, _uri(iris_models.v2), kube_conn)
    # Someone changes the canary's share by hand: the approved canary is not what is there.
    kube_stand_in.patch_isvc(name, {"spec": {"predictor": {"canaryTrafficPercent": 50}}})
    before = _spec(kube_stand_in, name)
    for cls in (KServePromoteOperator, KServeRollbackOperator):
        with pytest.raises(KServeReleaseRefused, match="canaryTrafficPercent is 50, the recorded canary had 20"):
            cls(task_id="t", rollout=first, kubernetes_conn_id=kube_conn).execute(_context())
    assert _spec(kube_stand_in, name) == before

    # Another canary over it by hand (another storage URI, another revision): refused too.
    kube_stand_in.patch_isvc(
        name, {"spec": {"predictor": {"canaryTrafficPercent": 20, "model": {"storageUri": _uri(iris_models.v1)}}}}
    )
    kube_stand_in.wait_for(name, lambda o: o["status"]["components"]["predictor"].get("latestCreatedRevision")
                           == f"{name}-predictor-00003", what="the hand-made canary's revision")
    before = _spec(kube_stand_in, name)
    for cls in (KServePromoteOperator, KServeRollbackOperator):
        with pytest.raises(KServeReleaseRefused, match=r"storageUri is .*/v1; the recorded canary rolled out"):
            cls(task_id="t", rollout=first, kubernetes_conn_id=kube_conn).execute(_context())
    assert _spec(kube_stand_in, name) == before

    # A record naming a service that is not there: the hook's clear error, nothing else.
    recorded = {**first["recorded"], "inference_service": "rel-no-such"}
    with pytest.raises(LookupError, match="InferenceService default/rel-no-such does not exist"):
        KServePromoteOperator(task_id="t", rollout=recorded, kubernetes_conn_id=kube_conn).execute(_context())


# ---- crash safety: a worker killed mid-way, the retry finishes --------------------------------------
@pytest.mark.parametrize("after", [False, True], ids=["before-patch", "after-patch"])
def test_promotion_killed_around_its_patch_is_finished_by_the_retry(isvcs, kube_stand_in, iris_models, kube_conn,
                                                                    after):
    name = "rel-kill-promote"
    result = _canary(name, _uri(iris_models.v2 if not after else iris_models.v1), kube_conn)
    new = result["recorded"]["new_revision"]
    store = _Store()
    first = KServePromoteOperator(task_id="promote", rollout=result, kubernetes_conn_id=kube_conn)
    first._hook = _killing_hook(kube_conn, after=after)
    with pytest.raises(_WorkerKilled):
        first.execute(_context(store))
    saved = store[RELEASE_STATE_KEY]
    assert (saved["phase"], saved["patched"], saved["approved"]) == ("promote", False, True)
    obj = kube_stand_in.get_isvc(name)
    assert ("canaryTrafficPercent" in obj["spec"]["predictor"]) is not after  # the patch went out, or not

    retry = KServePromoteOperator(task_id="promote", rollout=result, kubernetes_conn_id=kube_conn)
    out = retry.execute(_context(store))
    assert out["outcome"] == "promoted"
    assert store[RELEASE_STATE_KEY]["phase"] == "done"
    obj = kube_stand_in.get_isvc(name)
    assert revision_traffic(obj) == [(new, 100)] and "canaryTrafficPercent" not in obj["spec"]["predictor"]


def test_rollback_killed_after_the_pin_is_finished_by_the_retry_and_never_splits(isvcs, kube_stand_in, iris_models,
                                                                                 kube_conn):
    name = "rel-kill-rollback"
    result = _canary(name, _uri(iris_models.v2), kube_conn)
    new = result["recorded"]["new_revision"]
    store = _Store()
    first = KServeRollbackOperator(task_id="rollback", rollout=result, kubernetes_conn_id=kube_conn)
    first._hook = _killing_hook(kube_conn, after=True)  # the pin (canaryTrafficPercent 0) went out
    with pytest.raises(_WorkerKilled):
        first.execute(_context(store))
    assert store[RELEASE_STATE_KEY]["phase"] == "rollback_pin"
    pinned = kube_stand_in.wait_for(
        name, lambda o: dict(revision_traffic(o)).get(new, 0) == 0 and _sole(o), what="the pin serving alone"
    )
    assert pinned["spec"]["predictor"]["canaryTrafficPercent"] == 0

    with Requests(kube_stand_in, name) as load:
        out = KServeRollbackOperator(task_id="rollback", rollout=result, kubernetes_conn_id=kube_conn).execute(
            _context(store))
    assert out["outcome"] == "rolled_back" and store[RELEASE_STATE_KEY]["phase"] == "rolled_back"
    assert load.failures == [] and new not in load.served, (load.failures[:5], load.served)
    obj = kube_stand_in.get_isvc(name)
    assert obj["spec"]["predictor"]["model"]["storageUri"] == _uri(iris_models.v1)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"] and _sole(obj)


def _sole(obj: dict[str, Any]) -> bool:
    traffic = revision_traffic(obj)
    serving = [p for _, p in traffic if p > 0]
    return serving == [100]


def test_the_record_from_a_task_id_is_read_from_xcom(isvcs, kube_stand_in, iris_models, kube_conn):
    """``rollout_task_id`` pulls the rollout task's return value (here a TI double with xcom_pull)."""
    name = "rel-promote"
    result = _canary(name, _uri(iris_models.v1), kube_conn)

    context = _context()
    pulled: list[str] = []
    context["ti"].xcom_pull = lambda task_ids: pulled.append(task_ids) or result
    out = KServePromoteOperator(task_id="promote", rollout_task_id="canary", kubernetes_conn_id=kube_conn).execute(
        context)
    assert pulled == ["canary"]
    assert out["outcome"] == "promoted" and out["storage_uri"] == _uri(iris_models.v1)


def test_standard_mode_records_a_direct_rollout_and_the_rollback_waits_for_the_deployment(
    isvcs, kube_stand_in, iris_models, kube_conn
):
    """No canary in Standard mode (KServe ignores canaryTrafficPercent): the record says so, promote has
    nothing to do, and the rollback restores the previous spec and waits for the Deployment's rollout."""
    from tests.integration.operators.test_kserve_rollout import _deployment, _rolled_out

    name = "rel-standard"
    (old_server,) = served(kube_stand_in, name, 3)
    result = _canary(name, _uri(iris_models.v2), kube_conn)
    recorded = result["recorded"]
    assert (result["outcome"], recorded["canary"], recorded["mode"]) == ("rolled_out", False, "Standard")
    new_servers = set(served(kube_stand_in, name, 5))
    assert old_server not in new_servers

    before = _spec(kube_stand_in, name)
    out = KServePromoteOperator(task_id="p", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert out["outcome"] == "promoted" and _spec(kube_stand_in, name) == before  # nothing to patch

    with Requests(kube_stand_in, name) as load:
        out = KServeRollbackOperator(task_id="r", rollout=result, kubernetes_conn_id=kube_conn).execute(_context())
    assert out["outcome"] == "rolled_back" and load.failures == [], load.failures[:5]
    assert _spec(kube_stand_in, name)[1]["model"]["storageUri"] == _uri(iris_models.v1)
    assert _rolled_out(_deployment(kube_stand_in, name))  # the rollback waited for the Deployment
    assert not (set(served(kube_stand_in, name, 5)) & new_servers)
