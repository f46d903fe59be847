"""kfp_bridge.utils.pipeline_specs: reading compiled YAML, hashing, the caching override."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from kfp_bridge.utils.pipeline_sources import (
    compile_pipeline_function,
    load_pipeline,
    load_pipeline_function,
    load_pipeline_package,
    resolve_pipeline_source,
)
from kfp_bridge.utils.pipeline_specs import (
    PipelineSourceError,
    load_pipeline_documents,
    load_pipeline_spec,
    read_pipeline_documents,
    spec_content_hash,
    spec_short_hash,
    version_name,
    with_caching,
)
from tests.unit.utils.pipeline_sources_fixtures import NESTED_PIPELINE, typed_source, write


@pytest.fixture(scope="module")
def typed_spec(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("typed")
    return compile_pipeline_function(typed_source(folder)).pipeline_spec


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


def test_read_without_kfp_checks_structure_only(tmp_path, typed_spec):
    # Parse time (kfp_bridge.params) reads with PyYAML only; the protobuf check waits for execute.
    path = tmp_path / "typo.yaml"
    spec = dict(typed_spec, pipelineInfoo={"name": "x"})
    path.write_text(yaml.safe_dump(spec))
    assert read_pipeline_documents(str(path)).name == "typed"
    with pytest.raises(PipelineSourceError, match="invalid pipeline spec"):
        load_pipeline_documents(str(path))
    (tmp_path / "manifest.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(PipelineSourceError, match="Kubernetes manifest"):
        read_pipeline_documents(str(tmp_path / "manifest.yaml"))


def test_read_pipeline_documents_does_not_import_kfp():
    iris = os.path.join(os.path.dirname(__file__), "..", "..", "..", "dags", "pipelines", "iris.yaml")
    code = (
        "import sys; from kfp_bridge.utils.pipeline_specs import read_pipeline_documents; "
        f"print(read_pipeline_documents({iris!r}).name, 'kfp' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["iris-train", "False"]
