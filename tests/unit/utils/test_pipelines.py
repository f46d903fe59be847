"""kfp_bridge.utils.pipelines against the real kfp compiler.

Pipeline sources are written to files because kfp cannot read the PEP 563 string annotations that
this test module (like every module in the repo) has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from kfp_bridge.utils import pipelines
from kfp_bridge.utils.pipelines import (
    InputParam,
    PipelineParamsError,
    PipelineSourceError,
    compile_pipeline_function,
    declared_inputs,
    load_pipeline,
    load_pipeline_documents,
    load_pipeline_function,
    load_pipeline_package,
    load_pipeline_spec,
    resolve_pipeline_source,
    spec_content_hash,
    spec_short_hash,
    validate_params,
    version_name,
    with_caching,
)

TYPED_PIPELINE = """
from typing import Optional
from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def echo(a: str, b: int, d: float, e: bool, f: list, g: dict, h: Optional[str] = None) -> str:
    return a


@dsl.pipeline(name="typed")
def typed(
    a: str,
    b: int = 3,
    d: float = DEFAULT_D,
    e: bool = True,
    f: list = [1, 2],
    g: dict = {"k": 1},
    h: Optional[str] = None,
):
    echo(a=a, b=b, d=d, e=e, f=f, g=g, h=h)
"""

NESTED_PIPELINE = """
from kfp import dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def one() -> int:
    return 1


@dsl.pipeline(name="inner")
def inner():
    one()


@dsl.pipeline(name="outer")
def outer(items: list = [1, 2]):
    one()
    with dsl.ParallelFor(items):
        one()
    inner()
