"""The on-call plugin end to end: a real Airflow 3 stack with plugins/ loaded, the KFP stand-in,
headless Chromium (Debian's chromium + chromedriver, driven by selenium)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.conftest import explain, kfp_runs, step_states
from tests.ui.conftest import GROUP, REPO, SINGLE, chromium, log_in

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("ui")]

RUN_TIMEOUT = 180
README_SCREENSHOT = REPO / "docs" / "img" / "retry-failed-steps.png"


def action_path(dag_id: str, run_id: str, task_id: str) -> str:
    parts = "/".join(quote(p, safe="") for p in (dag_id, run_id, task_id))
    return f"/kfp-bridge/api/ti/{parts}/retry-failed-steps?map_index=-1"


def view_path(dag_id: str, run_id: str, task_id: str) -> str:
    parts = "/".join(quote(p, safe="") for p in (dag_id, run_id, task_id))
    return f"/kfp-bridge/api/ti/{parts}?map_index=-1"


def snapshot(stack: AirflowStack, stand_in: KfpStandIn, dag_id: str, run_id: str) -> dict:
    """Everything a refused action must leave alone."""
    return {
        "tis": {
            (ti["task_id"], ti["state"], ti["try_number"]) for ti in stack.task_instances(dag_id, run_id)
        },
        "runs": sorted((r.run_id, r.state) for r in kfp_runs(stand_in)),
        "run": stack.dag_run(dag_id, run_id)["state"],
    }


def test_plugin_is_registered_with_views_on_task_instance_and_dag_run_pages(ui_stack: AirflowStack) -> None:
    plugins = ui_stack.get("/api/v2/plugins").json()["plugins"]
    plugin = next(p for p in plugins if p["name"] == "kfp_bridge_oncall")
    views = {view["url_route"]: view for view in plugin["external_views"]}
    assert views["kfp-run"]["destination"] == "task_instance"
    assert views["kfp-run"]["href"].startswith("/kfp-bridge/ti/{DAG_ID}/{RUN_ID}/{TASK_ID}")
    assert views["kfp-runs"]["destination"] == "dag_run"
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/kfp-bridge"]
    assert ui_stack.get("/api/v2/plugins/importErrors").json()["total_entries"] == 0


def test_task_group_mirrors_each_step_and_the_action_is_guarded(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path: Path
) -> None:
    flag = tmp_path / "group.flag"
    flag.write_text("fail\n")
    run_id = ui_stack.trigger_dag(GROUP, conf={"work": str(tmp_path)})
    assert ui_stack.wait_dag_run(GROUP, run_id, RUN_TIMEOUT) == "failed", explain(ui_stack, GROUP, run_id)

    # Acceptance 4: one Airflow task per KFP step, the failed step red (failed), wired like the pipeline.
    states = {ti["task_id"]: ti["state"] for ti in ui_stack.task_instances(GROUP, run_id)}
    assert states == {
        "pipeline.kfp_run": "failed",
        "pipeline.prepare": "success",
        "pipeline.check-flag": "failed",
    }
    check = ui_stack.get(f"/api/v2/dags/{GROUP}/tasks/pipeline.check-flag").json()
    assert check["downstream_task_ids"] == []
    prepare = ui_stack.get(f"/api/v2/dags/{GROUP}/tasks/pipeline.prepare").json()
    assert prepare["downstream_task_ids"] == ["pipeline.check-flag"]
    log = ui_stack.task_log(GROUP, run_id, "pipeline.check-flag", 1)
    # KFP 2.17's task_details carry no step error: the mirror names the step and run instead.
    runs = kfp_runs(kfp_stand_in, dag_id=GROUP, run_id=run_id)
    assert f"step 'check-flag' FAILED in KFP run {runs[0].run_id}" in log

    runs = kfp_runs(kfp_stand_in, dag_id=GROUP, run_id=run_id)
    assert [r.state for r in runs] == ["FAILED"]
    view = ui_stack.get(view_path(GROUP, run_id, "pipeline.kfp_run")).json()
    assert view["kfp_run_id"] == runs[0].run_id
    assert view["kfp_run_found_by"] == "task_state_store key 'kfp_run_id'"
    assert view["failed_steps"] == ["check-flag"]
    assert view["retryable"] is True

    # Acceptance 2: refusals change nothing.
    url = action_path(GROUP, run_id, "pipeline.kfp_run")
    before = snapshot(ui_stack, kfp_stand_in, GROUP, run_id)
    assert ui_stack.post(url, {}, user=None).status_code == 401
    assert ui_stack.post(url, {}, user="viewer").status_code == 403
    assert ui_stack.get(url).status_code == 405  # never a GET
    form = ui_stack.request(
        "POST", url, content=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415
    foreign = ui_stack.post(url, {}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "Cross-origin" in foreign.text
    opaque = ui_stack.post(url, {}, headers={"Origin": "null"})
    assert opaque.status_code == 403 and "Origin: null" in opaque.text
    # The api-server runs without --proxy-headers: a forged X-Forwarded-Host names no trusted origin.
    spoofed = ui_stack.post(
        url, {}, headers={"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example"}
    )
    assert spoofed.status_code == 403
    time.sleep(2)  # anything a refused call had set off would show by now
    assert snapshot(ui_stack, kfp_stand_in, GROUP, run_id) == before

    # The action: KFP retries only check-flag in the same run; the failed tasks are cleared and pass.
    flag.unlink()
    response = ui_stack.post(url, {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kfp_run_id"] == runs[0].run_id
    assert body["retried_steps"] == ["check-flag"]
    assert body["cleared_task_instances"] == ["pipeline.check-flag", "pipeline.kfp_run"]
    assert ui_stack.wait_dag_run(GROUP, run_id, RUN_TIMEOUT) == "success", explain(ui_stack, GROUP, run_id)
    states = {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in ui_stack.task_instances(GROUP, run_id)}
    assert states == {
        "pipeline.kfp_run": ("success", 2),
        "pipeline.prepare": ("success", 1),
        "pipeline.check-flag": ("success", 2),
    }
    # Acceptance 3: only the failed step ran again (prepare's counter has one line), in the same run.
    assert [(r.run_id, r.state) for r in kfp_runs(kfp_stand_in, dag_id=GROUP, run_id=run_id)] == [
        (runs[0].run_id, "SUCCEEDED")
    ]
    assert (tmp_path / "group.counter").read_text() == "group\n"
    steps = step_states(kfp_stand_in, runs[0].run_id)
    assert steps["prepare"] == ["SUCCEEDED"]
    assert "SUCCEEDED" in steps["check-flag"]
    log = ui_stack.task_log(GROUP, run_id, "pipeline.kfp_run", 2)
    assert "Created KFP run" not in log
    assert (
        f"Reattaching to KFP run {runs[0].run_id}" in log
        or f"KFP run {runs[0].run_id} already SUCCEEDED" in log
    )

    # Audited, and a run that is not FAILED/CANCELED is refused with the reason.
    # Every attempt is audited with its user and outcome: the viewer's and the forged ones refused
    # (the anonymous 401 has no user, the GET never reaches the action), the admin's done.
    # This DAG's rows only: other UI tests on the shared stack retry too.
    audit = {"event": "kfp_bridge.retry_failed_steps", "dag_id": GROUP, "limit": 100}
    events = ui_stack.get("/api/v2/eventLogs", params=audit).json()
    rows = [
        (
            e["owner"],
            e["run_id"],
            e["task_id"],
            json.loads(e["extra"])["outcome"],
            json.loads(e["extra"]).get("status"),
        )
        for e in events["event_logs"]
    ]
    refused = [("viewer", 403), ("admin", 415), ("admin", 403), ("admin", 403), ("admin", 403)]
    assert sorted(rows, key=str) == sorted(
        [(user, run_id, "pipeline.kfp_run", "refused", code) for user, code in refused]
        + [("admin", run_id, "pipeline.kfp_run", "done", None)],
        key=str,
    )
    again = ui_stack.post(url, {})
    assert again.status_code == 409
    assert f"KFP run {runs[0].run_id} is SUCCEEDED" in again.json()["detail"]


def test_browser_opens_failed_task_sees_failed_step_and_retries_it(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    flag = tmp_path / "single.flag"
    flag.write_text("fail\n")
    run_id = ui_stack.trigger_dag(SINGLE, conf={"work": str(tmp_path)})
    assert ui_stack.wait_dag_run(SINGLE, run_id, RUN_TIMEOUT) == "failed", explain(ui_stack, SINGLE, run_id)
    assert ui_stack.task_instance(SINGLE, run_id, "publish")["state"] == "upstream_failed"
    [kfp_run] = kfp_runs(kfp_stand_in, dag_id=SINGLE, run_id=run_id)

    driver = chromium(tmp_path)
    try:
        wait = WebDriverWait(driver, 60)
        log_in(driver, ui_stack)

        # Open the failed task instance and its "KFP run" tab.
        driver.get(f"{ui_stack.base_url}/dags/{SINGLE}/runs/{quote(run_id, safe='')}/tasks/train")
        wait.until(ec.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='KFP run']"))).click()
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='KFP run']")))
        driver.switch_to.frame(frame)
        failed = wait.until(ec.presence_of_element_located((By.ID, "failed-steps")))
        assert "check-flag" in failed.text
        row = driver.find_element(By.CSS_SELECTOR, "tr[data-step='check-flag']")
        assert row.get_attribute("data-state") == "FAILED"
        # No step error from KFP 2.17: the row says where the step's log is.
        assert f"pipeline/runid={kfp_run.run_id}" in row.text
        assert (
            driver.find_element(By.CSS_SELECTOR, "tr[data-step='prepare']").get_attribute("data-state")
            == "SUCCEEDED"
        )
        link = driver.find_element(By.CSS_SELECTOR, "a.kfp-link")
        assert link.get_attribute("href") == f"{kfp_stand_in.host}/#/runs/details/{kfp_run.run_id}"
        driver.switch_to.default_content()
        shot = tmp_path / "retry-failed-steps.png"
        assert driver.save_screenshot(str(shot))
        # Refresh the README's picture only when asked, so `make test` leaves the tree clean.
        if os.environ.get("KFP_BRIDGE_UPDATE_SCREENSHOTS") == "1":
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, README_SCREENSHOT)

        # Fix the cause, click the button (a JSON POST with the UI's session cookie).
        flag.unlink()
        driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='KFP run']"))
        driver.find_element(By.ID, "retry-failed-steps").click()
        result = WebDriverWait(driver, 60).until(
            lambda d: (
                (el := d.find_element(By.ID, "retry-result")).get_attribute("class") in ("ok", "refused")
                and el
            )
        )
        assert result.get_attribute("class") == "ok", result.text
        assert f"KFP is retrying run {kfp_run.run_id} (failed steps: check-flag)" in result.text
        driver.switch_to.default_content()

        assert ui_stack.wait_dag_run(SINGLE, run_id, RUN_TIMEOUT) == "success", explain(
            ui_stack, SINGLE, run_id
        )
        driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='KFP run']"))
        WebDriverWait(driver, 30).until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, "tr[data-step='check-flag']").get_attribute("data-state")
                == "SUCCEEDED"
            )
        )
        driver.switch_to.default_content()
        assert driver.save_screenshot(str(tmp_path / "after-retry.png"))
        # The page's script and style ran under its CSP (the button above worked): nothing was blocked.
        blocked = [
            e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert blocked == []
    finally:
        driver.quit()

    # Same KFP run, prepare ran once, the task and its downstream succeeded.
    assert [(r.run_id, r.state) for r in kfp_runs(kfp_stand_in, dag_id=SINGLE, run_id=run_id)] == [
        (kfp_run.run_id, "SUCCEEDED")
    ]
    assert (tmp_path / "single.counter").read_text() == "single\n"
    assert ui_stack.task_instance(SINGLE, run_id, "train")["try_number"] == 2
    assert ui_stack.task_instance(SINGLE, run_id, "publish")["state"] == "success"
