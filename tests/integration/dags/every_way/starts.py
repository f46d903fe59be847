"""The ways a person or a program starts a DAG run, against one real Airflow stack.

``Starter`` creates a run from the Trigger form (headless Chromium, Airflow's own React UI, the
form submitted as it opens), through ``POST /api/v2/dags/{id}/dagRuns`` with a logical date or with
``logical_date: null``, and with ``airflow dags trigger`` (the CLI in the stack's environment);
``scheduled_run`` waits for the run the scheduler creates. Each returns the run id. Starts of one
DAG are serialized (a lock per DAG) so the run a form submission created is the one new run.
``approve`` answers a parked approval the way the Required Actions page does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

from kfp_bridge.local.airflow import AirflowStack
from kfp_bridge.local.airflow_api import AirflowApiClient, AirflowApiError

FORM_TIMEOUT = 60.0
CLI_TIMEOUT = 180.0
# Many runs are waited for at once: a slower poll than the client's 0.5 s keeps the one api-server
# worker (and the two cores) for the runs themselves.
POLL_S = 2.0


class Way(Enum):
    """How a run was started; the value is the table's column head."""

    UI = "UI form"
    REST_DATE = "REST date"
    REST_NULL = "REST null"
    CLI = "CLI"
    SCHEDULE = "schedule"
    ASSET = "asset event"

    @property
    def slug(self) -> str:
        return self.name.lower().replace("_", "-")


def _ok(response: httpx.Response) -> Any:
    if response.is_error:
        raise AirflowApiError(response)
    return response.json()


def runs(api: AirflowApiClient, dag_id: str) -> list[dict[str, Any]]:
    """Every run of ``dag_id``, oldest first."""
    return _ok(api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "run_after", "limit": 100}))["dag_runs"]


