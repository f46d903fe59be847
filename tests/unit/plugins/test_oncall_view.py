"""The on-call view's pure parts: step rows, refusals, the page, the security headers and the CSRF guard.

The routes run here on FastAPI's TestClient with Airflow's authorization dependency overridden and
the service replaced at the app's import site (no database); tests/ui/ runs them for real.
"""

from __future__ import annotations

import re

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from starlette.requests import Request

from kfp_bridge.plugins import app as plugin_app
from kfp_bridge.plugins import page
from kfp_bridge.plugins.app import json_post_only, parse_map_index
from kfp_bridge.plugins.service import (
    OnCallError,
    RunView,
    TaskRef,
    format_duration,
    refusal_reason,
    step_views,
)
from kfp_bridge.utils.states import RunStatus

PAYLOAD = '"><img src=x onerror=window.__pwned=1>'


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
    html = page.ti_page(view, prefix="/kfp-bridge", nonce="n0nce")
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert (
        'id="retry-failed-steps" type="button" data-url="/kfp-bridge/api/ti/d/r/t/retry-failed-steps?map_index=-1" '
        'data-pending="Asking KFP to retry the failed steps…" disabled' in html
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


def test_csrf_guard_wants_json_from_this_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
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
    for origin in ("null", "NULL"):
        with pytest.raises(HTTPException) as opaque:
            json_post_only(_request({"content-type": "application/json", "origin": origin}))
        assert opaque.value.status_code == 403 and "Origin: null" in opaque.value.detail
    # Airflow never trusts X-Forwarded-Host (uvicorn's proxy_headers covers proto and for only).
    forwarded = {
        "content-type": "application/json",
        "origin": "https://evil.example",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
    }
    with pytest.raises(HTTPException) as spoofed:
        json_post_only(_request(forwarded))
    assert spoofed.value.status_code == 403


def test_csrf_guard_accepts_airflows_configured_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy that rewrites Host, ``[api] base_url`` is the origin the browser uses."""
    public = {"content-type": "application/json", "origin": "https://airflow.example.com"}
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    with pytest.raises(HTTPException):
        json_post_only(_request(public))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/team-a")
    json_post_only(_request(public))


@pytest.mark.parametrize(("raw", "index"), [("{MAP_INDEX}", -1), ("", -1), ("-1", -1), ("3", 3)])
def test_map_index_from_the_view_url(raw: str, index: int) -> None:
    assert parse_map_index(raw) == index


def _view(**fields) -> RunView:
    view = RunView(
        ref=TaskRef("d", "r", "t"),
        task_state="running",
        try_number=1,
        is_kfp_task=True,
        conn_id="kfp_default",
    )
    for name, value in fields.items():
        setattr(view, name, value)
    return view


def test_page_runs_only_its_nonce_marked_script_and_style() -> None:
    html = page.ti_page(_view(run_id="r1", run_state="RUNNING"), prefix="/kfp-bridge", nonce="n0nce")
    assert re.findall(r"<(script|style)\b([^>]*)>", html) == [
        ("style", ' nonce="n0nce"'),
        ("script", ' nonce="n0nce"'),
    ]
    # No inline event handler or style attribute, which the CSP would block (or need 'unsafe-inline' for).
    assert not re.search(r"\s(on\w+|style)=", html)
    assert '.badge[data-state="FAILED"] { background: #c62828; }' in html
    csp = page.content_security_policy("n0nce")
    assert (
        "script-src 'nonce-n0nce'" in csp and "frame-ancestors 'self'" in csp and "default-src 'none'" in csp
    )
    assert "unsafe-inline" not in csp


@pytest.mark.parametrize("field", ["run_name", "run_error", "run_id", "run_found_by", "reason", "conn_id"])
def test_every_kfp_and_airflow_value_is_escaped(field: str) -> None:
    view = _view(
        **{"run_id": "r1", "run_state": "FAILED", "run_url": "http://kfp/#/runs/details/r1", field: PAYLOAD}
    )
    for html in (
        page.ti_page(view, prefix="/p", nonce="n"),
        page.dag_run_page([view], dag_id="d", run_id="r", prefix="/p", nonce="n"),
    ):
        assert "<img" not in html, field


def test_request_values_are_escaped_on_every_page() -> None:
    ref = TaskRef(PAYLOAD, PAYLOAD, PAYLOAD)
    view = RunView(
        ref=ref,
        task_state=PAYLOAD,
        try_number=1,
        is_kfp_task=True,
        conn_id="c",
        run_id="r1",
        run_url="http://kfp/r1",
        steps=step_views(
            _status(
                "FAILED", [{"display_name": PAYLOAD, "state": "FAILED", "error": {"message": PAYLOAD}}]
            ).steps
        ),
    )
    pages = [
        page.ti_page(view, prefix="/p", nonce="n"),
        page.dag_run_page([view], dag_id=PAYLOAD, run_id=PAYLOAD, prefix="/p", nonce="n"),
        page.dag_run_page([], dag_id=PAYLOAD, run_id=PAYLOAD, prefix="/p", nonce="n"),
        page.error_page("KFP run", f"Task instance {PAYLOAD} does not exist.", nonce="n"),
    ]
    for html in pages:
        assert "<img" not in html and "&lt;img src=x onerror=window.__pwned=1&gt;" in html


@pytest.mark.parametrize("url", ["javascript:window.__pwned=1", " JavaScript:alert(1)", "data:text/html,x"])
def test_only_web_urls_become_links(url: str) -> None:
    html = page.ti_page(_view(run_id="r1", run_state="FAILED", run_url=url), prefix="/p", nonce="n")
    assert 'class="kfp-link"' not in html and "href=" not in html and "r1" in html
    assert 'class="kfp-link" href="https://kfp/x"' in page.ti_page(
        _view(run_id="r1", run_state="FAILED", run_url="https://kfp/x"), prefix="/p", nonce="n"
    )


def test_kfp_unavailable_is_said_and_marked_for_the_refresh_back_off() -> None:
    down = _view(problem="Could not read the KFP run through connection 'kfp_default': timed out")
    html = page.ti_page(down, prefix="/p", nonce="n")
    assert 'data-kfp="unavailable"' in html and "<strong>KFP unavailable.</strong> Could not read" in html
    assert 'id="refresh-note"' in html
    assert "KFP unavailable.</strong>" not in page.ti_page(
        _view(problem="KFP unavailable: timed out"), prefix="/p", nonce="n"
    )
    assert 'data-kfp="unavailable"' in page.dag_run_page(
        [down], dag_id="d", run_id="r", prefix="/p", nonce="n"
    )
    assert 'data-kfp="ok"' in page.ti_page(_view(run_id="r1", run_state="RUNNING"), prefix="/p", nonce="n")
    # The script doubles the wait from 10 s up to 2 min while KFP is unavailable.
    assert "Math.min(Number(sessionStorage.getItem(BACKOFF) || 5) * 2, 120)" in page.SCRIPT


class _User:
    def get_name(self) -> str:
        return "on-call"


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What the routes write to Airflow's audit log (the service's record_audit, captured)."""
    rows: list[tuple] = []
    monkeypatch.setattr(plugin_app.service, "record_audit", lambda *args: rows.append(args))
    return rows


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, audit: list[tuple]) -> TestClient:
    """The plugin's app with every caller allowed and the service answering from memory."""
    from airflow.api_fastapi.core_api.security import get_user

    app = plugin_app.create_app()
    app.dependency_overrides[plugin_app.can_read.dependency] = lambda: None
    app.dependency_overrides[get_user] = _User
    monkeypatch.setattr(plugin_app, "require_edit", lambda request, user: None)

    def build_view(ref: TaskRef) -> RunView:
        if ref.task_id != "t":
            raise OnCallError(404, f"Task instance {ref.dag_id}/{ref.run_id}/{ref.task_id} does not exist.")
        return _view(run_id="r1", run_state="FAILED")

    monkeypatch.setattr(plugin_app.service, "build_view", build_view)
    monkeypatch.setattr(plugin_app.service, "kfp_task_instances", lambda d, r: [TaskRef(d, r, "t")])
    return TestClient(app, base_url="http://airflow:8080")


