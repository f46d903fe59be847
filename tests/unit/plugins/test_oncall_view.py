"""The on-call view's pure parts: step rows, refusals, the page and the CSRF guard."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from starlette.requests import Request

from kfp_bridge.plugins import page
from kfp_bridge.plugins.app import json_post_only, parse_map_index
from kfp_bridge.plugins.service import RunView, TaskRef, format_duration, refusal_reason, step_views
from kfp_bridge.utils.states import RunStatus


def _status(state: str, details: list[dict]) -> RunStatus:
    return RunStatus.from_api({"run_id": "r1", "state": state, "run_details": {"task_details": details}})


def test_step_rows_show_latest_attempt_duration_and_error() -> None:
    status = _status(
        "RUNNING",
        [
            {
                "display_name": "prep",
                "state": "SUCCEEDED",
                "start_time": "2026-01-01T00:00:00Z",
                "end_time": "2026-01-01T00:01:05Z",
            },
            {
                "display_name": "check",
                "state": "FAILED",
                "start_time": "2026-01-01T00:01:05Z",
                "end_time": "2026-01-01T00:01:07Z",
                "error": {"message": "boom"},
            },
            {"display_name": "check", "state": "RUNNING", "start_time": "2026-01-01T00:05:00Z"},
        ],
    )
    rows = {row.name: row for row in step_views(status.steps)}
    assert [row.name for row in step_views(status.steps)] == ["prep", "check"]
    assert rows["prep"].duration_seconds == 65 and format_duration(65) == "1m 05s"
    assert (rows["check"].state, rows["check"].attempts, rows["check"].duration_seconds) == (
        "RUNNING",
        2,
        None,
    )
    assert format_duration(3700) == "1h 01m" and format_duration(None) == "—"


def test_refusals_name_the_reason() -> None:
    assert "is SUCCEEDED: only a FAILED or CANCELED run" in refusal_reason(
        _status("SUCCEEDED", []), "success"
    )
    assert "is RUNNING" in refusal_reason(_status("RUNNING", []), "deferred")
    assert "The Airflow task is running" in refusal_reason(_status("FAILED", []), "running")
    assert refusal_reason(_status("FAILED", []), "failed") is None
    assert refusal_reason(_status("CANCELED", []), "failed") is None


def test_page_escapes_kfp_text_and_disables_the_button_with_the_reason() -> None:
    view = RunView(
        ref=TaskRef("d", "r", "t"),
        task_state="success",
        try_number=1,
        is_kfp_task=True,
        conn_id="kfp_default",
    )
    view.run_id, view.run_state, view.run_url = "r1", "SUCCEEDED", "http://kfp/#/runs/details/r1"
    view.steps = step_views(
        _status("SUCCEEDED", [{"display_name": "<script>x</script>", "state": "SUCCEEDED"}]).steps
    )
    view.reason = refusal_reason(_status("SUCCEEDED", []), "success")
    html = page.ti_page(view, prefix="/kfp-bridge")
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert (
        'id="retry-failed-steps" type="button" data-url="/kfp-bridge/api/ti/d/r/t/retry-failed-steps?map_index=-1" disabled'
        in html
    )
    assert "only a FAILED or CANCELED run can be retried" in html


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "airflow:8080", **headers}.items()]
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": "/x",
            "headers": raw,
            "query_string": b"",
        }
    )


def test_csrf_guard_wants_json_from_this_origin() -> None:
    json_post_only(_request({"content-type": "application/json"}))
    json_post_only(
        _request({"content-type": "application/json; charset=utf-8", "origin": "http://airflow:8080"})
    )
    with pytest.raises(HTTPException) as form:
        json_post_only(_request({"content-type": "application/x-www-form-urlencoded"}))
    assert form.value.status_code == 415
    with pytest.raises(HTTPException) as foreign:
        json_post_only(_request({"content-type": "application/json", "origin": "https://evil.example"}))
    assert foreign.value.status_code == 403


@pytest.mark.parametrize(("raw", "index"), [("{MAP_INDEX}", -1), ("", -1), ("-1", -1), ("3", 3)])
def test_map_index_from_the_view_url(raw: str, index: int) -> None:
    assert parse_map_index(raw) == index
