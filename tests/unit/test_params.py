"""kfp_bridge.params.pipeline_params: Airflow Params from a compiled pipeline's inputs."""

from __future__ import annotations

import os
import runpy
import textwrap
from pathlib import Path

import pendulum
import pytest
import yaml
from airflow.sdk import DAG, Param

from kfp_bridge import params as params_module
from kfp_bridge.params import pipeline_params
from kfp_bridge.utils import pipeline_specs
from kfp_bridge.utils.pipeline_specs import PipelineSourceError

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "dags" / "pipelines" / "iris.yaml"


def _spec(parameters: dict, artifacts: dict | None = None) -> dict:
    inputs: dict = {"parameters": parameters}
    if artifacts:
        inputs["artifacts"] = artifacts
    return {
        "pipelineInfo": {"name": "typed"},
        "root": {"inputDefinitions": inputs, "dag": {"tasks": {}}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.3",
    }


TYPED = {
    "a": {"parameterType": "STRING"},
    "b": {"parameterType": "NUMBER_INTEGER", "defaultValue": 3.0, "isOptional": True},
    "d": {"parameterType": "NUMBER_DOUBLE", "defaultValue": 0.5, "isOptional": True, "description": "rate"},
    "e": {"parameterType": "BOOLEAN", "defaultValue": True, "isOptional": True},
    "f": {"parameterType": "LIST", "defaultValue": [1, 2], "isOptional": True},
    "g": {"parameterType": "STRUCT", "defaultValue": {"k": 1}, "isOptional": True},
    "h": {"parameterType": "STRING", "isOptional": True},
    "mode": {
        "parameterType": "STRING",
        "defaultValue": "fast",
        "isOptional": True,
        "literals": ["fast", "slow"],
    },
}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(params_module, "_BY_STAT", {})
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    return tmp_path / "cache" / "kfp-bridge" / params_module._CACHE_FORMAT


@pytest.fixture
def typed_yaml(tmp_path) -> Path:
    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(_spec(TYPED)))
    return path


def test_types_defaults_descriptions_required_and_enum(typed_yaml):
    got = pipeline_params(str(typed_yaml))
    assert list(got) == list(TYPED)
    assert all(isinstance(p, Param) for p in got.values())
    schema = {name: p.schema for name, p in got.items()}
    assert {name: s["type"] for name, s in schema.items()} == {
        "a": "string",
        "b": "integer",
        "d": "number",
        "e": "boolean",
        "f": "array",
        "g": "object",
        "h": ["string", "null"],
        "mode": "string",
    }
    assert {name: p.value for name, p in got.items() if name != "a"} == {
        "b": 3,  # the compiler's 3.0 back as an int
        "d": 0.5,
        "e": True,
        "f": [1, 2],
        "g": {"k": 1},
        "h": None,
        "mode": "fast",
    }
    assert isinstance(got["b"].value, int)
    assert not got["a"].has_value  # required: no default, so Airflow asks for it
    assert got["d"].description == "rate"
    assert got["a"].description == "Pipeline input a (STRING) of typed.yaml"
    assert schema["b"]["title"] == "b"
    assert schema["mode"]["enum"] == ["fast", "slow"]
    assert "enum" not in schema["a"]


def test_relative_path_is_relative_to_the_calling_file(tmp_path, monkeypatch):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p.yaml").write_text(yaml.safe_dump(_spec(TYPED)))
    dag_file = tmp_path / "my_dag.py"
    dag_file.write_text(
        "from kfp_bridge.params import pipeline_params\nPARAMS = pipeline_params('pipelines/p.yaml')\n"
    )
    # From another directory: the path must resolve against the DAG file's folder, not the cwd.
    monkeypatch.chdir("/")
    assert list(runpy.run_path(str(dag_file))["PARAMS"]) == list(TYPED)


def test_absolute_path_and_explicit_folder(typed_yaml, tmp_path):
    assert list(pipeline_params(str(typed_yaml), dag_folder="/nonexistent")) == list(TYPED)
    assert list(pipeline_params("typed.yaml", dag_folder=str(tmp_path))) == list(TYPED)


def test_missing_file_names_path_and_base(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=rf"{tmp_path}/nope.yaml does not exist.*relative to the DAG folder"
    ):
        pipeline_params("nope.yaml", dag_folder=str(tmp_path))


