"""The stand-in's /_admin test hooks and the response model check the fixtures rely on."""

from __future__ import annotations

import time

import httpx
import kfp_server_api
import pytest

from tests.fixtures.kfp_stand_in import start_kfp_stand_in
from tests.fixtures.kfp_wire_check import problems_for_record

pytestmark = pytest.mark.integration


def test_stats_count_route_templates(kfp_stand_in):
    client = kfp_stand_in.client()
    kfp_stand_in.reset_stats()
    for run_id in ("a", "b", "c"):
        with pytest.raises(kfp_server_api.ApiException):
            client.get_run(run_id)
    client.list_experiments()
    stats = kfp_stand_in.stats()
    assert stats["requests"]["GET /apis/v2beta1/runs/{run_id}"] == 3
    assert stats["requests"]["GET /apis/v2beta1/experiments"] == 1
    assert stats["total"] == 4
    kfp_stand_in.reset_stats()
    assert kfp_stand_in.stats() == {"total": 0, "requests": {}}


def test_error_rate_and_outage_faults(kfp_stand_in):
    client = kfp_stand_in.client()
    try:
        kfp_stand_in.set_faults(error_rate=0.5, error_status=503, seed=7)
        statuses = []
        with kfp_stand_in.http() as http:
            for _ in range(40):
                statuses.append(http.get("/apis/v2beta1/healthz").status_code)
            assert http.get("/_admin/stats").status_code == 200  # admin paths never fault
        assert set(statuses) == {200, 503}
        assert 8 <= statuses.count(503) <= 32

        kfp_stand_in.set_faults(outage_seconds=1.0)
        with pytest.raises(kfp_server_api.ApiException) as info:
            client.list_runs()
        assert info.value.status == 503 and "injected outage" in info.value.body
        time.sleep(1.1)
        assert client.list_experiments() is not None
    finally:
        kfp_stand_in.clear_faults()
    assert client.list_runs() is not None


def test_admin_is_404_without_the_flag(tmp_path):
    with start_kfp_stand_in(tmp_path / "plain", admin=False) as stand_in:
        response = httpx.get(f"{stand_in.host}/_admin/stats")
        assert response.status_code == 404
        assert response.json()["code"] == 5
        # No --token-file: no authentication at all.
        assert httpx.get(f"{stand_in.host}/apis/v2beta1/healthz").json() == {"multi_user": False,
                                                                              "pipeline_store": "database"}


def test_sigterm_shuts_down_gracefully_and_stops_running_runs(tmp_path):
    import psutil

    from tests.fixtures import kfp_pipelines as pipelines

    pid_file = tmp_path / "pid"
    with start_kfp_stand_in(tmp_path / "state", admin=False) as stand_in:
        stand_in.client().create_run_from_pipeline_func(
            pipelines.sleeper, arguments={"seconds": 120.0, "pid_file": str(pid_file)})
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the long step never started"
            time.sleep(0.1)
        component_pid = int(pid_file.read_text().split()[0])
        stand_in.stop()
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown, hence -15 rather than 0.
        assert stand_in.process.returncode in (0, -15)
        assert "Traceback" not in stand_in.log_tail(200)
        assert not psutil.pid_exists(component_pid) or psutil.Process(component_pid).status() == psutil.STATUS_ZOMBIE


def test_model_check_rejects_invented_fields_and_wrong_types():
    good = {"method": "GET", "route": "/apis/v2beta1/runs/{run_id}", "path": "/x", "status": 200,
            "body": {"run_id": "r", "state": "RUNNING", "created_at": "2026-01-01T00:00:00Z",
                     "run_details": {"task_details": [{"task_id": "t", "execution_id": "3"}]}}}
    assert problems_for_record(good) == []
    invented = {**good, "body": {**good["body"], "progress": 0.5}}
    assert any("unknown field 'progress'" in p for p in problems_for_record(invented))
    int64_as_number = {**good, "body": {"run_details": {"task_details": [{"execution_id": 3}]}}}
    assert any("expected a string" in p for p in problems_for_record(int64_as_number))
    bad_enum = {**good, "body": {"state": "ERROR"}}
    assert any("'ERROR' is not one of" in p for p in problems_for_record(bad_enum))
    unknown_route = {**good, "route": "/apis/v2beta1/nope"}
    assert problems_for_record(unknown_route)
