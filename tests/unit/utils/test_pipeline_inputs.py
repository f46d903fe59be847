"""kfp_bridge.utils.pipeline_inputs: declared inputs and run-parameter validation."""

from __future__ import annotations

import pytest

from kfp_bridge.utils.pipeline_inputs import (
    InputParam,
    PipelineParamsError,
    declared_artifacts,
    declared_inputs,
    validate_params,
)
from kfp_bridge.utils.pipeline_sources import compile_pipeline_function
from tests.unit.utils.pipeline_sources_fixtures import typed_source, write


@pytest.fixture(scope="module")
def typed_spec(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("typed")
    return compile_pipeline_function(typed_source(folder)).pipeline_spec


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


def test_declared_inputs_carry_description_and_literals():
    spec = {
        "root": {
            "inputDefinitions": {
                "parameters": {
                    "n": {
                        "parameterType": "NUMBER_INTEGER",
                        "description": "how many",
                        "literals": [1.0, 2.0],
                    },
                    "s": {"parameterType": "STRING"},
                }
            }
        }
    }
    declared = declared_inputs(spec)
    assert declared["n"].description == "how many"
    assert declared["n"].literals == (1, 2)
    assert all(isinstance(v, int) for v in declared["n"].literals)
    assert (declared["s"].description, declared["s"].literals) == ("", None)


def test_declared_artifacts():
    spec = {
        "root": {
            "inputDefinitions": {
                "parameters": {"s": {"parameterType": "STRING"}},
                "artifacts": {"model": {"artifactType": {"schemaTitle": "system.Model"}}, "raw": {}},
            }
        }
    }
    assert declared_artifacts(spec) == {"model": "system.Model", "raw": "artifact"}
    assert declared_artifacts({"root": {}}) == {}
    assert "model" not in declared_inputs(spec)
