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
    ("x", "must be a dict"), ({"payload": 1}, "payload"), ({"payload": {}, "bogus": 1}, "unknown keys"),
    ({"payload": {}, "expected_shape": "3"}, "list of ints"),
])
def test_invalid_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        smoke.validate_spec(spec)


def test_callable_and_path():
    smoke.validate_spec(lambda url: True)
    assert smoke.request_path({"payload": {}}, "iris") == "v1/models/iris:predict"