"""


def write(folder, name: str, source: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(textwrap.dedent(source))
    return path


def typed_source(folder, default_d: str = "1.0", name: str = "typed.py") -> str:
    return write(folder, name, TYPED_PIPELINE.replace("DEFAULT_D", default_d))


@pytest.fixture(scope="module")
def typed_spec(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("typed")
    return compile_pipeline_function(typed_source(folder)).pipeline_spec


# ---------------------------------------------------------------- resolve_pipeline_source


def test_resolve_yaml_relative_to_dag_folder(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p.yaml").write_text("x: 1\n")
    source = resolve_pipeline_source("pipelines/p.yaml", dag_folder=str(tmp_path))
    assert source.kind == "yaml"
    assert source.path == str(tmp_path / "pipelines" / "p.yaml")
    assert not source.needs_compile


def test_resolve_absolute_yaml_ignores_dag_folder(tmp_path):
    (tmp_path / "p.yml").write_text("x: 1\n")
    source = resolve_pipeline_source(str(tmp_path / "p.yml"), dag_folder="/nonexistent")
    assert source.path == str(tmp_path / "p.yml")


def test_resolve_missing_yaml_names_resolved_path_and_base(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        resolve_pipeline_source("pipelines/missing.yaml", dag_folder=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "pipelines" / "missing.yaml") in message
    assert f"relative to the DAG folder {tmp_path}" in message


def test_resolve_missing_file_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="relative to the current directory"):
        resolve_pipeline_source("nope.py")


def test_resolve_file_with_function(tmp_path):
    path = typed_source(tmp_path)
    source = resolve_pipeline_source("typed.py:typed", dag_folder=str(tmp_path))
    assert (source.kind, source.path, source.function) == ("file", path, "typed")
    assert source.needs_compile


def test_resolve_module_function():
    source = resolve_pipeline_source("my_pipelines.iris:iris_pipeline")
    assert (source.kind, source.module, source.function) == ("module", "my_pipelines.iris", "iris_pipeline")


@pytest.mark.parametrize("bad", ["", "   ", "pipeline.json", "module:", "a b:c", "module:fn-name", "mod::fn"])
def test_resolve_rejects_other_forms(bad):
    with pytest.raises(PipelineSourceError, match="module:function|compiled YAML path"):
        resolve_pipeline_source(bad)


# ---------------------------------------------------------------- loading YAML


def test_load_compiled_yaml_round_trips(tmp_path):
    from kfp import compiler

    path = typed_source(tmp_path)
    component = load_pipeline_function(resolve_pipeline_source(path))
    compiler.Compiler().compile(component, str(tmp_path / "typed.yaml"))
    spec = load_pipeline_spec(str(tmp_path / "typed.yaml"))
    assert spec["pipelineInfo"]["name"] == "typed"
    documents = load_pipeline_documents(str(tmp_path / "typed.yaml"))
    assert documents.platform_spec is None
    assert documents.to_api_dict() is documents.pipeline_spec
    assert load_pipeline("typed.yaml", dag_folder=str(tmp_path)) == spec


def test_invalid_yaml_names_file_and_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("root: [unclosed\n")
    with pytest.raises(PipelineSourceError) as info:
        load_pipeline_spec(str(bad))
    assert str(bad) in str(info.value)
    assert "not valid YAML" in str(info.value)
    assert "kfp-bridge compile" in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: x\nimplementation: {container: {image: i}}\n", "KFP v1"),
        ("apiVersion: v1\nkind: ConfigMap\n", "Kubernetes manifest"),
        ("foo: 1\n", "top-level keys: foo"),
        ("- 1\n- 2\n", "not a mapping"),
        ("", "is empty"),
    ],
)
def test_yaml_that_is_not_a_pipeline_spec(tmp_path, content, expected):
    path = tmp_path / "other.yaml"
    path.write_text(content)
    with pytest.raises(PipelineSourceError, match=expected) as info:
        load_pipeline_spec(str(path))
    assert str(path) in str(info.value)


def test_misspelt_field_is_caught_like_kfp_client(tmp_path, typed_spec):
    spec = dict(typed_spec, pipelineInfoo={"name": "x"})
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(PipelineSourceError, match="invalid pipeline spec.*pipelineInfoo"):
        load_pipeline_spec(str(path))


def test_two_document_yaml_with_platform_spec(tmp_path, typed_spec):
    platform = {
        "platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-echo": {"nodeSelector": {}}}}}}
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([typed_spec, platform]))
    documents = load_pipeline_documents(str(path))
    assert documents.pipeline_spec == typed_spec
    assert documents.platform_spec == platform
    assert documents.to_api_dict() == {"pipeline_spec": typed_spec, "platform_spec": platform}
    assert load_pipeline_spec(str(path)) == typed_spec
    # A caller submitting only the PipelineSpec would drop the platform settings: refuse loudly.
    with pytest.raises(PipelineSourceError, match="kubernetes.*load_pipeline_package"):
        load_pipeline(str(path))
    assert load_pipeline_package(str(path)).platform_spec == platform


# ---------------------------------------------------------------- loading and compiling functions


def test_file_with_one_pipeline_is_found_without_a_name(tmp_path):
    documents = compile_pipeline_function(typed_source(tmp_path))
    assert documents.name == "typed"
    assert documents.path is None


def test_file_with_two_pipelines_needs_a_name(tmp_path):
    path = write(tmp_path, "nested.py", NESTED_PIPELINE)
    with pytest.raises(PipelineSourceError) as info:
        load_pipeline_function(resolve_pipeline_source(path))
    assert "2 @dsl.pipeline functions (inner, outer)" in str(info.value)
    assert f"'{path}:inner'" in str(info.value)
    assert compile_pipeline_function(f"{path}:outer").name == "outer"


def test_missing_function_suggests_close_match(tmp_path):
    path = write(tmp_path, "nested.py", NESTED_PIPELINE)
    with pytest.raises(PipelineSourceError, match=r"no function 'outr'.*did you mean 'outer'"):
        compile_pipeline_function(f"{path}:outr")


def test_named_object_that_is_not_a_pipeline(tmp_path):
    path = write(tmp_path, "plain.py", "def f():\n    return 1\n")
    with pytest.raises(PipelineSourceError, match="'f' .* is not a KFP pipeline .*@dsl.pipeline"):
        compile_pipeline_function(f"{path}:f")


def test_file_without_pipelines(tmp_path):
    path = write(tmp_path, "empty.py", "X = 1\n")
    with pytest.raises(PipelineSourceError, match="defines no @dsl.pipeline"):
        compile_pipeline_function(path)


def test_imported_pipelines_do_not_count_and_siblings_import(tmp_path):
    write(tmp_path, "shared_parts.py", NESTED_PIPELINE)
    path = write(
        tmp_path,
        "main_pipeline.py",
        """
        from kfp import dsl
        from shared_parts import inner, one


        @dsl.pipeline(name="main")
        def main():
            inner()
            one()
        """,
    )
    assert compile_pipeline_function(path).name == "main"


def test_future_annotations_failure_names_the_fix(tmp_path):
    path = write(
        tmp_path,
        "future.py",
        "from __future__ import annotations\n" + TYPED_PIPELINE.replace("DEFAULT_D", "1.0"),
    )
    with pytest.raises(PipelineSourceError) as info:
        compile_pipeline_function(path)
    assert "from __future__ import annotations" in str(info.value)
    assert "remove it" in str(info.value)


def test_broken_source_reports_the_error(tmp_path):
    path = write(tmp_path, "broken.py", "import no_such_module_xyz\n")
    with pytest.raises(
        PipelineSourceError, match=r"importing pipeline source .*broken.py failed: ModuleNotFoundError"
    ):
        compile_pipeline_function(path)


def test_module_function_on_sys_path(tmp_path, monkeypatch):
    package = tmp_path / "kb_test_pipes_pkg"
    package.mkdir()
    typed_source(package, name="typed_mod.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert compile_pipeline_function("kb_test_pipes_pkg.typed_mod:typed").name == "typed"


def test_missing_module_suggests_file_form():
    with pytest.raises(PipelineSourceError, match="not importable.*'path/to/file.py:function'"):
        compile_pipeline_function("kb_no_such_pkg.mod:fn")


def test_compiling_reflects_source_edits(tmp_path):
    path = typed_source(tmp_path, default_d="1.0")
    first = compile_pipeline_function(path)
    typed_source(tmp_path, default_d="2.5")
    second = compile_pipeline_function(path)
    assert declared_inputs(first.pipeline_spec)["d"].default == 1.0
    assert declared_inputs(second.pipeline_spec)["d"].default == 2.5


# ---------------------------------------------------------------- hashing


def test_hash_is_stable_across_compiles(tmp_path, typed_spec):
    again = compile_pipeline_function(typed_source(tmp_path)).pipeline_spec
    assert spec_content_hash(again) == spec_content_hash(typed_spec)
    assert len(spec_content_hash(typed_spec)) == 64
    assert spec_short_hash(typed_spec) == spec_content_hash(typed_spec)[:12]
    assert version_name(typed_spec) == "v-" + spec_short_hash(typed_spec)


def test_hash_changes_with_content(tmp_path, typed_spec):
    changed = compile_pipeline_function(typed_source(tmp_path, default_d="0.5")).pipeline_spec
    assert spec_content_hash(changed) != spec_content_hash(typed_spec)


def test_hash_ignores_sdk_version_and_number_spelling(typed_spec):
    other_sdk = dict(typed_spec, sdkVersion="kfp-9.9.9")
    assert spec_content_hash(other_sdk) == spec_content_hash(typed_spec)
    # The API returns specs as protobuf Structs, where 3.0 comes back as 3.
    as_ints = yaml.safe_load(yaml.safe_dump(typed_spec).replace("defaultValue: 3.0", "defaultValue: 3"))
    default_b = ("root", "inputDefinitions", "parameters", "b", "defaultValue")
    assert type(_dig(as_ints, default_b)) is int and type(_dig(typed_spec, default_b)) is float
    assert spec_content_hash(as_ints) == spec_content_hash(typed_spec)


def _dig(value, keys):
    for key in keys:
        value = value[key]
    return value


def test_hash_accepts_api_form_and_counts_platform_spec(typed_spec):
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    wrapped = {"pipeline_spec": typed_spec, "platform_spec": platform}
    assert spec_content_hash(wrapped) == spec_content_hash(typed_spec, platform)
    assert spec_content_hash(typed_spec, platform) != spec_content_hash(typed_spec)
    assert spec_content_hash(typed_spec, {}) == spec_content_hash(typed_spec)


# ---------------------------------------------------------------- caching override


def test_with_caching_covers_nested_dags(tmp_path):
    spec = compile_pipeline_function(f"{write(tmp_path, 'nested.py', NESTED_PIPELINE)}:outer").pipeline_spec
    off = with_caching(spec, False)
    tasks = list(off["root"]["dag"]["tasks"].values())
    for component in off["components"].values():
        tasks += list(component.get("dag", {}).get("tasks", {}).values())
    assert len(tasks) >= 4  # root: one, for-loop, inner; plus the tasks inside the loop and inner
    assert all(task["cachingOptions"]["enableCache"] is False for task in tasks)
    # the input is untouched
    assert spec["root"]["dag"]["tasks"]["one"]["cachingOptions"]["enableCache"] is True


# ---------------------------------------------------------------- declared inputs and params


def test_declared_inputs(typed_spec):
    inputs = declared_inputs(typed_spec)
    assert inputs["a"] == InputParam(type="STRING")
    assert inputs["a"].required
    assert inputs["b"] == InputParam(type="NUMBER_INTEGER", default=3, has_default=True, optional=True)
    assert isinstance(inputs["b"].default, int)
    assert inputs["d"].type == "NUMBER_DOUBLE" and inputs["d"].default == 1.0
    assert inputs["e"] == InputParam(type="BOOLEAN", default=True, has_default=True, optional=True)
    assert inputs["f"].type == "LIST" and inputs["g"].type == "STRUCT"
    assert inputs["h"] == InputParam(type="STRING", default=None, has_default=False, optional=True)
    assert not inputs["h"].required


def test_validate_coerces_without_losing_information(typed_spec):
    params = validate_params(
        typed_spec, {"a": "x", "b": 4.0, "d": 2, "e": False, "f": (1, "two"), "g": {"k": [1]}}
    )
    assert params == {"a": "x", "b": 4, "d": 2.0, "e": False, "f": [1, "two"], "g": {"k": [1]}}
    assert type(params["b"]) is int and type(params["d"]) is float


def test_validate_only_required(typed_spec):
    assert validate_params(typed_spec, {"a": "x"}) == {"a": "x"}


def test_validate_none_for_optional_without_default_is_left_out(typed_spec):
    assert validate_params(typed_spec, {"a": "x", "h": None}) == {"a": "x"}


def test_validate_message_names_type_value_and_source(tmp_path):
    spec = compile_pipeline_function(
        write(
            tmp_path,
            "lr.py",
            """
            from kfp import dsl

            @dsl.component(base_image="python:3.11", install_kfp_package=False)
            def fit(C: float) -> float:
                return C

            @dsl.pipeline(name="lr")
            def lr(C: float = 1.0):
                fit(C=C)
            """,
        )
    ).pipeline_spec
    with pytest.raises(PipelineParamsError) as info:
        validate_params(spec, {"C": "abc"})
    assert info.value.problems[0].startswith(
        "pipeline parameter 'C' expects a float (NUMBER_DOUBLE), got 'abc' (str) from params['C']"
    )
    assert "render_template_as_native_obj=True" in info.value.problems[0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("b", True, "expects an integer (NUMBER_INTEGER), got True (bool)"),
        ("b", 2.5, "fractional part"),
        ("b", "3", "got '3' (str)"),
        ("d", float("nan"), "NaN and infinity"),
        ("d", False, "expects a float (NUMBER_DOUBLE), got False (bool)"),
        ("e", "true", "expects a boolean (BOOLEAN), got 'true' (str)"),
        ("e", 1, "got 1 (int)"),
        ("a", 5, "expects a string (STRING), got 5 (int)"),
        ("f", "[1, 2]", "expects a list (LIST)"),
        ("f", [object()], "JSON-serialisable"),
        ("g", [1], "expects a dict (STRUCT), got [1] (list)"),
        ("d", None, "got None from params['d']; omit it to use the default 1.0"),
    ],
)
def test_validate_rejects_wrong_types(typed_spec, name, value, expected):
    params = {"a": "x", name: value}
    with pytest.raises(PipelineParamsError) as info:
        validate_params(typed_spec, params)
    assert len(info.value.problems) == 1
    assert expected in info.value.problems[0]
    assert f"params[{name!r}]" in info.value.problems[0]


def test_validate_lists_every_problem_at_once(typed_spec):
    with pytest.raises(PipelineParamsError) as info:
        validate_params(typed_spec, {"bb": 1, "D": 2.0, "zzz": 1, "e": "yes"})
    problems = info.value.problems
    assert len(problems) == 5
    assert "unknown pipeline parameter 'bb' (did you mean 'b'?)" in problems[0]
    assert "unknown pipeline parameter 'D' (did you mean 'd'?)" in problems[1]
    assert "unknown pipeline parameter 'zzz'; the pipeline accepts: a, b, d, e, f, g, h" in problems[2]
    assert "'e' expects a boolean" in problems[3]
    assert problems[4] == "missing required pipeline parameter 'a' (a string, STRING); add it to params"
    message = str(info.value)
    assert message.startswith("invalid params for pipeline 'typed':\n  - ")
    assert all(problem in message for problem in problems)


def test_validate_accepts_api_form(typed_spec):
    wrapped = {"pipeline_spec": typed_spec, "platform_spec": {}}
    assert validate_params(wrapped, {"a": "x"}) == {"a": "x"}


# ---------------------------------------------------------------- parse cost


def test_module_does_not_import_kfp_at_import_time():
    code = "import sys, kfp_bridge.utils.pipelines, kfp_bridge.utils.compiling; print('kfp' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_public_names_exist():
    # Operators and the CLI import these by name.
    for name in ("load_pipeline", "with_caching", "declared_inputs", "validate_params", "version_name"):
        assert callable(getattr(pipelines, name))
