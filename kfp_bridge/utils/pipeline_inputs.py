"""A pipeline's declared inputs, and run parameters checked against them before any run.

Pure dict work on a PipelineSpec (as read by :mod:`.pipeline_specs`): no kfp, no YAML, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from kfp_bridge.utils.pipeline_specs import pipeline_name, unwrap_spec


class PipelineParamsError(ValueError):
    """Run parameters that don't match the pipeline's declared inputs; ``problems`` lists each one."""

    def __init__(self, pipeline_name: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid params for pipeline {pipeline_name!r}:\n{lines}")


_TYPE_WORDS = {
    "STRING": "a string",
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a float",
    "BOOLEAN": "a boolean",
    "LIST": "a list",
    "STRUCT": "a dict",
}
# Pipelines compiled before parameterType existed (kfp 2.0 betas) used `type`.
_LEGACY_TYPES = {"STRING": "STRING", "INT": "NUMBER_INTEGER", "DOUBLE": "NUMBER_DOUBLE"}


@dataclasses.dataclass(frozen=True)
class InputParam:
    """One pipeline parameter from ``root.inputDefinitions.parameters``.

    :param type: the KFP parameterType (STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT).
    :param default: the default value, or None.
    :param has_default: whether the spec carries a default (a default can itself be falsy).
    :param optional: whether the run may leave it out.
    :param description: the input's docstring text as compiled (``Args:`` of the pipeline), or "".
    :param literals: the allowed values of a ``Literal[...]`` input, or None.
    """

    type: str
    default: Any = None
    has_default: bool = False
    optional: bool = False
    description: str = ""
    literals: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return not (self.optional or self.has_default)


def declared_inputs(spec: Mapping[str, Any]) -> dict[str, InputParam]:
    """The pipeline's parameters by name (artifact inputs of the root DAG are not run parameters)."""
    parameters = unwrap_spec(spec).get("root", {}).get("inputDefinitions", {}).get("parameters", {}) or {}
    inputs: dict[str, InputParam] = {}
    for name, definition in parameters.items():
        kind = definition.get("parameterType") or _LEGACY_TYPES.get(definition.get("type", ""), "STRING")
        has_default = "defaultValue" in definition
        literals = definition.get("literals")
        inputs[name] = InputParam(
            type=kind,
            default=_native_number(kind, definition.get("defaultValue")),
            has_default=has_default,
            optional=bool(definition.get("isOptional", False)),
            description=str(definition.get("description") or ""),
            literals=tuple(_native_number(kind, v) for v in literals) if literals else None,
        )
    return inputs


def declared_artifacts(spec: Mapping[str, Any]) -> dict[str, str]:
    """The root DAG's artifact inputs by name, with their type (``schemaTitle``, e.g. ``system.Model``).

    A KFP run's runtime config carries parameters only: a pipeline with one of these cannot be started
    with run parameters alone.
    """
    artifacts = unwrap_spec(spec).get("root", {}).get("inputDefinitions", {}).get("artifacts", {}) or {}
    return {
        name: str((definition.get("artifactType") or {}).get("schemaTitle") or "artifact")
        for name, definition in artifacts.items()
    }


def _native_number(kind: str, value: Any) -> Any:
    # The compiler writes int values as floats (200.0): a protobuf Struct has doubles only.
    if kind == "NUMBER_INTEGER" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def validate_params(
    spec: Mapping[str, Any], params: Mapping[str, Any] | None, *, origins: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Check run parameters against the pipeline's inputs and return them ready for the API.

    Numbers are coerced where no information is lost (int → float for NUMBER_DOUBLE, 3.0 → 3 for
    NUMBER_INTEGER); anything else of the wrong type is rejected rather than guessed at, because the
    KFP backend would only fail later, inside the run. None for an optional parameter without a
    default is left out, so the pipeline sees "not given".

    :param origins: where each value came from, for the messages (default ``params['<name>']``),
        e.g. ``dag_run.conf['lr']`` or ``the DAG param 'lr'``.
    :raises PipelineParamsError: one error listing every problem (unknown, missing, wrong type).
    """
    params = dict(params or {})
    origins = origins or {}
    declared = declared_inputs(spec)
    title = pipeline_name(spec) or "pipeline"
    problems: list[str] = []
    coerced: dict[str, Any] = {}

    for name, value in params.items():
        if not isinstance(name, str):
            problems.append(f"params key {name!r} is a {type(name).__name__}; parameter names are strings")
            continue
        param = declared.get(name)
        if param is None:
            problems.append(_unknown(name, declared))
            continue
        if value is None:
            if param.optional and not param.has_default:
                continue
            default = f"; omit it to use the default {param.default!r}" if param.has_default else ""
            problems.append(
                f"pipeline parameter {name!r} expects {_TYPE_WORDS.get(param.type, param.type)} "
                f"({param.type}), got None from {origins.get(name, f'params[{name!r}]')}{default}"
            )
            continue
        ok, result, hint = _coerce(param.type, value)
        if ok:
            coerced[name] = result
        else:
            problems.append(
                f"pipeline parameter {name!r} expects {_TYPE_WORDS.get(param.type, param.type)} ({param.type}), "
                f"got {_short_repr(value)} ({type(value).__name__}) from {origins.get(name, f'params[{name!r}]')}{hint}"
            )

    for name, param in declared.items():
        if param.required and name not in params:
            problems.append(
                f"missing required pipeline parameter {name!r} "
                f"({_TYPE_WORDS.get(param.type, param.type)}, {param.type}); add it to params"
            )

    if problems:
        raise PipelineParamsError(title, problems)
    return coerced


def _unknown(name: str, declared: Mapping[str, InputParam]) -> str:
    import difflib  # error path only: not paid at parse time

    accepted = sorted(declared)
    by_lower = {n.lower(): n for n in accepted}
    close = difflib.get_close_matches(name, accepted, n=1) or (
        [by_lower[name.lower()]] if name.lower() in by_lower else []
    )
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    names = ", ".join(accepted) if accepted else "none"
    return f"unknown pipeline parameter {name!r}{hint}; the pipeline accepts: {names}"


_NATIVE_HINT = (
    "; a Jinja-templated value renders as a string unless the DAG sets render_template_as_native_obj=True"
)


def _coerce(kind: str, value: Any) -> tuple[bool, Any, str]:
    """(accepted, value for the API, hint for the error message)."""
    if kind == "STRING":
        return isinstance(value, str), value, ""
    if kind == "BOOLEAN":
        return isinstance(value, bool), value, _NATIVE_HINT if isinstance(value, str) else ""
    if kind in ("NUMBER_INTEGER", "NUMBER_DOUBLE"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        if not math.isfinite(value):
            return False, value, "; NaN and infinity have no JSON form"
        if kind == "NUMBER_DOUBLE":
            return True, float(value), ""
        if isinstance(value, float):
            if value.is_integer():
                return True, int(value), ""
            return False, value, "; it has a fractional part"
        return True, value, ""
    if kind == "LIST":
        if not isinstance(value, list | tuple):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        return _json_ready(list(value))
    if kind == "STRUCT":
        if not isinstance(value, Mapping):
            return False, value, _NATIVE_HINT if isinstance(value, str) else ""
        return _json_ready(dict(value))
    # A type this module doesn't know (newer KFP): pass it through and let the server decide.
    return True, value, ""


def _json_ready(value: Any) -> tuple[bool, Any, str]:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        return False, value, f"; it must be JSON-serialisable ({err})"
    return True, value, ""


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
