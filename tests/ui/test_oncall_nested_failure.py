"""A failing step inside a nested pipeline and inside one ParallelFor iteration, end to end (issue 11,
acceptance 5): the real Airflow stack with plugins/, the KFP stand-in as hard as KFP 2.17
(reference/fidelity.md K3/K4: no step error text anywhere in the run) and the Kubernetes stand-in
serving the KFP stand-in's executor pods and their ``main`` logs, headless Chromium.

* the task's failure message names the step by its pipeline path (``bridge-oncall-inner/fail-if-flag``,
  ``for-loop-2[1]/fail-if-flag``) and, through the task's Kubernetes connection, carries the tail of
  the step's pod log holding the exception text;
* the on-call tab shows that step FAILED with the exception text, its siblings SUCCEEDED;
* "Retry failed steps" (a KFP retry of the same run, K5) reruns only that step: the counter files
  gain exactly one line each, from the failed step.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain, kfp_runs
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.fixtures.kube_stand_in import TEST_TIMINGS, start_kube_stand_in
from tests.ui.conftest import DAGS, chromium, log_in
from tests.ui.oncall_nested_pipelines import compile_oncall_nested

# Starts its own stack or takes minutes: make e2e, outside make test's 20-minute budget.
pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("ui"), pytest.mark.e2e]

DAG_ID = "oncall_ui_nested"
KUBE_CONN_ID = "kube_oncall_logs"
KFP_NAMESPACE = "kubeflow"  # where the single-user stand-in's executor pods live
RUN_TIMEOUT = 240
# task id -> (the failing step's pipeline path, its siblings that succeed, the exception text)
FAILING = {
    "nested": (
        "bridge-oncall-inner/fail-if-flag",
        ["record", "bridge-oncall-inner/record"],
        "RuntimeError: nested item 1 broke on purpose",
    ),
    "loop": (
        "for-loop-2[1]/fail-if-flag",
        ["for-loop-2[0]/fail-if-flag", "for-loop-2[2]/fail-if-flag"],
        "RuntimeError: loop item 1 broke on purpose",
    ),
}


@pytest.fixture(scope="module")
def nested_dag(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    compile_oncall_nested(ui_stack.dags_folder / "oncall_nested_pipelines")
    env = {**TEST_TIMINGS, "KFP_STATE_DIR": str(kfp_stand_in.state_dir)}
    root = tmp_path_factory.mktemp("kube-oncall-logs")
    with start_kube_stand_in(root, token=secrets.token_hex(16), env=env) as kube:
        extra = {"kube_config_path": str(kube.kubeconfig), "namespace": KFP_NAMESPACE}
        body = {"connection_id": KUBE_CONN_ID, "conn_type": "kubernetes", "extra": json.dumps(extra)}
        response = ui_stack.post("/api/v2/connections", body)
        assert response.status_code == 201, response.text
        try:
            ui_stack.add_dag_file(DAGS / f"{DAG_ID}.py")
            ui_stack.wait_dag_parsed(DAG_ID, 120, file_name=f"{DAG_ID}.py")
            yield DAG_ID
        finally:
            ui_stack.request("DELETE", f"/api/v2/connections/{KUBE_CONN_ID}")


def _task_exception(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    """The text of the exception the try failed with, as Airflow's log view shows it: the structured
    log's ``error_detail`` (the flat ``task_log`` text holds it as a repr, quotes escaped)."""
    dag, run, task = (quote(part, safe="") for part in (dag_id, run_id, task_id))
    response = stack.get(
        f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/logs/{try_number}",
        params={"full_content": "true", "map_index": -1},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    details = [
        detail["exc_value"]
        for record in response.json()["content"]
        if isinstance(record, dict)
        for detail in record.get("error_detail") or []
    ]
    assert details, f"{task_id} try {try_number} logged no exception"
    return details[-1]


def _row(driver: Any, step: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"tr[data-step='{step}']")


def _open_tab(driver: Any, stack: AirflowStack, run_id: str, task_id: str) -> None:
    """The task instance's "KFP run" tab, with the driver switched into its iframe."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.switch_to.default_content()
    driver.get(f"{stack.base_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{task_id}")
    wait.until(ec.element_to_be_clickable((By.XPATH, "//*[normalize-space(text())='KFP run']"))).click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='KFP run']")))
    driver.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.ID, "failed-steps")))


def test_failed_nested_and_loop_steps_named_by_path_with_log_tail_shown_on_call_and_retried_alone(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, nested_dag: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for task_id in FAILING:
        (tmp_path / f"{task_id}.flag").write_text("fail\n")
    run_id = ui_stack.trigger_dag(nested_dag, conf={"work": str(tmp_path)})
    assert ui_stack.wait_dag_run(nested_dag, run_id, RUN_TIMEOUT) == "failed", explain(
        ui_stack, nested_dag, run_id
    )
    states = {ti["task_id"]: ti["state"] for ti in ui_stack.task_instances(nested_dag, run_id)}
    assert states == {"nested": "failed", "loop": "failed"}, explain(ui_stack, nested_dag, run_id)
    kfp_run = {
        task_id: kfp_runs(kfp_stand_in, dag_id=nested_dag, run_id=run_id, task_id=task_id)
        for task_id in FAILING
    }
    assert {task_id: [r.state for r in runs] for task_id, runs in kfp_run.items()} == {
        "nested": ["FAILED"],
        "loop": ["FAILED"],
    }
    kfp_run_id = {task_id: runs[0].run_id for task_id, runs in kfp_run.items()}

    # The task's failure message (the exception Airflow's log view shows): the step by its pipeline
    # path, linked, and its pod log's last lines with the exception, read through the Kubernetes
    # connection (KFP 2.17 itself holds no error text).
    for task_id, (path, siblings, exception) in FAILING.items():
        message = _task_exception(ui_stack, nested_dag, run_id, task_id)
        url = f"{kfp_stand_in.host}/#/runs/details/{kfp_run_id[task_id]}"
        assert f"KFP run {kfp_run_id[task_id]} ended FAILED." in message, message
        assert f"step '{path}' failed ({url}, step {path})." in message, message
        tail = message.split(f"step '{path}' failed", 1)[1]
        assert "last lines of its main container log:" in tail, message
        # The pod log's last lines, one per line: the exception is a line of its own.
        assert any(line.strip().startswith(exception) for line in tail.splitlines()), message
        assert "set kubernetes_conn_id" not in message  # the log itself, not where to find it
        for sibling in [*siblings, path.split("/")[0]]:
            assert f"step '{sibling}' failed" not in message
    assert sorted((tmp_path / "loop.counter").read_text().splitlines()) == ["loop 0", "loop 1", "loop 2"]
    assert (tmp_path / "nested.counter").read_text().splitlines() == ["outer", "inner", "nested 1"]

    driver = chromium(tmp_path)
    try:
        log_in(driver, ui_stack)
        for task_id, (path, siblings, exception) in FAILING.items():
            # The on-call tab: the failed step by path, FAILED, with the exception from its pod log.
            _open_tab(driver, ui_stack, run_id, task_id)
            assert path in driver.find_element(By.ID, "failed-steps").text
            row = _row(driver, path)
            assert row.get_attribute("data-state") == "FAILED"
            assert any(line.strip().startswith(exception) for line in row.text.splitlines()), row.text
            for sibling in siblings:
                assert _row(driver, sibling).get_attribute("data-state") == "SUCCEEDED"
                assert "broke on purpose" not in _row(driver, sibling).text
            assert driver.find_element(By.CSS_SELECTOR, "a.kfp-link").get_attribute("href") == (
                f"{kfp_stand_in.host}/#/runs/details/{kfp_run_id[task_id]}"
            )
            driver.switch_to.default_content()
            assert driver.save_screenshot(str(tmp_path / f"{task_id}-failed.png"))

            # Fix the cause and click "Retry failed steps": KFP retries that step in the same run.
            (tmp_path / f"{task_id}.flag").unlink()
            _open_tab(driver, ui_stack, run_id, task_id)
            driver.find_element(By.ID, "retry-failed-steps").click()
            result = WebDriverWait(driver, 60).until(
                lambda d: (
                    (el := d.find_element(By.ID, "retry-result")).get_attribute("class") in ("ok", "refused")
                    and el
                )
            )
            assert result.get_attribute("class") == "ok", result.text
            assert f"KFP is retrying run {kfp_run_id[task_id]} (failed steps: {path})" in result.text
            driver.switch_to.default_content()

        assert ui_stack.wait_dag_run(nested_dag, run_id, RUN_TIMEOUT) == "success", explain(
            ui_stack, nested_dag, run_id
        )
        for task_id, (path, _siblings, _exception) in FAILING.items():
            _open_tab(driver, ui_stack, run_id, task_id)
            WebDriverWait(driver, 60).until(
                lambda d, p=path: _row(d, p).get_attribute("data-state") == "SUCCEEDED"
            )
            assert "broke on purpose" not in _row(driver, path).text
            driver.switch_to.default_content()
    finally:
        driver.quit()

    # Only the failed step ran again, in the same KFP run; the Airflow task followed it to success.
    assert sorted((tmp_path / "loop.counter").read_text().splitlines()) == [
        "loop 0",
        "loop 1",
        "loop 1",
        "loop 2",
    ]
    assert (tmp_path / "nested.counter").read_text().splitlines() == [
        "outer",
        "inner",
        "nested 1",
        "nested 1",
    ]
    for task_id in FAILING:
        runs = kfp_runs(kfp_stand_in, dag_id=nested_dag, run_id=run_id, task_id=task_id)
        assert [(r.run_id, r.state) for r in runs] == [(kfp_run_id[task_id], "SUCCEEDED")]
        assert ui_stack.task_instance(nested_dag, run_id, task_id)["try_number"] == 2
        log = ui_stack.task_log(nested_dag, run_id, task_id, 2)
        assert "Created KFP run" not in log
