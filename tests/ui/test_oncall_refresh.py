"""The page's refresh backs off while KFP is unavailable, in headless Chromium.

The plugin's real app (routes, security headers, page and script) is served by uvicorn; only what
the service says is scripted (KFP down, then back), because taking the session's KFP stand-in down
would break the other tests sharing it. Waiting for one real reload takes 10 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kfp_bridge.local.airflow import free_port
from kfp_bridge.plugins import app as plugin_app
from kfp_bridge.plugins.service import RunView, TaskRef
from tests.ui.conftest import chromium

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ui")]


class ScriptedService:
    """``build_view`` as the service answers it: KFP unavailable or a running run; records each call."""

    def __init__(self) -> None:
        self.kfp_down = True
        self.calls: list[float] = []

    def build_view(self, ref: TaskRef) -> RunView:
        self.calls.append(time.monotonic())
        view = RunView(ref=ref, task_state="deferred", try_number=1, is_kfp_task=True, conn_id="kfp_default")
        if self.kfp_down:
            view.problem = "Could not read the KFP run through connection 'kfp_default': connection refused"
            view.reason = view.problem
        else:
            view.run_id, view.run_state = "r1", "RUNNING"
        return view


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ScriptedService]]:
    service = ScriptedService()
    monkeypatch.setattr(plugin_app.service, "build_view", service.build_view)
    app = plugin_app.create_app()
    for dependency in (plugin_app.can_read, plugin_app.can_edit):
        app.dependency_overrides[dependency.dependency] = lambda: None
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        server.should_exit = True
        thread.join(10)


def _note(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "refresh-note").text


def test_refresh_waits_twice_as_long_each_time_kfp_is_unavailable(
    served: tuple[str, ScriptedService], tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    base, service = served
    url = f"{base}/ti/d/r/t?map_index=-1"
    driver = chromium(tmp_path)
    try:
        driver.get(url)
        # The note is written by the page's script: it ran, under the page's CSP.
        assert "KFP unavailable" in driver.page_source
        assert _note(driver) == "Trying KFP again in 10 s."
        WebDriverWait(driver, 20).until(lambda d: len(service.calls) >= 2)
        gap = service.calls[1] - service.calls[0]
        assert 9.5 <= gap < 15, f"the first reload came after {gap:.1f} s, not 10 s"
        WebDriverWait(driver, 5).until(lambda d: _note(d) == "Trying KFP again in 20 s.")

        # KFP answers again: the back-off is forgotten, an active run refreshes every 5 s.
        service.kfp_down = False
        driver.get(url)
        assert driver.execute_script("return document.body.dataset.kfp") == "ok"
        assert driver.execute_script("return sessionStorage.length") == 0
        calls = len(service.calls)
        WebDriverWait(driver, 10).until(lambda d: len(service.calls) > calls)
        assert 4.5 <= service.calls[-1] - service.calls[-2] < 9

        # Down again: the back-off starts over at 10 s.
        service.kfp_down = True
        driver.get(url)
        assert _note(driver) == "Trying KFP again in 10 s."
        blocked = [
            e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert blocked == []
    finally:
        driver.quit()
