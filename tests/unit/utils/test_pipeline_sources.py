"""kfp_bridge.utils.pipeline_sources against the real kfp compiler."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kfp_bridge.utils.pipeline_inputs import declared_inputs
from kfp_bridge.utils.pipeline_sources import (
    PipelineSourceError,
    compile_pipeline_function,
    load_pipeline_function,
    resolve_pipeline_source,
)
from tests.unit.utils.pipeline_sources_fixtures import NESTED_PIPELINE, TYPED_PIPELINE, typed_source, write

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


# ---------------------------------------------------------------- parse cost


def test_modules_do_not_import_kfp_at_import_time():
    code = (
        "import sys, kfp_bridge.utils.pipelines, kfp_bridge.utils.compiling, kfp_bridge.utils.pipeline_sources; "
        "print('kfp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
