"""The Trigger form of a DAG built with ``params=pipeline_params(...)``, in Chromium (issue 14, acceptance 1).

Real components: Airflow 3's own React trigger form on the UI test stack, the KFP stand-in, headless
Chromium. One field per pipeline input with the widget its KFP type gets and the compiled default; a
wrong type is refused before any DAG run (by the number widget, and by the REST API the form posts
to); a valid submission runs the pipeline with exactly those values (the KFP run's runtime config).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain, kfp_runs
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.ui.conftest import REPO, chromium, log_in

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.xdist_group("ui")]

DAG_ID = "params_form"
DAG_FILE = Path(__file__).parent / "dags" / f"{DAG_ID}.py"
RUN_TIMEOUT = 300
# iris.yaml's inputs: (the input type's widget, the compiled default as the form shows it).
# Airflow's form names each field's <input> element_<param>; numbers get Chakra's NumberInput
# (a spinbutton), strings a text input.
FIELDS = {
    "model_dir": ("text", ""),  # required: no default
    "C": ("spinbutton", "1"),
    "max_iter": ("spinbutton", "200"),
    "test_size": ("spinbutton", "0.25"),
    "seed": ("spinbutton", "42"),
    "min_accuracy": ("spinbutton", "0.8"),
}


@pytest.fixture(scope="module")
def form_dag(ui_stack: AirflowStack) -> str:
    pipelines = ui_stack.dags_folder / "params_form_pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dags" / "pipelines" / "iris.yaml", pipelines / "iris.yaml")
    ui_stack.add_dag_file(DAG_FILE)
    ui_stack.wait_dag_parsed(DAG_ID, 120, file_name=DAG_FILE.name)
    return DAG_ID


def _runs(stack: AirflowStack) -> list[dict]:
    return stack.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]


def test_wrong_types_are_refused_by_the_rest_api_before_any_run(ui_stack: AirflowStack, form_dag: str) -> None:
    before = len(_runs(ui_stack))
    for conf in ({"model_dir": "/tmp/x", "C": "abc"}, {"model_dir": "/tmp/x", "seed": 1.5}, {"C": 0.5}):
        response = ui_stack.post(f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})
        assert response.status_code == 400, (conf, response.status_code, response.text)
    assert "'abc' is not of type 'number'" in ui_stack.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"model_dir": "/x", "C": "abc"}}
    ).text
    assert len(_runs(ui_stack)) == before  # no DAG run was created


def test_trigger_form_shows_the_pipeline_inputs_and_runs_the_pipeline_with_the_values(
    ui_stack: AirflowStack, kfp_stand_in: KfpStandIn, form_dag: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    before = {run["dag_run_id"] for run in _runs(ui_stack)}
    model_dir = str(tmp_path / "model")
    driver = chromium(tmp_path)
    try:
        log_in(driver, ui_stack)
        wait = WebDriverWait(driver, 60)
        driver.get(f"{ui_stack.base_url}/dags/{DAG_ID}")
        try:
            _open_trigger_form(driver)
        except Exception:
            driver.save_screenshot(str(tmp_path / "no-form.png"))
            raise
        time.sleep(1)  # the form fills defaults after the dialog mounts
        driver.save_screenshot(str(tmp_path / "form.png"))

        # One field per pipeline input, and nothing else: widget type and default from the compiled spec.
        fields = driver.find_elements(By.CSS_SELECTOR, "[name^='element_']")
        assert sorted({f.get_attribute("name").removeprefix("element_") for f in fields}) == sorted(FIELDS)
        for name, (widget, default) in FIELDS.items():
            element = _field(driver, name)
            shown = element.get_attribute("outerHTML")[:300]
            assert element.tag_name == "input", shown
            assert (element.get_attribute("role") or element.get_attribute("type")) == widget, shown
            assert element.get_attribute("value") == default, shown

        # The number widget refuses letters: a wrong type cannot even be typed.
        c_field = _field(driver, "C")
        c_field.send_keys(Keys.CONTROL, "a")
        c_field.send_keys("abc")
        assert c_field.get_attribute("value") in ("", "1"), c_field.get_attribute("value")

        _type(driver, "C", "0.5")
        _type(driver, "seed", "7")
        _type(driver, "model_dir", model_dir)
        driver.save_screenshot(str(tmp_path / "filled.png"))
        dialog_trigger = driver.find_element(By.CSS_SELECTOR, "[data-testid='trigger-dag-submit']")
        wait.until(lambda d: dialog_trigger.is_enabled())
        dialog_trigger.click()

        deadline = time.monotonic() + 60
        while not (new := [r for r in _runs(ui_stack) if r["dag_run_id"] not in before]):
            assert time.monotonic() < deadline, "the form created no DAG run"
            time.sleep(1)
    finally:
        driver.quit()

    (run,) = new
    run_id = run["dag_run_id"]
    assert run["conf"]["C"] == 0.5 and run["conf"]["seed"] == 7 and run["conf"]["model_dir"] == model_dir, run["conf"]
    assert ui_stack.wait_dag_run(DAG_ID, run_id, RUN_TIMEOUT) == "success", explain(ui_stack, DAG_ID, run_id)
    (kfp_run,) = kfp_runs(kfp_stand_in, dag_id=DAG_ID, run_id=run_id)
    assert kfp_run.runtime_config.parameters == {
        "model_dir": model_dir,
        "C": 0.5,
        "seed": 7,
        "max_iter": 200,
        "test_size": 0.25,
        "min_accuracy": 0.8,
    }
    assert (Path(model_dir) / "model.joblib").is_file()


def _open_trigger_form(driver) -> None:
    """The DAG page's Trigger button (Airflow's data-testid); a menu in some layouts, then its Trigger item."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='trigger-dag-button']"))).click()
    menu_item = (By.XPATH, "//*[@role='menuitem'][normalize-space()='Trigger']")
    # The dialog loads the DAG's details first ("Loading Dag information..."): wait for either.
    field = (By.NAME, "element_C")
    wait.until(ec.any_of(ec.presence_of_element_located(field), ec.presence_of_element_located(menu_item)))
    if not driver.find_elements(*field):
        wait.until(ec.element_to_be_clickable(menu_item)).click()
        wait.until(ec.presence_of_element_located(field))


def _field(driver, name: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.NAME, f"element_{name}")


def _type(driver, name: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element = _field(driver, name)
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.BACKSPACE)
    # One key at a time, as a person types: the form re-renders on the first key (the required
    # field's error goes away) and a burst of keys lost one there.
    for key in text:
        element.send_keys(key)
        time.sleep(0.02)
    assert element.get_attribute("value") == text, (name, element.get_attribute("value"))
