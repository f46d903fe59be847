"""Smoke-test specs for rollouts: validate the spec up front, check one response, purely.

A spec is a dict (JSON-serialisable, so it survives deferral)::

    {"payload": {"instances": [[5.1, 3.5, 1.4, 0.2]]},   # request body (required)
     "path": "v1/models/{name}:predict",                  # default; {name} = the InferenceService
     "expected_status": 200,                              # default
     "output_key": "predictions",                         # where the outputs are (V2: "outputs")
     "expected_shape": [1],                               # optional
     "expected_values": [0],                              # optional: exact outputs
     "allowed_values": [0, 1, 2],                         # optional: every output is one of these
     "timeout": 10}                                       # seconds per request

or a callable ``f(url: str) -> bool | None`` (raise or return False to fail), which cannot defer.
``path`` may use ``{name}`` and ``{namespace}``. :func:`validate_spec` checks all of it before the
rollout changes anything; :mod:`kfp_bridge.utils.smoke_client` sends the request.
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

_KEYS = {"payload", "path", "expected_status", "output_key", "expected_shape", "expected_values",
         "allowed_values", "timeout"}
DEFAULT_PATH = "v1/models/{name}:predict"
PATH_FIELDS = ("name", "namespace")
MAX_TIMEOUT_S = 600.0


def _bad(key: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"smoke_test[{key!r}] must be {expected}, got {value!r} ({type(value).__name__})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_spec(spec: Any) -> None:
    """Raise ValueError naming the key, the expected type and the value when ``spec`` is not a usable
    smoke test. Everything :func:`check_response` and the client read is checked here, before any patch:
    a spec that fails later would fail after the canary took traffic."""
    if spec is None or callable(spec):
        return
    if not isinstance(spec, dict):
        raise ValueError(
            f"smoke_test must be a dict (payload + checks) or a callable f(url), got {spec!r} ({type(spec).__name__})"
        )
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"smoke_test has unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    payload = spec.get("payload")
    if not isinstance(payload, dict):
        raise _bad("payload", "the JSON request body as a dict, e.g. {'instances': [[5.1, 3.5, 1.4, 0.2]]}", payload)
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _bad("payload", f"JSON-serialisable ({exc})", payload) from None
    if "path" in spec:
        _validate_path(spec["path"])
    if "expected_status" in spec:
        status = spec["expected_status"]
        if not _is_int(status) or not 100 <= status <= 599:
            raise _bad("expected_status", "an int HTTP status from 100 to 599", status)
    if "output_key" in spec:
        key = spec["output_key"]
        if not isinstance(key, str) or not key:
            raise _bad("output_key", "a non-empty str (e.g. 'predictions', or 'outputs' for V2)", key)
    if spec.get("expected_shape") is not None:
        shape = spec["expected_shape"]
        if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
            raise _bad("expected_shape", "a list of non-negative ints, e.g. [3]", shape)
    if spec.get("expected_values") is not None and not isinstance(spec["expected_values"], list):
        raise _bad("expected_values", "a list of the exact outputs, e.g. [0, 2, 1]", spec["expected_values"])
    if spec.get("allowed_values") is not None:
        allowed = spec["allowed_values"]
        if not isinstance(allowed, list) or not allowed:
            raise _bad("allowed_values", "a non-empty list of the values every output may take, e.g. [0, 1, 2]", allowed)
    if "timeout" in spec:
        timeout = spec["timeout"]
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or not 0 < timeout <= MAX_TIMEOUT_S
        ):
            raise _bad("timeout", f"a number of seconds in (0, {MAX_TIMEOUT_S:.0f}]", timeout)


def _validate_path(path: Any) -> None:
    expected = f"a str URL path whose only placeholders are {{{'}, {'.join(PATH_FIELDS)}}}"
    if not isinstance(path, str) or not path.strip():
        raise _bad("path", expected, path)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(path) if name is not None]
    except ValueError as exc:
        raise _bad("path", f"{expected} ({exc}; write a literal brace as {{{{ or }}}})", path) from None
    for name, format_spec, conversion in fields:
        if name not in PATH_FIELDS or format_spec or conversion:
            raise _bad("path", f"{expected} (found {{{name}}})", path)
    if "://" in path or any(c.isspace() for c in path):
        raise _bad("path", f"{expected}, relative to the model's URL, without spaces", path)


def request_path(spec: dict[str, Any], name: str, namespace: str = "") -> str:
    return str(spec.get("path") or DEFAULT_PATH).format(name=name, namespace=namespace).lstrip("/")


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
    expected_status = spec.get("expected_status", 200)
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
