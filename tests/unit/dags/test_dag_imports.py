"""Every DAG in dags/ imports cleanly, and DAG parsing never pulls in kfp, kubernetes or openlineage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DAGS = ROOT / "dags"
sys.path.insert(0, str(ROOT))
from benchmarks.parse_time import PROBE, write_dag  # noqa: E402


def _dag_files() -> list[Path]:
    return sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


def test_dagbag_has_no_import_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert {"kfp_train"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.catchup is False


@pytest.mark.parametrize("dag_file", _dag_files(), ids=lambda p: p.name)
def test_dag_file_does_not_import_kfp_or_kubernetes(dag_file):
    out = subprocess.run([sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["kfp"] is False
    assert result["kubernetes"] is False
    assert result["openlineage"] is False


def test_twenty_operators_and_pipeline_params_do_not_import_kfp_kubernetes_or_openlineage(tmp_path):
    path = write_dag(tmp_path, "kfp", 20)
    assert "pipeline_params(" in path.read_text()
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["kfp"], result["kubernetes"], result["openlineage"]) == (False, False, False)


@pytest.mark.parametrize("module", ["kfp", "kubernetes", "openlineage"])
def test_the_probe_sees_a_heavy_import_made_by_the_dag_file(tmp_path, module):
    # Positive control: the checks above would catch a DAG file that pulls one of these in.
    path = tmp_path / f"imports_{module}.py"
    path.write_text(f"import {module}\n")
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])[module] is True
