"""Airflow ``Param``s from a compiled pipeline's typed inputs, for ``DAG(params=...)``.

The Trigger form then shows one field per pipeline input with its type and default, and Airflow
refuses a wrong type before any DAG run is created::

    from kfp_bridge.params import pipeline_params

    with DAG(..., params=pipeline_params("pipelines/iris.yaml")):
        ...

Runs at parse time, so it reads the YAML with PyYAML only (never kfp) and caches what it read by
file content: in memory (an unchanged file costs a ``stat``) and on disk under
``$XDG_CACHE_HOME/kfp-bridge`` (default ``~/.cache``), since every parse is a new process.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Param

__all__ = ["JSON_SCHEMA_TYPES", "pipeline_params"]

# KFP parameterType -> JSON-schema type (what the trigger form picks its widget by).
JSON_SCHEMA_TYPES = {
    "STRING": "string",
    "NUMBER_INTEGER": "integer",
    "NUMBER_DOUBLE": "number",
    "BOOLEAN": "boolean",
    "LIST": "array",
    "STRUCT": "object",
}
# kfp_bridge.utils.pipeline_specs.YAML_SUFFIXES, repeated: that module (and pipeline_inputs) is only
# imported when a pipeline is read for the first time, so a cached parse never pays for it.
_YAML_SUFFIXES = (".yaml", ".yml")
# Bumped when the cached form changes: an older entry is never misread.
_CACHE_FORMAT = "pipeline-inputs-v2"

# (pipeline name, {input: fields of InputParam as a dict}, {artifact input: type}): plain JSON data,
# as a class or the dataclass costs parse time.
_Inputs = tuple[str, dict[str, dict[str, Any]], dict[str, str]]

# (path, mtime_ns, size) -> digest, and digest -> inputs: an unchanged file is never re-read, a
# touched one is re-hashed but not re-parsed, and copies of one pipeline share an entry.
_BY_STAT: dict[tuple[str, int, int], str] = {}
_BY_DIGEST: dict[str, _Inputs] = {}


def pipeline_params(
    pipeline: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    exclude: Iterable[str] = (),
    dag_folder: str | None = None,
) -> dict[str, Param]:
    """One Airflow ``Param`` per input of a compiled pipeline (``root.inputDefinitions.parameters``).

    Each Param carries the JSON-schema type of the KFP parameterType (STRING string, NUMBER_INTEGER
    integer, NUMBER_DOUBLE number, BOOLEAN boolean, LIST array, STRUCT object), the compiled default,
    the input's description, ``title`` (the input name) and ``enum`` for a ``Literal[...]`` input.
    An input without a default that is not optional gets no default, so Airflow requires it; an
    optional one without a default accepts null (the pipeline then sees "not given").

    A scheduled DAG cannot have required params (Airflow refuses to parse it): give those inputs a
    value with ``defaults``, or leave them out with ``exclude`` and set them on the task
    (``KfpRunOperator(params=...)``, e.g. a templated output folder).

    :param pipeline: a compiled pipeline YAML path, absolute or relative to the folder of the file
        that calls this (the DAG file), as ``KfpRunOperator(pipeline=...)`` resolves it.
    :param defaults: values replacing (or supplying) inputs' defaults, by input name.
    :param exclude: inputs to leave out (the task supplies them).
    :param dag_folder: what a relative path is relative to, instead of the caller's folder.
    :raises FileNotFoundError: the file does not exist (names the resolved path and the base).
    :raises PipelineSourceError: not a compiled pipeline YAML; the pipeline takes artifact inputs
        (a KFP run cannot be given those); ``defaults`` or ``exclude`` names an input the pipeline
        does not have, or both name the same one.
    """
    from airflow.sdk import Param

    if dag_folder is None:
        dag_folder = _caller_folder()
    path = _resolve(pipeline, dag_folder)
    title, parameters, artifacts = _read_inputs(path)
    if artifacts:
        listed = ", ".join(f"{name} ({kind})" for name, kind in sorted(artifacts.items()))
        raise _source_error(
            f"pipeline {title or path!r} ({path}) takes artifact inputs ({listed}); a KFP run's runtime "
            "config carries parameters only, so these cannot come from DAG params. Make them parameters "
            "(e.g. a URI string) and load them inside the pipeline with dsl.importer"
        )
    overrides = dict(defaults or {})
    left_out = {exclude} if isinstance(exclude, str) else set(exclude)
    for argument, names in (("defaults", overrides), ("exclude", left_out)):
        unknown = sorted(set(names) - set(parameters), key=str)
        if unknown:
            raise _source_error(
                f"{argument} names {', '.join(map(repr, unknown))}, which pipeline {title or path!r} does "
                f"not declare; its inputs are: {', '.join(sorted(parameters)) or 'none'}"
            )
    both = sorted(set(overrides) & left_out)
    if both:
        raise _source_error(
            f"{', '.join(map(repr, both))} is given a default and excluded; keep it in one of defaults= or exclude="
        )
    source = os.path.basename(path)
    return {
        name: Param(**_param_kwargs(name, param, source, overrides))
        for name, param in parameters.items()
        if name not in left_out
    }


def _param_kwargs(name: str, param: Mapping[str, Any], source: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    json_type: Any = JSON_SCHEMA_TYPES.get(param["type"])
    kwargs: dict[str, Any] = {
        "title": name,
        "description": param["description"] or f"Pipeline input {name} ({param['type']}) of {source}",
    }
    if name in overrides:
        kwargs["default"] = overrides[name]
    elif param["has_default"]:
        default = param["default"]
        # cached: a DAG must not edit another's list
        kwargs["default"] = copy.deepcopy(default) if isinstance(default, list | dict) else default
    elif param["optional"]:
        kwargs["default"] = None
        if json_type:
            json_type = [json_type, "null"]  # the form shows the first non-null type, unmarked as required
    if json_type:  # a parameterType newer than this module: no type check rather than a wrong one
        kwargs["type"] = json_type
    if param["literals"]:
        kwargs["enum"] = list(param["literals"])
    return kwargs


def _source_error(message: str) -> Exception:
    from kfp_bridge.utils.pipeline_specs import PipelineSourceError

    return PipelineSourceError(message)


def _caller_folder() -> str | None:
    # Frame 0 is _caller_folder, 1 pipeline_params, 2 the DAG file's module code.
    filename = sys._getframe(2).f_code.co_filename
    return os.path.dirname(os.path.abspath(filename)) if os.path.isfile(filename) else None


def _resolve(pipeline: str, dag_folder: str | None) -> str:
    if not isinstance(pipeline, str) or not pipeline.strip().endswith(_YAML_SUFFIXES):
        raise _source_error(
            f"pipeline_params needs a compiled pipeline YAML (.yaml/.yml), got {pipeline!r}; compile the "
            "source with `kfp-bridge compile <file>.py` and pass the YAML's path (parsing never imports kfp)"
        )
    reference = os.path.expanduser(pipeline.strip())
    base = dag_folder if dag_folder is not None else os.getcwd()
    resolved = os.path.normpath(os.path.abspath(os.path.join(base, reference)))  # join keeps an absolute one
    if os.path.isfile(resolved):
        return resolved
    from kfp_bridge.utils.pipeline_specs import existing_pipeline_file  # for its error message

    return existing_pipeline_file(pipeline.strip(), dag_folder)


def _read_inputs(path: str) -> _Inputs:
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    digest = _BY_STAT.get(key)
    if digest is not None and digest in _BY_DIGEST:
        return _BY_DIGEST[digest]
    with open(path, "rb") as stream:
        content = stream.read()
    digest = hashlib.sha256(content).hexdigest()
    inputs = _BY_DIGEST.get(digest)
    if inputs is None:
        inputs = _load_entry(digest) or _store_entry(digest, _parse_inputs(content, path))
        _BY_DIGEST[digest] = inputs
    _BY_STAT[key] = digest
    return inputs


def _parse_inputs(content: bytes, path: str) -> _Inputs:
    """The first read of a pipeline: the YAML parse and the spec reading, with their modules."""
    from kfp_bridge.utils.pipeline_inputs import declared_artifacts, declared_inputs
    from kfp_bridge.utils.pipeline_specs import parse_pipeline_documents, pipeline_name

    spec = parse_pipeline_documents(content, path).pipeline_spec
    parameters = {
        name: {
            "type": param.type,
            "default": param.default,
            "has_default": param.has_default,
            "optional": param.optional,
            "description": param.description,
            "literals": list(param.literals) if param.literals else None,
        }
        for name, param in declared_inputs(spec).items()
    }
    return pipeline_name(spec), parameters, declared_artifacts(spec)


# Each parse runs in a fresh dag-processor child, so the in-memory cache above only helps within
# one file. Parsing the YAML is most of this module's cost (~2-4 ms for iris.yaml, ~0.05 ms for
# JSON): what this module reads from the spec is kept on disk, named by the YAML's sha256.
def _cache_path(digest: str) -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kfp-bridge", _CACHE_FORMAT, f"{digest}.json")


_FIELDS = {"type": str, "has_default": bool, "optional": bool, "description": str, "literals": (list, type(None))}


def _load_entry(digest: str) -> _Inputs | None:
    try:
        with open(_cache_path(digest), encoding="utf-8") as stream:
            entry = json.load(stream)
        title, parameters, artifacts = entry["name"], entry["parameters"], entry["artifacts"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    valid = (
        isinstance(title, str)
        and isinstance(artifacts, dict)
        and isinstance(parameters, dict)
        and all(
            isinstance(param, dict)
            and "default" in param
            and all(isinstance(param.get(field), kind) for field, kind in _FIELDS.items())
            for param in parameters.values()
        )
    )
    return (title, parameters, artifacts) if valid else None  # never trust a damaged cache


def _store_entry(digest: str, inputs: _Inputs) -> _Inputs:
    title, parameters, artifacts = inputs
    path = _cache_path(digest)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as stream:
            json.dump({"name": title, "parameters": parameters, "artifacts": artifacts}, stream)
        os.replace(partial, path)  # atomic: parallel parsers never read half a file
    except (OSError, TypeError, ValueError):
        pass  # a read-only home (or a default JSON cannot hold) only costs the YAML parse next time
    return inputs
