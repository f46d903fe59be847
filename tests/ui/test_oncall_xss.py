"""Acceptance 1 of issue 13: no script from a URL or from KFP runs on the plugin's pages, in a real browser.

Headless Chromium, logged in to a real Airflow stack as admin (so every route answers, not 401),
opens each plugin route with an XSS payload in every path segment and in the query, and a real
failed KFP run whose name (KFP text) is a payload; after each page ``window.__pwned`` must still be
undefined and the payload must be text, not elements. A control proves the payloads do run when a
page puts them in HTML as is. Every HTML response the browser received carries the CSP (read from
Chromium's network log, the headers as the browser saw them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import explain, kfp_runs
from tests.ui.conftest import DAGS, chromium, log_in

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("ui")]

RUN_TIMEOUT = 180
XSS_DAG = "oncall_ui_xss"
# No "/" in a payload: a decoded %2F would split the path segment and miss the route.
PAYLOADS = (
    "<img src=x onerror=window.__pwned=1>",
    '"><svg onload=window.__pwned=2>',
    "'><img src=x onerror=window.__pwned=3>",
)
LINK_PAYLOAD = "javascript:window.__pwned=4"
# Each plugin route, with its path segments and query value as placeholders.
ROUTES = (
    ("html", "/kfp-bridge/ti/{dag_id}/{run_id}/{task_id}?map_index={map_index}"),
    ("html", "/kfp-bridge/dag-run/{dag_id}/{run_id}"),
    ("json", "/kfp-bridge/api/ti/{dag_id}/{run_id}/{task_id}?map_index={map_index}"),
    ("json", "/kfp-bridge/api/ti/{dag_id}/{run_id}/{task_id}/retry-failed-steps?map_index={map_index}"),
    ("json", "/kfp-bridge/api/ti/{dag_id}/{run_id}/{task_id}/terminate-kfp-run?map_index={map_index}"),
)


def _urls(base: str, real: dict[str, str]) -> list[tuple[str, str, str]]:
    """(kind, url, payload) with the payload in one segment at a time, the others real."""
    urls = []
    for kind, template in ROUTES:
        for field in [name for name in real if "{" + name + "}" in template]:
            for payload in (*PAYLOADS, LINK_PAYLOAD):
                values = {
                    name: quote(payload if name == field else value, safe="") for name, value in real.items()
                }
                urls.append((kind, base + template.format(**values), payload))
    return urls


def _pwned(driver: Any) -> Any:
    return driver.execute_script("return window.__pwned;")


def _injected_elements(driver: Any) -> int:
    return driver.execute_script(
        "return document.querySelectorAll('img, svg, a[href^=\"javascript\" i]').length;"
    )


def _document_responses(driver: Any) -> list[dict]:
    """Top-level and frame documents the browser received since the last call: url, mime type, headers."""
    responses = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["type"] == "Document":
            response = message["params"]["response"]
            headers = {k.lower(): v for k, v in response["headers"].items()}
            responses.append(
                {
                    "url": response["url"],
                    "mime": response["mimeType"],
                    "headers": headers,
                    "status": response["status"],
                }
            )
    return responses


def test_no_payload_runs_on_any_route_and_every_html_response_has_the_csp(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # A real failed KFP run whose display name (KFP text on both pages) is a payload.
    ui_stack.add_dag_file(DAGS / f"{XSS_DAG}.py")
    ui_stack.wait_dag_parsed(XSS_DAG, 120, file_name=f"{XSS_DAG}.py")
    (tmp_path / "xss.flag").write_text("fail\n")
    run_id = ui_stack.trigger_dag(XSS_DAG, conf={"work": str(tmp_path), "run_name": PAYLOADS[0]})
    assert ui_stack.wait_dag_run(XSS_DAG, run_id, RUN_TIMEOUT) == "failed", explain(ui_stack, XSS_DAG, run_id)
    [kfp_run] = kfp_runs(kfp_stand_in, dag_id=XSS_DAG, run_id=run_id)

    driver = chromium(tmp_path, network_log=True)
    try:
        # Control: the payloads are live, they run where a page puts them in HTML unescaped.
        for number, payload in enumerate(PAYLOADS, start=1):
            driver.get("data:text/html;charset=utf-8," + quote(f"<p title='x'>{payload}</p>"))
            WebDriverWait(driver, 5).until(
                lambda d: _pwned(d) is not None, f"control: {payload!r} did not run"
            )
            assert _pwned(driver) == number
        driver.get_log("performance")  # drop the control pages

        log_in(driver, ui_stack)
        driver.get_log("performance")
        real = {"dag_id": XSS_DAG, "run_id": run_id, "task_id": "train", "map_index": "-1"}
        seen: list[dict] = []
        checked = {"html": 0, "json": 0}
        for kind, url, payload in _urls(ui_stack.base_url, real):
            driver.get(url)
            assert driver.execute_script("return document.readyState") == "complete"
            time.sleep(0.1)  # an error/load handler would have run by the load event; margin for timers
            assert _pwned(driver) is None, f"script ran: {url}"
            assert _injected_elements(driver) == 0, f"payload became markup: {url}"
            if kind == "html" and f"map_index={quote(payload, safe='')}" not in url:
                # The page names the missing DAG run / task instance: the payload shows as text.
                assert payload in driver.find_element(By.TAG_NAME, "body").text, url
            seen += _document_responses(driver)
            checked[kind] += 1

        # KFP's text with a payload (the run's name), on the real task's page and the DAG run's page.
        for path in (
            f"/kfp-bridge/ti/{XSS_DAG}/{quote(run_id, safe='')}/train?map_index=-1",
            f"/kfp-bridge/dag-run/{XSS_DAG}/{quote(run_id, safe='')}",
        ):
            driver.get(ui_stack.base_url + path)
            time.sleep(0.1)
            assert _pwned(driver) is None and _injected_elements(driver) == 0, path
            link = driver.find_element(By.CSS_SELECTOR, "a.kfp-link")
            assert link.text == PAYLOADS[0], driver.find_element(By.TAG_NAME, "body").text
            assert link.get_attribute("href").endswith(f"/#/runs/details/{kfp_run.run_id}")
            seen += _document_responses(driver)
        assert "check-flag" in driver.find_element(By.CSS_SELECTOR, "tr[data-task='train']").text
        blocked = [
            e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert blocked == [], "the page's own script or style was blocked by its CSP"
    finally:
        driver.quit()

    ours = [r for r in seen if "/kfp-bridge/" in r["url"]]
    html = [r for r in ours if r["mime"] == "text/html"]
    assert len(html) == checked["html"] + 2 and len(ours) == sum(checked.values()) + 2, (len(html), checked)
    assert checked == {"html": 6 * (len(PAYLOADS) + 1), "json": 12 * (len(PAYLOADS) + 1)}
    for response in html:
        csp = response["headers"].get("content-security-policy", "")
        assert "script-src 'nonce-" in csp and "frame-ancestors 'self'" in csp, response
        assert response["headers"].get("x-content-type-options") == "nosniff", response
    for response in ours:
        assert response["headers"].get("x-content-type-options") == "nosniff", response
        assert response["mime"] in ("text/html", "application/json"), response
    # The 404 pages said which task instance was missing, escaped (status seen by the browser).
    assert {r["status"] for r in html} >= {200, 404}