def test_html_responses_carry_csp_with_a_fresh_nonce_and_security_headers(client: TestClient) -> None:
    nonces = []
    for path in ("/ti/d/r/t", "/ti/d/r/missing", "/dag-run/d/r", "/ti/d/r/t"):
        response = client.get(path)
        assert response.headers["content-type"].startswith("text/html"), path
        csp = response.headers["content-security-policy"]
        (nonce,) = re.findall(r"'nonce-([^']+)'", csp)[:1]
        assert f'<script nonce="{nonce}">' in response.text, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
        nonces.append(nonce)
    assert len(set(nonces)) == len(nonces), "a nonce is never reused"
    json = client.get("/api/ti/d/r/t")
    assert (
        json.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in json.headers
    )


def test_404_page_escapes_the_path(client: TestClient) -> None:
    response = client.get("/ti/x/" + PAYLOAD.replace('"', "%22").replace(" ", "%20") + "/t2")
    assert response.status_code == 404
    assert "<img" not in response.text
    assert "&quot;&gt;&lt;img src=x onerror=window.__pwned=1&gt;/t2 does not exist." in response.text


def test_post_refuses_origin_null_and_forwarded_host_and_audits_each_refusal(
    client: TestClient, audit: list[tuple]
) -> None:
    url = "/api/ti/d/r/t/retry-failed-steps?map_index=2"
    null = client.post(url, json={}, headers={"Origin": "null"})
    assert null.status_code == 403 and "Origin: null" in null.json()["detail"]
    forged = client.post(
        url,
        json={},
        headers={
            "Origin": "https://evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
        },
    )
    assert forged.status_code == 403 and "Cross-origin" in forged.json()["detail"]
    form = client.post(url, content=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert [(ref, user, extra["outcome"], extra["status"], event) for ref, user, extra, event in audit] == [
        (TaskRef("d", "r", "t", 2), "on-call", "refused", status, "kfp_bridge.retry_failed_steps")
        for status in (403, 403, 415)
    ]


def test_terminate_route_calls_the_service_and_its_refusals_are_audited(
    client: TestClient, audit: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfp_bridge.plugins.service import TerminateResult

    calls = []

    def terminate(ref: TaskRef, *, user_name: str) -> TerminateResult:
        calls.append((ref, user_name))
        if ref.task_id == "busy":
            raise OnCallError(409, "The Airflow task is running: it terminates its run when it is killed.")
        return TerminateResult("r1", "FAILED", "Terminated KFP run r1.")

    monkeypatch.setattr(plugin_app.service, "terminate_kfp_run", terminate)
    done = client.post("/api/ti/d/r/t/terminate-kfp-run", json={}, headers={"Origin": "http://airflow:8080"})
    assert done.status_code == 200 and done.json()["message"] == "Terminated KFP run r1."
    busy = client.post("/api/ti/d/r/busy/terminate-kfp-run", json={})
    assert busy.status_code == 409 and "terminates its run" in busy.json()["detail"]
    assert calls == [(TaskRef("d", "r", "t"), "on-call"), (TaskRef("d", "r", "busy"), "on-call")]
    assert client.get("/api/ti/d/r/t/terminate-kfp-run").status_code == 405  # never a GET
    assert (
        client.post("/api/ti/d/r/t/terminate-kfp-run", json={}, headers={"Origin": "null"}).status_code == 403
    )
    assert len(calls) == 2, "a refused request never reaches KFP"
    assert [(extra["outcome"], event) for _, _, extra, event in audit] == [
        ("refused", "kfp_bridge.terminate_kfp_run")
    ]


def test_terminate_button_only_when_the_task_stopped_but_its_run_did_not() -> None:
    html = page.ti_page(
        _view(run_id="r1", run_state="RUNNING", terminable=True), prefix="/kfp-bridge", nonce="n"
    )
    assert (
        'id="terminate-kfp-run" type="button" data-url="/kfp-bridge/api/ti/d/r/t/terminate-kfp-run?map_index=-1"'
        in html
    )
    assert 'id="terminate-kfp-run"' not in page.ti_page(
        _view(run_id="r1", run_state="RUNNING"), prefix="/p", nonce="n"
    )
