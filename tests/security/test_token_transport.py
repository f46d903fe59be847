"""A bearer token never leaves over plain http for a public-looking host (issue 13 acceptance 4).

The KFP stand-in listens on this machine's own non-loopback address (found with a UDP ``connect``,
which sends nothing), so ``http://<that address>:PORT`` is a host the rule must refuse while a real
server is there to count requests. test_connection, the operator, the sensor and the trigger each
fail with the fix named, and the stand-in's admin counter stays at 0. The positive control turns on
``allow_insecure_token`` and sees the requests arrive, so a counter of 0 means something.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kfp_bridge.local.launch import free_port
from tests.fixtures.kfp_stand_in import KfpStandIn

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-transport-5b0f3e"


def _own_public_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1; a UDP connect only picks the route
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture(scope="module")
def exposed_stand_in(tmp_path_factory):
    address = _own_public_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to listen on")
    root = tmp_path_factory.mktemp("kfp-exposed")
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    log_file = root / "server.log"
    command = [sys.executable, "-m", "kfp_bridge.cli", "local", "kfp", "--host", address, "--port", str(port),
               "--state-dir", str(root / "state"), "--token-file", str(token_file), "--admin"]
    with log_file.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=str(REPO), env=dict(os.environ))
    stand_in = KfpStandIn(host=f"http://{address}:{port}", port=port, state_dir=root / "state", token_file=token_file,
                          token=TOKEN, admin=True, record_file=None, log_file=log_file, process=process)
    try:
        stand_in.wait_ready()
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def exposed(exposed_stand_in, monkeypatch):
    """Connections to the exposed stand-in; stats start at zero."""

    def define(conn_id: str, **extra):
        body = {"conn_type": "kfp", "host": exposed_stand_in.host,
                "extra": {"token_path": str(exposed_stand_in.token_file), **extra}}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
        return conn_id

    exposed_stand_in.reset_stats()
    return SimpleNamespace(stand_in=exposed_stand_in, define=define)


def _requests(stand_in) -> int:
    return stand_in.stats()["total"]


def test_test_connection_refuses_before_any_request(exposed):
    from kfp_bridge.hooks.kfp import KfpHook

    ok, message = KfpHook(kfp_conn_id=exposed.define("kfp_exposed")).test_connection()
    assert not ok
    assert "plain http" in message and "https" in message and "allow_insecure_token" in message
    assert TOKEN not in message
    assert _requests(exposed.stand_in) == 0


def test_task_sensor_and_trigger_refuse_before_any_request(exposed, tmp_path):
    from kfp_bridge.operators.kfp import KfpRunOperator
    from kfp_bridge.sensors.kfp import KfpRunSensor
    from kfp_bridge.triggers.kfp import KfpRunTrigger
    from kfp_bridge.utils.kfp_connection import KfpConnectionError

    conn_id = exposed.define("kfp_exposed")
    (tmp_path / "iris.yaml").write_bytes((REPO / "dags" / "pipelines" / "iris.yaml").read_bytes())
    ti = SimpleNamespace(map_index=-1, xcom_push=lambda **_: None)
    context = {"dag": SimpleNamespace(dag_id="d", fileloc=str(tmp_path / "d.py")), "run_id": "manual__1", "ti": ti,
               "task_state_store": None, "dag_run": None, "logical_date": None}

    operator = KfpRunOperator(task_id="t", pipeline="iris.yaml", params={"model_dir": "/m"}, kfp_conn_id=conn_id,
                              deferrable=False)
    with pytest.raises(KfpConnectionError, match="allow_insecure_token") as err:
        operator.execute(context)
    assert TOKEN not in str(err.value)

    sensor = KfpRunSensor(task_id="s", run_id="5f0c1d2e-0000-4000-8000-000000000001", kfp_conn_id=conn_id)
    with pytest.raises(KfpConnectionError, match="allow_insecure_token"):
        sensor.execute(context)

    async def first_event():
        trigger = KfpRunTrigger(run_id="5f0c1d2e-0000-4000-8000-000000000001", kfp_conn_id=conn_id, poll_interval=0.1)
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert event["status"] == "error" and "allow_insecure_token" in event["message"]
    assert TOKEN not in json.dumps(event)
    assert _requests(exposed.stand_in) == 0


def test_allow_insecure_token_is_the_deliberate_way_through(exposed):
    """Positive control: the same host with the extra set reaches the stand-in (so 0 above is real)."""
    from kfp_bridge.hooks.kfp import KfpHook

    ok, message = KfpHook(kfp_conn_id=exposed.define("kfp_exposed_ok", allow_insecure_token=True)).test_connection()
    assert ok, message
    assert _requests(exposed.stand_in) >= 2
