"""Smoke-test specs for rollouts: validate the spec up front, check one response, purely.

A spec is a dict (JSON-serialisable, so it survives deferral)::

    {"payload": {"instances": [[5.1, 3.5, 1.4, 0.2]]},   # request body (required)
     "path": "v1/models/{name}:predict",                  # default; {name} = the InferenceService
     "expected_status": 200,                              # default
     "output_key": "predictions",                         # where the outputs are (V2: "outputs")
     "expected_shape": [1],                               # optional
     "expected_values": [0],                              # optional: exact outputs
     "allowed_values": [0, 1, 2]}                         # optional: every output is one of these

or a callable ``f(url: str) -> bool | None`` (raise or return False to fail), which cannot defer.
"""

from __future__ import annotations

from typing import Any

_KEYS = {"payload", "path", "expected_status", "output_key", "expected_shape", "expected_values",
         "allowed_values", "timeout"}
DEFAULT_PATH = "v1/models/{name}:predict"


def validate_spec(spec: Any) -> None:
    """Raise ValueError naming the fix when ``spec`` is not a usable smoke test."""
    if spec is None or callable(spec):
        return
    if not isinstance(spec, dict):
        raise ValueError(f"smoke_test must be a dict (payload + checks) or a callable, got {type(spec).__name__}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"smoke_test has unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    if not isinstance(spec.get("payload"), dict):
        raise ValueError("smoke_test['payload'] must be the JSON request body, e.g. {'instances': [[5.1, 3.5, 1.4, 0.2]]}")
    shape = spec.get("expected_shape")
    if shape is not None and (not isinstance(shape, list) or not all(isinstance(n, int) for n in shape)):
        raise ValueError(f"smoke_test['expected_shape'] must be a list of ints, got {shape!r}")


def request_path(spec: dict[str, Any], name: str) -> str:
    return str(spec.get("path") or DEFAULT_PATH).format(name=name).lstrip("/")


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def outputs(spec: dict[str, Any], body: Any) -> Any:
    key = spec.get("output_key") or "predictions"
    if not isinstance(body, dict) or key not in body:
        raise KeyError(key)
    value = body[key]
    if key == "outputs" and isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0].get("data")  # V2: the first output tensor
    return value


def check_response(spec: dict[str, Any], status_code: int, body: Any) -> list[str]:
    """Problems with one response (empty list: the smoke test passed)."""
    expected_status = int(spec.get("expected_status", 200))
    if status_code != expected_status:
        return [f"HTTP {status_code} (expected {expected_status}): {str(body)[:300]}"]
    if expected_status >= 300:
        return []
    try:
        values = outputs(spec, body)
    except KeyError as exc:
        return [f"the response has no {exc.args[0]!r}: {str(body)[:300]}"]
    problems = []
    if spec.get("expected_shape") is not None and _shape(values) != list(spec["expected_shape"]):
        problems.append(f"output shape {_shape(values)} != expected {spec['expected_shape']}")
    if spec.get("expected_values") is not None and values != spec["expected_values"]:
        problems.append(f"outputs {values} != expected {spec['expected_values']}")
    if spec.get("allowed_values") is not None:
        allowed = spec["allowed_values"]
        bad = [v for v in _leaves(values) if v not in allowed or isinstance(v, bool)]
        if bad:
            problems.append(f"outputs {bad[:5]} are not among the allowed values {allowed}")
    return problems