class Starter:
    """Starts runs of the stack's DAGs; one Chromium (logged in once) serves every form submission.

    :param stack: the running stack (its environment runs the CLI).
    :param profile_dir: where Chromium keeps its profile and screenshots of failed submissions.
    """

    def __init__(self, stack: AirflowStack, profile_dir: Path) -> None:
        self.stack = stack
        self.profile_dir = profile_dir
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._browser_lock = threading.Lock()
        self._driver: Any = None

    def _lock(self, dag_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(dag_id, threading.Lock())

    def close(self) -> None:
        if self._driver is not None:
            self._driver.quit()
            self._driver = None

    # ----- REST ------------------------------------------------------------------------------
    def rest(self, api: AirflowApiClient, dag_id: str, conf: dict[str, Any], logical_date: datetime | None) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns``; ``logical_date=None`` sends ``"logical_date": null``."""
        with self._lock(dag_id):
            return api.trigger_dag(dag_id, conf=conf, logical_date=logical_date)

    # ----- CLI -------------------------------------------------------------------------------
    def cli(self, dag_id: str, conf: dict[str, Any]) -> str:
        """``airflow dags trigger <dag_id> --conf ...`` with the stack's environment (its database)."""
        args = [sys.executable, "-m", "airflow", "dags", "trigger", dag_id, "--conf", json.dumps(conf), "-o", "json"]
        with self._lock(dag_id):
            done = subprocess.run(
                args, env=self.stack.env, cwd=self.stack.home, capture_output=True, text=True, timeout=CLI_TIMEOUT
            )
        if done.returncode != 0:
            raise AssertionError(f"`airflow dags trigger {dag_id}` exited {done.returncode}:\n{done.stderr[-3000:]}")
        return _printed_run(done.stdout, dag_id)["dag_run_id"]

    # ----- the Trigger form ------------------------------------------------------------------
    def ui(self, api: AirflowApiClient, dag_id: str) -> str:
        """Open the DAG's Trigger form in Chromium and submit it as it opens (every param at its default)."""
        with self._browser_lock, self._lock(dag_id):
            before = {run["dag_run_id"] for run in runs(api, dag_id)}
            driver = self._browser()
            try:
                self._submit_form(driver, dag_id)
            except Exception:
                driver.save_screenshot(str(self.profile_dir / f"form-{dag_id}.png"))
                raise
            deadline = time.monotonic() + FORM_TIMEOUT
            # Manual only: the scheduler may create a scheduled run meanwhile (the DAG was just unpaused).
            while not (new := [r for r in runs(api, dag_id) if r["dag_run_id"] not in before and r["run_type"] == "manual"]):
                if time.monotonic() > deadline:
                    driver.save_screenshot(str(self.profile_dir / f"form-{dag_id}-no-run.png"))
                    raise AssertionError(f"the Trigger form of {dag_id} created no DAG run")
                time.sleep(0.5)
        (run,) = new
        return run["dag_run_id"]

    def _browser(self) -> Any:
        from tests.ui.conftest import chromium, log_in

        if self._driver is None:
            self._driver = chromium(self.profile_dir)
            log_in(self._driver, self.stack)
        return self._driver

    def _submit_form(self, driver: Any, dag_id: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        wait = WebDriverWait(driver, FORM_TIMEOUT)
        driver.get(f"{self.stack.base_url}/dags/{dag_id}")
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='trigger-dag-button']"))).click()
        submit = (By.CSS_SELECTOR, "[data-testid='trigger-dag-submit']")
        menu_item = (By.XPATH, "//*[@role='menuitem'][normalize-space()='Trigger']")
        # Some layouts open a menu first; the dialog then loads the DAG's details before the form.
        wait.until(ec.any_of(ec.presence_of_element_located(submit), ec.presence_of_element_located(menu_item)))
        if not driver.find_elements(*submit):
            wait.until(ec.element_to_be_clickable(menu_item)).click()
        button = wait.until(ec.presence_of_element_located(submit))
        time.sleep(1)  # the form fills the params' defaults after the dialog mounts
        wait.until(lambda _: button.is_enabled())
        button.click()

    # ----- the scheduler ---------------------------------------------------------------------
    @staticmethod
    def scheduled_run(api: AirflowApiClient, dag_id: str, run_type: str, timeout: float) -> str:
        """The one run of ``run_type`` (``scheduled``, ``asset_triggered``) the scheduler created."""
        deadline = time.monotonic() + timeout
        while not (found := [r for r in runs(api, dag_id) if r["run_type"] == run_type]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {run_type} run of {dag_id} after {timeout:.0f}s: {runs(api, dag_id)}")
            time.sleep(POLL_S)
        if len(found) != 1:
            raise AssertionError(f"{dag_id}: expected one {run_type} run, got {[r['dag_run_id'] for r in found]}")
        return found[0]["dag_run_id"]


def _printed_run(stdout: str, dag_id: str) -> dict[str, Any]:
    """The one run ``airflow dags trigger -o json`` printed (a JSON list, maybe after log lines)."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == "[" or line.lstrip().startswith("[{"):
            try:
                (created,) = json.loads("\n".join(lines[index:]))
            except ValueError:
                continue
            return created
    raise AssertionError(f"`airflow dags trigger {dag_id}` printed no run as JSON:\n{stdout[-3000:]}")


def wait_for_state(read: Callable[[], str | None], states: tuple[str, ...], timeout: float, what: str) -> str:
    """Poll ``read()`` every POLL_S until it returns one of ``states``; return it."""
    deadline = time.monotonic() + timeout
    while (state := read()) not in states:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {state!r} after {timeout:.0f}s, not in {states}")
        time.sleep(POLL_S)
    return state


def finished(api: AirflowApiClient, dag_id: str, run_id: str, timeout: float) -> str:
    """The run's state once it is success or failed."""
    return wait_for_state(lambda: api.dag_run(dag_id, run_id)["state"], ("success", "failed"), timeout, f"{dag_id}/{run_id}")


def approve(stack: AirflowStack, api: AirflowApiClient, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
    """Answer the run's approval with Approve through the HITL REST API; return the answered detail.

    Waits first until the scheduler handled the exit of the process that parked the task: Airflow
    3.3.2 marks a task resumed before that failed (see tests/integration/operators/
    test_kserve_release_airflow.py), a race only a program is fast enough to lose.
    """
    from tests.integration.operators.test_kserve_release_airflow import _wait_parking_exit_seen

    state = wait_for_state(
        lambda: api.task_instance(dag_id, run_id, "approve")["state"],
        ("awaiting_input", "failed", "upstream_failed"),
        timeout,
        f"{dag_id}/{run_id} approve",
    )
    if state != "awaiting_input":
        errors = [line for line in api.task_log(dag_id, run_id, "approve", 1).splitlines() if line.startswith("[error]")]
        shown = "\n".join(errors[-3:])
        raise AssertionError(f"{dag_id}/{run_id}: the approval task ended {state} before asking:\n{shown}")
    _wait_parking_exit_seen(stack, dag_id, run_id, "approve")
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    detail = _ok(api.get(path))
    if detail["options"] != ["Approve", "Reject"] or detail["response_received"]:
        raise AssertionError(f"unexpected approval request: {detail}")
    answered = _ok(api.patch(path, {"chosen_options": ["Approve"]}))
    if answered["chosen_options"] != ["Approve"]:
        raise AssertionError(f"the approval answer was not recorded: {answered}")
    return answered
