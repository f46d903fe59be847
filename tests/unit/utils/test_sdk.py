"""Compiling without the kfp SDK in the Airflow environment: the SDK's own Python does it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from kfp_bridge.utils import sdk
from kfp_bridge.utils.pipeline_sources import (
    PipelineSourceError,
    compile_pipeline_to_file,
    resolve_pipeline_source,
)

PIPELINE = textwrap.dedent(
    """
    from kfp import dsl


    @dsl.component(base_image="python:3.11")
    def add(a: int, b: int) -> int:
        return a + b


    @dsl.pipeline(name="sdk-subprocess-adder")
    def adder(a: int = 1, b: int = 2):
        add(a=a, b=b)
    """
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "adder_pipeline.py"
    path.write_text(PIPELINE)
    return path


@pytest.fixture
def no_sdk_here(monkeypatch: pytest.MonkeyPatch) -> None:
    # This test environment has kfp; pretend the Airflow one does not (the only thing faked here).
    monkeypatch.setattr(sdk, "sdk_in_process", lambda: False)
    monkeypatch.delenv(sdk.SDK_PYTHON_ENV, raising=False)
    monkeypatch.delenv(sdk.AIRFLOW_SDK_PYTHON_ENV, raising=False)


def test_without_sdk_and_without_configuration_the_error_names_both_fixes(no_sdk_here, source, tmp_path):
    with pytest.raises(PipelineSourceError) as err:
        compile_pipeline_to_file(resolve_pipeline_source(str(source)), str(tmp_path / "out.yaml"))
    message = str(err.value)
    assert "kfp-bridge compile" in message and sdk.SDK_PYTHON_ENV in message
    assert not (tmp_path / "out.yaml").exists()


def test_configured_sdk_python_compiles_the_same_yaml_as_in_process(no_sdk_here, monkeypatch, source, tmp_path):
    monkeypatch.setenv(sdk.SDK_PYTHON_ENV, sys.executable)
    compile_pipeline_to_file(resolve_pipeline_source(f"{source}:adder"), str(tmp_path / "sub.yaml"))
    monkeypatch.undo()
    compile_pipeline_to_file(resolve_pipeline_source(f"{source}:adder"), str(tmp_path / "here.yaml"))
    sub = yaml.safe_load((tmp_path / "sub.yaml").read_text())
    assert sub["pipelineInfo"]["name"] == "sdk-subprocess-adder"
    assert sub == yaml.safe_load((tmp_path / "here.yaml").read_text())


def test_a_bad_source_reports_the_workers_message(no_sdk_here, monkeypatch, source, tmp_path):
    monkeypatch.setenv(sdk.SDK_PYTHON_ENV, sys.executable)
    with pytest.raises(PipelineSourceError, match=r"did you mean 'adder'"):
        compile_pipeline_to_file(resolve_pipeline_source(f"{source}:addr"), str(tmp_path / "out.yaml"))


def test_a_missing_interpreter_is_named(no_sdk_here, monkeypatch, source, tmp_path):
    monkeypatch.setenv(sdk.AIRFLOW_SDK_PYTHON_ENV, str(tmp_path / "nope" / "python"))
    with pytest.raises(PipelineSourceError, match=sdk.AIRFLOW_SDK_PYTHON_ENV):
        compile_pipeline_to_file(resolve_pipeline_source(str(source)), str(tmp_path / "out.yaml"))


def test_an_interpreter_without_kfp_says_how_to_install_it(no_sdk_here, monkeypatch, source, tmp_path):
    venv = tmp_path / "empty-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.setenv(sdk.SDK_PYTHON_ENV, str(venv / "bin" / "python"))
    with pytest.raises(PipelineSourceError, match=r"cannot import kfp; install it there"):
        compile_pipeline_to_file(resolve_pipeline_source(str(source)), str(tmp_path / "out.yaml"))
