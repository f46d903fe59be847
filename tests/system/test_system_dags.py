"""Runs every ``tests/system/kfp/example_*.py`` DAG with ``airflow dags test`` (what the Airflow
providers' system tests do with ``dag.test()``) against the KFP chosen in conftest.py.

Against a real cluster::

    KFP_HOST=https://kubeflow.example.com/pipeline KFP_TOKEN_FILE=/var/run/secrets/kubeflow/pipelines/token \\
    KFP_NAMESPACE=team-a .venv/bin/python -m pytest -n 0 tests/system -v
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from kfp import compiler

from tests.system.kfp.example_pipeline import example_pipeline

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

HERE = Path(__file__).parent / "kfp"
EXAMPLES = sorted(HERE.glob("example_*.py"))
DAG_FILES = [path for path in EXAMPLES if path.name != "example_pipeline.py"]
TIMEOUT = 900.0


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.stem)
def test_example_dag_succeeds(dag_file: Path, tmp_path: Path, airflow_dags_test, system_connection_env) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(dag_file, folder / dag_file.name)
    compiler.Compiler().compile(example_pipeline, str(folder / "example_pipeline.yaml"))
    dag_id = dag_file.stem
    result = airflow_dags_test(folder / dag_file.name, dag_id, env=system_connection_env, timeout=TIMEOUT)
    output = result.stdout  # stdout and stderr merged
    assert result.returncode == 0, _why(output)
    assert "state=success" in output.replace(" ", "") or "DagRun Finished" in output, _why(output)
    assert "state=failed" not in output.replace(" ", ""), _why(output)
    # The operator reported the steps by pipeline path, nested and loop steps included.
    assert "kfp-bridge-system-inner/shout" in output and "for-loop-2[1]/shout" in output, _why(output)


def _why(output: str) -> str:
    """The lines that say what went wrong (a task that failed early is far from the end), then the end."""
    lines = output.splitlines()
    telling = [line for line in lines if re.search(r"error|failed|exception|traceback|warning", line, re.IGNORECASE)]
    return "\n".join(["-- error, failure and warning lines:", *telling[-80:], "-- the end:", *lines[-40:]])
