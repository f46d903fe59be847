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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kfp_bridge.utils.pipeline_inputs import InputParam, declared_artifacts, declared_inputs
from kfp_bridge.utils.pipeline_specs import (
    YAML_SUFFIXES,
    PipelineSourceError,
    existing_pipeline_file,
    parse_pipeline_documents,
    pipeline_name,
)

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


# (pipeline name, parameters, artifact inputs); a plain tuple, as a class costs parse time.
_Inputs = tuple[str, dict[str, InputParam], dict[str, str]]

# (path, mtime_ns, size) -> digest, and digest -> inputs: an unchanged file is never re-read, a
# touched one is re-hashed but not re-parsed, and copies of one pipeline share an entry.
_BY_STAT: dict[tuple[str, int, int], str] = {}
_BY_DIGEST: dict[str, _Inputs] = {}


def pipeline_params(
    pipeline: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    dag_folder: str | None = None,
) -> dict[str, Param]:
    """One Airflow ``Param`` per input of a compiled pipeline (``root.inputDefinitions.parameters``).

    Each Param carries the JSON-schema type of the KFP parameterType (STRING string, NUMBER_INTEGER
    integer, NUMBER_DOUBLE number, BOOLEAN boolean, LIST array, STRUCT object), the compiled default,
    the input's description, ``title`` (the input name) and ``enum`` for a ``Literal[...]`` input.
    An input without a default that is not optional gets no default, so Airflow requires it; an
    optional one without a default accepts null (the pipeline then sees "not given").

    A scheduled DAG cannot have required params (Airflow refuses to parse it): give those inputs a
    value with ``defaults``.

    :param pipeline: a compiled pipeline YAML path, absolute or relative to the folder of the file
        that calls this (the DAG file), as ``KfpRunOperator(pipeline=...)`` resolves it.
    :param defaults: values replacing (or supplying) inputs' defaults, by input name.
    :param dag_folder: what a relative path is relative to, instead of the caller's folder.
    :raises FileNotFoundError: the file does not exist (names the resolved path and the base).
    :raises PipelineSourceError: not a compiled pipeline YAML; the pipeline takes artifact inputs
        (a KFP run cannot be given those); ``defaults`` names an input the pipeline does not have.
    """
    from airflow.sdk import Param

    if dag_folder is None:
        dag_folder = _caller_folder()
    path = _resolve(pipeline, dag_folder)
    title, parameters, artifacts = _read_inputs(path)
    if artifacts:
        listed = ", ".join(f"{name} ({kind})" for name, kind in sorted(artifacts.items()))
        raise PipelineSourceError(
            f"pipeline {title or path!r} ({path}) takes artifact inputs ({listed}); a KFP run's runtime "
            "config carries parameters only, so these cannot come from DAG params. Make them parameters "
            "(e.g. a URI string) and load them inside the pipeline with dsl.importer"
        )
    overrides = dict(defaults or {})
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
        raise PipelineSourceError(
            f"defaults name {', '.join(map(repr, unknown))}, which pipeline {title or path!r} does not "
            f"declare; its inputs are: {', '.join(sorted(parameters)) or 'none'}"
        )
    source = os.path.basename(path)
    return {
        name: Param(**_param_kwargs(name, param, source, overrides)) for name, param in parameters.items()
    }


def _param_kwargs(name: str, param: InputParam, source: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    json_type: Any = JSON_SCHEMA_TYPES.get(param.type)
    kwargs: dict[str, Any] = {
        "title": name,
        "description": param.description or f"Pipeline input {name} ({param.type}) of {source}",
    }
    if name in overrides:
        kwargs["default"] = overrides[name]
    elif param.has_default:
        kwargs["default"] = copy.deepcopy(param.default)  # cached: a DAG must not edit another's list
    elif param.optional:
        kwargs["default"] = None
        if json_type:
            json_type = [json_type, "null"]  # the form shows the first non-null type, unmarked as required
    if json_type:  # a parameterType newer than this module: no type check rather than a wrong one
        kwargs["type"] = json_type
    if param.literals:
        kwargs["enum"] = list(param.literals)
    return kwargs


def _caller_folder() -> str | None:
    # Frame 0 is _caller_folder, 1 pipeline_params, 2 the DAG file's module code.
    filename = sys._getframe(2).f_code.co_filename
    return os.path.dirname(os.path.abspath(filename)) if os.path.isfile(filename) else None


def _resolve(pipeline: str, dag_folder: str | None) -> str:
    if not isinstance(pipeline, str) or not pipeline.strip().endswith(YAML_SUFFIXES):
        raise PipelineSourceError(
            f"pipeline_params needs a compiled pipeline YAML (.yaml/.yml), got {pipeline!r}; compile the "
            "source with `kfp-bridge compile <file>.py` and pass the YAML's path (parsing never imports kfp)"
        )
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
        spec = _load_slice(digest) or _store_slice(
            digest, parse_pipeline_documents(content, path).pipeline_spec
        )
        inputs = (pipeline_name(spec), declared_inputs(spec), declared_artifacts(spec))
        _BY_DIGEST[digest] = inputs
    _BY_STAT[key] = digest
    return inputs


# Each parse runs in a fresh dag-processor child, so the in-memory cache above only helps within
# one file. Parsing the YAML is most of this module's cost (~2-4 ms for iris.yaml, ~0.05 ms for
# JSON): the part of the spec this module reads is kept on disk, named by the YAML's sha256.
def _cache_path(digest: str) -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kfp-bridge", "pipeline-inputs", f"{digest}.json")


def _load_slice(digest: str) -> dict[str, Any] | None:
    try:
        with open(_cache_path(digest), encoding="utf-8") as stream:
            spec = json.load(stream)
    except (OSError, ValueError):
        return None
    valid = (
        isinstance(spec, dict)
        and isinstance(spec.get("root"), dict)
        and isinstance(spec.get("pipelineInfo"), dict)
    )
    return spec if valid else None  # anything else: re-read the YAML, never trust a damaged cache


def _store_slice(digest: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    piece = {
        "pipelineInfo": {"name": pipeline_name(spec)},
        "root": {"inputDefinitions": spec.get("root", {}).get("inputDefinitions") or {}},
    }
    path = _cache_path(digest)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as stream:
            json.dump(piece, stream)
        os.replace(partial, path)  # atomic: parallel parsers never read half a file
    except OSError:
        pass  # a read-only home only costs the YAML parse next time
    return piece
