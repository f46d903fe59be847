"""The example pipeline in dags/pipelines: its committed YAML is current, and it trains for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kfp_bridge.utils.pipeline_inputs import declared_inputs, validate_params
from kfp_bridge.utils.pipeline_specs import load_pipeline_spec

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IRIS_SOURCE = "dags/pipelines/iris.py"
IRIS_YAML = os.path.join(REPO, "dags", "pipelines", "iris.yaml")


def test_committed_iris_yaml_is_current():
    # Through the installed console script, as CI and developers run it.
    cli = os.path.join(os.path.dirname(sys.executable), "kfp-bridge")
    result = subprocess.run(
        [cli, "compile", "--check", IRIS_SOURCE], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    assert "up to date: dags/pipelines/iris.yaml" in result.stdout


def test_iris_yaml_declares_the_documented_parameters():
    spec = load_pipeline_spec(IRIS_YAML)
    assert spec["pipelineInfo"]["name"] == "iris-train"
    inputs = declared_inputs(spec)
    assert inputs["model_dir"].required
    assert {name: (p.type, p.default) for name, p in inputs.items() if not p.required} == {
        "C": ("NUMBER_DOUBLE", 1.0),
        "max_iter": ("NUMBER_INTEGER", 200),
        "test_size": ("NUMBER_DOUBLE", 0.25),
        "seed": ("NUMBER_INTEGER", 42),
        "min_accuracy": ("NUMBER_DOUBLE", 0.8),
    }
    assert list(spec["root"]["dag"]["tasks"]) == [
        "evaluate-classifier",
        "export-model",
        "load-iris-dataset",
        "train-classifier",
    ]


@pytest.fixture
def kfp_local(tmp_path):
    from kfp import local
    from kfp.local import config

    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    yield pipeline_root
    # kfp.local's configuration is a process-wide singleton; don't leak this one into other tests.
    config.LocalExecutionConfig.instance = None


def test_iris_yaml_trains_and_exports_a_model(tmp_path, kfp_local):
    import joblib
    import numpy as np
    from kfp import components
    from sklearn.datasets import load_iris

    model_dir = tmp_path / "model"
    params = validate_params(load_pipeline_spec(IRIS_YAML), {"model_dir": str(model_dir), "C": 2})
    task = components.load_component_from_file(IRIS_YAML)(**params)

    accuracy = task.outputs["Output"]
    assert 0.8 < accuracy <= 1.0
    model_file = model_dir / "model.joblib"
    assert model_file.is_file()
    assert os.stat(model_file).st_mode & 0o044 == 0o044, "the model server may run as another user"
    assert [p.name for p in model_dir.iterdir()] == ["model.joblib"], "no temporary files left behind"

    classifier = joblib.load(model_file)
    assert classifier.get_params()["C"] == 2.0
    data = load_iris()
    assert float(np.mean(classifier.predict(data.data) == data.target)) > 0.8
    # Artifacts really flowed between tasks: each task wrote its outputs under pipeline_root.
    run_dirs = list(kfp_local.iterdir())
    assert len(run_dirs) == 1 and re.match(r"iris-train-\d{4}-", run_dirs[0].name)
    assert {"load-iris-dataset", "train-classifier", "evaluate-classifier", "export-model"} <= {
        p.name for p in run_dirs[0].iterdir()
    }


def test_iris_refuses_to_export_below_min_accuracy(tmp_path, kfp_local):
    from kfp import components

    model_dir = tmp_path / "model"
    with pytest.raises(RuntimeError, match=r"finished with status .*FAILURE"):
        components.load_component_from_file(IRIS_YAML)(model_dir=str(model_dir), min_accuracy=1.01)
    assert not (model_dir / "model.joblib").exists()
