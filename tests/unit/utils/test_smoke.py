"""Pure smoke-test spec validation and response checks."""

from __future__ import annotations

import pytest

from kfp_bridge.utils import smoke

SPEC = {"payload": {"instances": [[1, 2, 3, 4]] * 3}, "expected_shape": [3], "allowed_values": [0, 1, 2]}


def test_passing_response():
    assert smoke.check_response(SPEC, 200, {"predictions": [0, 2, 1]}) == []


def test_wrong_status_shape_values():
    assert "HTTP 500" in smoke.check_response(SPEC, 500, "boom")[0]
    assert "shape [2]" in smoke.check_response(SPEC, 200, {"predictions": [0, 1]})[0]
    assert "allowed values" in smoke.check_response(SPEC, 200, {"predictions": [0, 7, 1]})[0]
    assert "!= expected" in smoke.check_response({**SPEC, "expected_values": [0, 0, 0]}, 200, {"predictions": [0, 2, 1]})[0]
    assert "no 'predictions'" in smoke.check_response(SPEC, 200, {"outputs": []})[0]


def test_v2_outputs():
    spec = {"payload": {}, "output_key": "outputs", "expected_values": [1, 2]}
    assert smoke.check_response(spec, 200, {"outputs": [{"name": "o", "data": [1, 2]}]}) == []


@pytest.mark.parametrize(("spec", "match"), [
    ("x", "must be a dict"),
    ({"payload": 1}, r"smoke_test\['payload'\] must be the JSON request body.*got 1 \(int\)"),
    ({"payload": {"x": {1, 2}}}, r"smoke_test\['payload'\] must be JSON-serialisable"),
    ({"payload": {"x": float("nan")}}, r"smoke_test\['payload'\] must be JSON-serialisable"),
    ({"payload": {}, "bogus": 1}, "unknown keys"),
    ({"payload": {}, "path": "v1/models/{model}:predict"}, r"only placeholders are \{name\}, \{namespace\} \(found \{model\}\)"),
    ({"payload": {}, "path": "v1/models/{name:predict"}, r"smoke_test\['path'\].*literal brace"),
    ({"payload": {}, "path": "v1/models/{name!r}"}, r"smoke_test\['path'\]"),
    ({"payload": {}, "path": "v1/{0}"}, r"smoke_test\['path'\]"),
    ({"payload": {}, "path": "http://other/v1"}, "relative to the model's URL"),
    ({"payload": {}, "path": 3}, r"smoke_test\['path'\].*got 3 \(int\)"),
    ({"payload": {}, "expected_status": "200"}, r"smoke_test\['expected_status'\] must be an int HTTP status.*got '200' \(str\)"),
    ({"payload": {}, "expected_status": True}, r"expected_status.*\(bool\)"),
    ({"payload": {}, "expected_status": 99}, r"expected_status.*from 100 to 599"),
    ({"payload": {}, "output_key": ""}, r"smoke_test\['output_key'\] must be a non-empty str"),
    ({"payload": {}, "expected_shape": "3"}, "list of non-negative ints"),
    ({"payload": {}, "expected_shape": [3, -1]}, "list of non-negative ints"),
    ({"payload": {}, "expected_values": 0}, r"smoke_test\['expected_values'\] must be a list"),
    ({"payload": {}, "allowed_values": 2}, r"smoke_test\['allowed_values'\] must be a non-empty list.*got 2 \(int\)"),
    ({"payload": {}, "allowed_values": []}, "non-empty list"),
    ({"payload": {}, "timeout": "abc"}, r"smoke_test\['timeout'\] must be a number of seconds.*got 'abc' \(str\)"),
    ({"payload": {}, "timeout": 0}, "timeout"),
    ({"payload": {}, "timeout": float("inf")}, "timeout"),
    ({"payload": {}, "timeout": False}, r"timeout.*\(bool\)"),
])
def test_invalid_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        smoke.validate_spec(spec)


def test_valid_spec_with_every_key():
    smoke.validate_spec({"payload": {"inputs": []}, "path": "v2/models/{name}/infer", "expected_status": 200,
                         "output_key": "outputs", "expected_shape": [3], "expected_values": [0, 1, 2],
                         "allowed_values": [0, 1, 2], "timeout": 2.5})


def test_callable_and_path():
    smoke.validate_spec(lambda url: True)
    assert smoke.request_path({"payload": {}}, "iris") == "v1/models/iris:predict"
    assert smoke.request_path({"payload": {}, "path": "/{namespace}/{name}"}, "iris", "ns") == "ns/iris"
