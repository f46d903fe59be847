"""The on-call plugin's browser tests share one Airflow stack (with plugins/) and one way to drive Chromium.

Real components: an Airflow 3 stack with this repository's plugins folder, the KFP stand-in, and
Debian's chromium + chromedriver (scripts/ensure-chromium.sh) driven by selenium.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.pipelines import compile_all

REPO = Path(__file__).resolve().parents[2]
DAGS = Path(__file__).parent / "dags"
SINGLE = "oncall_ui_single"
GROUP = "oncall_ui_group"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="session")
def ui_stack(
    tmp_path_factory: pytest.TempPathFactory, kfp_stand_in: KfpStandIn, airflow_db_cache: Path
) -> Iterator[AirflowStack]:
    """Its own stack: the shared one has no plugins folder."""
    root = tmp_path_factory.mktemp("oncall-ui")
    dags = root / "dags"
    compile_all(dags / "oncall_pipelines")  # the task group reads the YAML at parse time
    conn = {
        "conn_type": "kfp",
        "host": kfp_stand_in.host,
        "extra": {"token_path": str(kfp_stand_in.token_file)},
    }
    stack = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        plugins_folder=REPO / "plugins",
        env={"AIRFLOW_CONN_KFP_DEFAULT": json.dumps(conn)},
        cache_dir=airflow_db_cache,
    )
    with stack:
        stack.wait_ready(240)
        for dag_id in (SINGLE, GROUP):
            stack.add_dag_file(DAGS / f"{dag_id}.py")
        for dag_id in (SINGLE, GROUP):
            stack.wait_dag_parsed(dag_id, 120, file_name=f"{dag_id}.py")
        yield stack


def chromium(profile_dir: Path, *, network_log: bool = False) -> Any:
    """Headless Chromium; ``network_log`` records responses (headers included) for ``get_log("performance")``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run scripts/ensure-chromium.sh (make browser)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={profile_dir / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability(
        "goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if network_log else {})}
    )
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def log_in(driver: Any, stack: AirflowStack, user: str = "admin") -> None:
    """Through Airflow's own login page (SimpleAuthManager): the UI's `_token` cookie, as on-call has it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(f"{stack.base_url}/auth/login")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(stack.passwords[user])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.get_cookie("_token") is not None)