@pytest.mark.parametrize("reference", ["pipelines/iris.py", "pkg.mod:pipeline", "", 3])
def test_a_source_is_refused_with_the_compile_command(reference):
    with pytest.raises(PipelineSourceError, match="kfp-bridge compile"):
        pipeline_params(reference)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("apiVersion: v1\nkind: ConfigMap\n", "Kubernetes manifest"),
        ("a: [1, 2\n", "not valid YAML"),
        ("", "is empty"),
        ("just: a mapping\n", "no 'pipelineInfo' and 'root'"),
    ],
)
def test_not_a_pipeline_names_the_fix(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(PipelineSourceError, match=expected) as info:
        pipeline_params(str(path))
    assert "kfp-bridge compile" in str(info.value)


def test_artifact_inputs_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "art.yaml"
    artifacts = {"model": {"artifactType": {"schemaTitle": "system.Model", "schemaVersion": "0.0.1"}}}
    path.write_text(yaml.safe_dump(_spec(TYPED, artifacts)))
    with pytest.raises(
        PipelineSourceError, match=r"artifact inputs \(model \(system.Model\)\).*dsl.importer"
    ):
        pipeline_params(str(path))


def test_defaults_supply_required_inputs_and_unknown_names_are_refused(typed_yaml):
    got = pipeline_params(str(typed_yaml), defaults={"a": "x", "b": 7})
    assert (got["a"].value, got["b"].value) == ("x", 7)
    with pytest.raises(PipelineSourceError, match=r"'lr'.*its inputs are: a, b, d"):
        pipeline_params(str(typed_yaml), defaults={"lr": 1})


def test_cached_by_content_and_reread_when_the_file_changes(typed_yaml, monkeypatch):
    parsed: list[str] = []
    real = pipeline_specs.parse_pipeline_documents
    monkeypatch.setattr(
        pipeline_specs,
        "parse_pipeline_documents",
        lambda content, path: parsed.append(path) or real(content, path),
    )
    monkeypatch.setattr(params_module, "_BY_STAT", {})
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    pipeline_params(str(typed_yaml))
    pipeline_params(str(typed_yaml))
    assert len(parsed) == 1
    # Same content, new mtime (a git checkout): re-hashed, not re-parsed.
    os.utime(typed_yaml, ns=(1, 1))
    pipeline_params(str(typed_yaml))
    assert len(parsed) == 1
    typed_yaml.write_text(yaml.safe_dump(_spec({"z": {"parameterType": "STRING"}})))
    assert list(pipeline_params(str(typed_yaml))) == ["z"]
    assert len(parsed) == 2


def test_a_new_process_reads_the_disk_cache_not_the_yaml(typed_yaml, private_cache, monkeypatch):
    first = pipeline_params(str(typed_yaml))
    assert len(list(private_cache.glob("*.json"))) == 1
    # A new dag-processor child: empty memory caches, and no YAML parse at all.
    monkeypatch.setattr(params_module, "_BY_STAT", {})
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    monkeypatch.setattr(pipeline_specs, "parse_pipeline_documents", lambda *a: pytest.fail("parsed the YAML"))
    again = pipeline_params(str(typed_yaml))
    assert {k: (p.value, p.schema) for k, p in again.items() if k != "a"} == {
        k: (p.value, p.schema) for k, p in first.items() if k != "a"
    }
    assert (again["a"].has_value, again["d"].description) == (False, "rate")


def test_a_damaged_or_unwritable_cache_falls_back_to_the_yaml(typed_yaml, private_cache, monkeypatch):
    pipeline_params(str(typed_yaml))
    (entry,) = private_cache.glob("*.json")
    entry.write_text('{"name": 3')
    monkeypatch.setattr(params_module, "_BY_STAT", {})
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    assert list(pipeline_params(str(typed_yaml))) == list(TYPED)
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-dir")  # not creatable
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    typed_yaml.write_text(yaml.safe_dump(_spec({"z": {"parameterType": "STRING"}})))
    assert list(pipeline_params(str(typed_yaml))) == ["z"]


def test_cached_defaults_are_not_shared_between_calls(typed_yaml):
    first = pipeline_params(str(typed_yaml))
    first["f"].value.append(99)
    assert pipeline_params(str(typed_yaml))["f"].value == [1, 2]


def test_compiled_pipeline_descriptions_come_from_the_docstring(tmp_path):
    # kfp 2.17 compiles no `literals` (the spec field exists; Literal[...] fails to compile), so the
    # enum is covered by the hand-written spec above.
    pytest.importorskip("kfp")
    from kfp_bridge.utils.pipeline_sources import compile_pipeline_to_file, resolve_pipeline_source

    source = tmp_path / "lit.py"
    source.write_text(
        textwrap.dedent(
            '''
            from kfp import dsl


            @dsl.component(base_image="python:3.11", install_kfp_package=False)
            def echo(mode: str, n: int) -> str:
                return mode


            @dsl.pipeline(name="lit")
            def lit(mode: str = "fast", n: int = 2):
                """Train.

                Args:
                    mode: how hard to try
                    n: how many
                """
                echo(mode=mode, n=n)
            '''
        )
    )
    compile_pipeline_to_file(resolve_pipeline_source(str(source)), str(tmp_path / "lit.yaml"))
    got = pipeline_params(str(tmp_path / "lit.yaml"))
    assert got["mode"].schema == {"title": "mode", "type": "string"}
    assert got["mode"].description == "how hard to try"
    assert (got["n"].schema["type"], got["n"].value) == ("integer", 2)


def test_iris_pipeline_params():
    got = pipeline_params(str(IRIS))
    assert got["seed"].schema["type"] == "integer" and got["seed"].value == 42
    assert got["C"].schema["type"] == "number"
    assert not got["model_dir"].has_value


# ---------------------------------------------------------------- real Airflow: the trigger-time check


def _serialized(dag: DAG):
    from airflow.serialization.serialized_objects import DagSerialization

    # What the api-server triggers from: the DAG as the dag-processor serialized it.
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_trigger_with_a_wrong_type_is_refused_before_any_run(typed_yaml):
    from airflow.exceptions import ParamValidationError
    from airflow.utils.types import DagRunType

    with DAG(
        "typed_params",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        params=pipeline_params(str(typed_yaml)),
    ) as dag:
        pass
    serialized = _serialized(dag)
    # The form's fields survive serialization as the UI reads them.
    assert serialized.params.get_param("b").schema == {"title": "b", "type": "integer"}
    # create_dagrun (what POST /dags/{id}/dagRuns calls) validates conf before writing the run.
    with pytest.raises(ParamValidationError, match="'abc' is not of type 'integer'"):
        serialized.create_dagrun(
            run_id="manual__bad",
            logical_date=None,
            data_interval=None,
            run_after=pendulum.now("UTC"),
            conf={"a": "x", "b": "abc"},
            run_type=DagRunType.MANUAL,
            triggered_by=None,
            state=None,
        )
    with pytest.raises(ParamValidationError, match="No value passed"):
        serialized.params.deep_merge({"b": 1}).validate()  # 'a' is required
    assert serialized.params.deep_merge({"a": "x", "b": 4, "h": None}).validate()["b"] == 4


def test_a_scheduled_dag_needs_defaults_for_required_inputs(typed_yaml):
    start = pendulum.datetime(2026, 1, 1, tz="UTC")
    with pytest.raises(ValueError, match="not allowed to define a Schedule"):
        DAG("sched_missing", schedule="@daily", start_date=start, params=pipeline_params(str(typed_yaml)))
    dag = DAG(
        "sched_ok",
        schedule="@daily",
        start_date=start,
        params=pipeline_params(str(typed_yaml), defaults={"a": "x"}),
    )
    assert dag.params["a"] == "x"


def test_exclude_leaves_inputs_to_the_task_and_refuses_unknown_or_doubled_names(typed_yaml):
    got = pipeline_params(str(typed_yaml), exclude=["a", "h"])
    assert "a" not in got and "h" not in got and "b" in got
    # A scheduled DAG whose only required input is set by the task parses.
    DAG("sched_excluded", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), params=got)
    with pytest.raises(PipelineSourceError, match=r"exclude names 'lr'.*its inputs are: a, b"):
        pipeline_params(str(typed_yaml), exclude=["lr"])
    with pytest.raises(PipelineSourceError, match=r"'a' is given a default and excluded"):
        pipeline_params(str(typed_yaml), defaults={"a": "x"}, exclude=["a"])


@pytest.mark.parametrize(
    "damage",
    [
        {"name": "typed", "parameters": {"a": {"type": "STRING"}}, "artifacts": {}},  # fields missing
        {"name": "typed", "parameters": [], "artifacts": {}},
        {"name": "typed", "artifacts": {}},
        [1, 2],
    ],
)
def test_a_cache_entry_of_the_wrong_shape_is_never_trusted(typed_yaml, private_cache, monkeypatch, damage):
    import json

    pipeline_params(str(typed_yaml))
    (entry,) = private_cache.glob("*.json")
    entry.write_text(json.dumps(damage))
    monkeypatch.setattr(params_module, "_BY_STAT", {})
    monkeypatch.setattr(params_module, "_BY_DIGEST", {})
    assert list(pipeline_params(str(typed_yaml))) == list(TYPED)


def test_a_cached_parse_imports_neither_yaml_reading_nor_input_modules(typed_yaml, tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys; from kfp_bridge.params import pipeline_params; "
        f"pipeline_params({str(typed_yaml)!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('kfp_bridge.utils.pipeline')))"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "proc-cache")}
    first = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    again = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "kfp_bridge.utils.pipeline_specs" in first.stdout  # the first read parses the YAML
    assert again.stdout.strip() == "[]"
