"""Fixtures for the KfpRunOperator integration tests: one shared Airflow stack, the session KFP stand-in.

The stack is shared with other test modules and may have been started before these tests ran, so
the ``kfp`` connections are created through Airflow's REST API (and deleted afterwards) instead of
through ``airflow_stack_env``. The connection reads the stand-in's token file (``token_path``), so
the token itself never reaches the metadata database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_bridge.local.airflow import AirflowStack
from tests.fixtures.airflow_checks import explain as explain  # re-exported for the test modules here
from tests.fixtures.airflow_checks import kfp_runs
from tests.fixtures.kfp_stand_in import KfpStandIn
from tests.integration.operators.pipelines import compile_all

DAGS = Path(__file__).parent / "dags"
CONN_ID = "kfp_ops"
BAD_HOST_CONN_ID = "kfp_ops_bad_host"
# Folder (inside the stack's dags folder) the DAG files name their pipelines relative to.
PIPELINES = "kfp_ops_pipelines"
PARSE_TIMEOUT = 120


@pytest.fixture(scope="session")
def ops_pipelines(airflow_stack: AirflowStack) -> dict[str, Path]:
    return compile_all(airflow_stack.dags_folder / PIPELINES)


@pytest.fixture(scope="session")
def ops_stack(airflow_stack: AirflowStack, kfp_stand_in: KfpStandIn, ops_pipelines: dict[str, Path]) -> Iterator[AirflowStack]:
    """The shared stack with connection ``kfp_ops`` (token file) and ``kfp_ops_bad_host`` (malformed host)."""
    connections = [
        {
            "connection_id": CONN_ID,
            "conn_type": "kfp",
            "host": kfp_stand_in.host,
            "extra": json.dumps({"token_path": str(kfp_stand_in.token_file)}),
        },
        {"connection_id": BAD_HOST_CONN_ID, "conn_type": "kfp", "host": "kfp.example.com:8888 /pipeline"},
    ]
    for body in connections:
        response = airflow_stack.post("/api/v2/connections", body)
        assert response.status_code == 201, response.text
    yield airflow_stack
    for body in connections:
        airflow_stack.request("DELETE", f"/api/v2/connections/{body['connection_id']}")


def add_dag(stack: AirflowStack, dag_id: str) -> str:
    """Copy ``dags/<dag_id>.py`` into the stack and wait until it is parsed."""
    path = DAGS / f"{dag_id}.py"
    stack.add_dag_file(path)
    stack.wait_dag_parsed(dag_id, PARSE_TIMEOUT, file_name=path.name)
    return dag_id


def wait_kfp_runs(stand_in: KfpStandIn, count: int, states: set[str], timeout: float = 120.0, **tag_filter: Any) -> list[Any]:
    """Wait until ``count`` tagged runs exist and all are in ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        runs = kfp_runs(stand_in, **tag_filter)
        if len(runs) == count and all(run.state in states for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"wanted {count} runs in {sorted(states)} for {tag_filter}, got {[(r.run_id, r.state) for r in runs]}"
            )
        time.sleep(0.5)


def step_states(stand_in: KfpStandIn, run_id: str) -> dict[str, list[str]]:
    run = stand_in.client().get_run(run_id)
    out: dict[str, list[str]] = {}
    for task in run.run_details.task_details or []:
        out.setdefault(task.display_name, []).append(task.state)
    return out
