"""KfpRunSensor in real Airflow (poke and deferred) and KfpHook.test_connection against the stand-in."""

from __future__ import annotations

import json

import pytest

from kfp_bridge.hooks.kfp import KfpHook
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import add_dag, explain

pytestmark = pytest.mark.xdist_group("airflow")
DAG_ID = "kfp_ops_sensor"


def _start_run(stand_in: KfpStandIn, pipeline: str, name: str, **params) -> str:
    client = stand_in.client()
    return client.create_run_from_pipeline_package(pipeline, arguments=params, run_name=name).run_id


def test_sensor_succeeds_on_a_succeeded_run_and_fails_on_a_failed_one(ops_stack, kfp_stand_in, ops_pipelines, tmp_path):
    add_dag(ops_stack, DAG_ID)
    good = _start_run(kfp_stand_in, str(ops_pipelines["sleeper"]), "sensor-good", seconds=3.0)
    flag = tmp_path / "flag"
    flag.write_text("fail")
    bad = _start_run(
        kfp_stand_in, str(ops_pipelines["two_step"]), "sensor-bad",
        counter_path=str(tmp_path / "counter"), flag_path=str(flag),
    )

    good_run = ops_stack.trigger_dag(DAG_ID, conf={"run_id": good})
    assert ops_stack.wait_dag_run(DAG_ID, good_run, 240) == "success", explain(ops_stack, DAG_ID, good_run)
    states = {ti["task_id"]: ti["state"] for ti in ops_stack.task_instances(DAG_ID, good_run)}
    assert states == {"poke": "success", "deferred": "success"}
    assert ops_stack.xcom(DAG_ID, good_run, "deferred")["state"] == "SUCCEEDED"

    bad_run = ops_stack.trigger_dag(DAG_ID, conf={"run_id": bad})
    assert ops_stack.wait_dag_run(DAG_ID, bad_run, 240) == "failed"
    for task_id in ("poke", "deferred"):
        log = ops_stack.task_log(DAG_ID, bad_run, task_id, 1)
        assert "step 'check-flag' failed" in log, explain(ops_stack, DAG_ID, bad_run)


def _connection_env(monkeypatch, conn_id: str, body: dict) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def test_test_connection_reports_success_and_a_rejected_token(kfp_stand_in, monkeypatch, tmp_path):
    _connection_env(monkeypatch, "kfp_tc_ok", {"conn_type": "kfp", "host": kfp_stand_in.host,
                                                "extra": {"token_path": str(kfp_stand_in.token_file)}})
    ok, message = KfpHook("kfp_tc_ok").test_connection()
    assert ok, message
    assert kfp_stand_in.host in message

    wrong = "definitely-not-the-token"
    _connection_env(monkeypatch, "kfp_tc_bad", {"conn_type": "kfp", "host": kfp_stand_in.host, "password": wrong})
    ok, message = KfpHook("kfp_tc_bad").test_connection()
    assert not ok
    assert "401" in message and "credentials" in message
    assert wrong not in message and kfp_stand_in.token not in message


def test_test_connection_names_a_malformed_host(monkeypatch):
    _connection_env(monkeypatch, "kfp_tc_host", {"conn_type": "kfp", "host": "kfp.example.com:notaport"})
    ok, message = KfpHook("kfp_tc_host").test_connection()
    assert not ok
    assert "http(s) URL" in message or "invalid port" in message
