"""A multi-user KFP reached through a connection without a namespace (reference/fidelity.md K9,
backend/src/apiserver/server/run_server.go and experiment_server.go: an empty namespace is a 400 in
multi-user mode). ``test_connection`` and the task both fail before any side effect, with a message
that says to set the namespace; the stand-in (``--multi-user``) records what reached it.

Two connections, each to its own multi-user stand-in so that each one's request record is its own:

* ``kfp_mu_asked``: nothing says the server is multi-user; the provider finds out from the server's
  400 on a read (a GET ``/runs``) and never writes;
* ``kfp_mu_declared``: the extra ``multi_user`` is true; the task fails before sending anything.

Issue 11, acceptance 7. The in-process hook check of ``kfp_mu_asked`` is also in
tests/integration/hooks/test_kfp_hook_lifecycle.py; here it stands beside the task for each flavour.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kfp_bridge.hooks.kfp import KfpHook
from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn, start_kfp_stand_in
from tests.integration.operators.conftest import add_dag, explain

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("airflow")]

DAG_ID = "kfp_ops_multi_user"
NAMESPACE = "team-a"
SERVICE_ACCOUNT = "system:serviceaccount:team-a:default-editor"
SET_THE_NAMESPACE = "set the connection extra 'namespace'"
RUN_TIMEOUT = 180


def _users() -> dict[str, Any]:
    # The token file's identity may use team-a: the refusal below is about the namespace, not access.
    return {"namespaces": {SERVICE_ACCOUNT: [NAMESPACE]}, "tokens": {}, "token_file_user": SERVICE_ACCOUNT}


def _conn(stand_in: KfpStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "kfp",
        "host": stand_in.host,
        "extra": {"token_path": str(stand_in.token_file), **extra},
    }


@pytest.fixture(scope="module")
def multi_user_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, KfpStandIn]]:
    root = tmp_path_factory.mktemp("kfp-multi-user-ops")
    with (
        start_kfp_stand_in(
            root / "asked", token=secrets.token_hex(16), multi_user=True, users=_users()
        ) as asked,
        start_kfp_stand_in(
            root / "declared", token=secrets.token_hex(16), multi_user=True, users=_users()
        ) as declared,
    ):
        yield {"kfp_mu_asked": asked, "kfp_mu_declared": declared}


@pytest.fixture(scope="module")
def multi_user_dag(ops_stack: AirflowStack, multi_user_servers: dict[str, KfpStandIn]) -> Iterator[str]:
    created = []
    for conn_id, stand_in in multi_user_servers.items():
        extra = {"multi_user": True} if conn_id == "kfp_mu_declared" else {}
        body = _conn(stand_in, **extra)
        response = ops_stack.post(
            "/api/v2/connections",
            {
                "connection_id": conn_id,
                "conn_type": "kfp",
                "host": body["host"],
                "extra": json.dumps(body["extra"]),
            },
        )
        assert response.status_code == 201, response.text
        created.append(conn_id)
    try:
        yield add_dag(ops_stack, DAG_ID)
    finally:
        for conn_id in created:
            ops_stack.request("DELETE", f"/api/v2/connections/{conn_id}")


def _written(stand_in: KfpStandIn) -> dict[str, int]:
    """Every request that could change something (anything but a GET) the stand-in received."""
    return {label: n for label, n in stand_in.stats()["requests"].items() if not label.startswith("GET ")}


def _nothing_in_the_namespace(stand_in: KfpStandIn) -> None:
    headers = stand_in.headers()
    with httpx.Client(base_url=stand_in.host, headers=headers, timeout=30) as http:
        for path, key in (("runs", "runs"), ("experiments", "experiments"), ("pipelines", "pipelines")):
            listed = http.get(f"/apis/v2beta1/{path}", params={"namespace": NAMESPACE})
            assert listed.status_code == 200, listed.text
            assert not listed.json().get(key), (path, listed.json())
    with httpx.Client(base_url=stand_in.host, headers=headers, timeout=30) as http:
        shared = http.get("/apis/v2beta1/pipelines").json()  # shared pipelines need no namespace
    assert not shared.get("pipelines"), shared


@pytest.mark.parametrize("conn_id", ["kfp_mu_asked", "kfp_mu_declared"])
def test_connection_without_namespace_fails_test_connection_and_says_to_set_it(
    multi_user_servers: dict[str, KfpStandIn], monkeypatch: pytest.MonkeyPatch, conn_id: str
) -> None:
    stand_in = multi_user_servers[conn_id]
    extra = {"multi_user": True} if conn_id == "kfp_mu_declared" else {}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(_conn(stand_in, **extra)))
    stand_in.reset_stats()

    ok, message = KfpHook(conn_id).test_connection()

    assert not ok
    assert f"KFP behind connection '{conn_id}' is multi-user" in message and SET_THE_NAMESPACE in message, (
        message
    )
    requests = stand_in.stats()["requests"]
    assert _written(stand_in) == {}
    if conn_id == "kfp_mu_declared":
        # Declared: only the open healthz is asked (it proves the host); nothing needing a namespace.
        assert requests == {"GET /apis/v2beta1/healthz": 1}, requests
    else:
        assert set(requests) <= {"GET /apis/v2beta1/healthz", "GET /apis/v2beta1/runs"}, requests
    # The positive control: the same connection with the namespace passes, so the refusal was the namespace.
    assert KfpHook(conn_id, namespace=NAMESPACE).test_connection()[0]


def test_task_without_namespace_fails_before_any_side_effect_and_says_to_set_it(
    ops_stack: AirflowStack, multi_user_servers: dict[str, KfpStandIn], multi_user_dag: str
) -> None:
    for stand_in in multi_user_servers.values():
        stand_in.reset_stats()
    run_id = ops_stack.trigger_dag(multi_user_dag)
    assert ops_stack.wait_dag_run(multi_user_dag, run_id, RUN_TIMEOUT) == "failed", explain(
        ops_stack, multi_user_dag, run_id
    )
    states = {ti["task_id"]: ti["state"] for ti in ops_stack.task_instances(multi_user_dag, run_id)}
    assert states == {"asked": "failed", "declared": "failed"}, explain(ops_stack, multi_user_dag, run_id)

    for conn_id, stand_in in multi_user_servers.items():
        task_id = conn_id.removeprefix("kfp_mu_")
        log = ops_stack.task_log(multi_user_dag, run_id, task_id, 1)
        assert f"KFP behind connection '{conn_id}' is multi-user" in log, log[-3000:]
        assert SET_THE_NAMESPACE in log, log[-3000:]
        assert "Created KFP run" not in log
        requests = stand_in.stats()["requests"]
        assert _written(stand_in) == {}, requests  # no experiment, pipeline, version or run was created
        if conn_id == "kfp_mu_declared":
            assert requests == {}, requests  # failed before sending anything
        else:
            assert set(requests) == {"GET /apis/v2beta1/runs"}, requests  # the read that learned it
        _nothing_in_the_namespace(stand_in)
