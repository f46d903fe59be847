"""Pipeline packages and specs: recognise a compiled PipelineSpec in every shape the SDK sends.

Uploads are a compiled YAML (optionally with a second platform-spec document) or a .zip/.tar.gz
holding one. Runs carry the spec inline either bare (``{"pipelineInfo": ..., "root": ...}``) or
wrapped (``{"pipeline_spec": ..., "platform_spec": ...}``); both are accepted (contracts A.5).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import yaml

from kfp_bridge.local.kfp.wire import bad_request

_HINT = "compile the pipeline with kfp.compiler.Compiler().compile(pipeline_func, 'pipeline.yaml') and upload that file"


def _archive_member(data: bytes, source: str) -> bytes:
    """The pipeline YAML inside an archive: ``pipeline.yaml``, else the single ``*.yaml``."""
    names: dict[str, bytes] = {}
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                if name.endswith((".yaml", ".yml")):
                    names[name] = zf.read(name)
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for member in tf.getmembers():
                if member.isfile() and member.name.endswith((".yaml", ".yml")):
                    handle = tf.extractfile(member)
                    if handle is not None:
                        names[member.name] = handle.read()
    for name, content in names.items():
        if name.rsplit("/", 1)[-1] == "pipeline.yaml":
            return content
    if len(names) != 1:
        raise bad_request(f"{source}: the archive must hold pipeline.yaml or exactly one .yaml file, found {sorted(names)}")
    return next(iter(names.values()))


def _is_archive(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar"


def parse_package(data: bytes, source: str) -> dict[str, Any]:
    """Turn an uploaded package into the stored Struct (bare spec, or wrapped with its platform spec)."""
    if _is_archive(data):
        try:
            data = _archive_member(data, source)
        except (zipfile.BadZipFile, tarfile.TarError) as exc:
            raise bad_request(f"{source}: cannot read the archive ({exc}); {_HINT}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(data.decode("utf-8")) if d is not None]
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise bad_request(f"{source} is not valid YAML ({exc.__class__.__name__}); {_HINT}") from exc
    if not docs:
        raise bad_request(f"{source} is empty; {_HINT}")
    spec = validate_spec(docs[0], source)
    if len(docs) > 1 and isinstance(docs[1], dict) and docs[1]:
        return {"pipeline_spec": spec, "platform_spec": docs[1]}
    return spec


def validate_spec(spec: Any, source: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise bad_request(f"{source} is not a KFP pipeline spec (got a {type(spec).__name__}); {_HINT}")
    missing = [k for k in ("pipelineInfo", "root") if k not in spec]
    if missing:
        raise bad_request(
            f"{source} is not a KFP pipeline spec: missing {', '.join(repr(m) for m in missing)}; {_HINT}"
        )
    if not isinstance(spec["pipelineInfo"], dict) or not spec["pipelineInfo"].get("name"):
        raise bad_request(f"{source} is not a KFP pipeline spec: 'pipelineInfo.name' is empty; {_HINT}")
    if not isinstance(spec["root"], dict) or "dag" not in spec["root"]:
        raise bad_request(f"{source} is not a KFP pipeline spec: 'root.dag' is missing; {_HINT}")
    return spec


def inner_spec(stored: dict[str, Any], source: str = "pipeline_spec") -> dict[str, Any]:
    """The PipelineSpec itself, whichever of the two shapes ``stored`` has."""
    if "pipeline_spec" in stored and "pipelineInfo" not in stored:
        return validate_spec(stored["pipeline_spec"], f"{source}.pipeline_spec")
    return validate_spec(stored, source)


def root_task_names(spec: dict[str, Any]) -> list[str]:
    return list(((spec.get("root") or {}).get("dag") or {}).get("tasks") or {})


def check_parameters(spec: dict[str, Any], params: dict[str, Any]) -> None:
    """Reject parameters the pipeline does not declare, and missing required ones, before any run starts."""
    declared = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise bad_request(
            f"pipeline {spec['pipelineInfo']['name']!r} has no parameter(s) {unknown}; "
            f"its parameters are {sorted(declared) or 'none'}"
        )
    missing = sorted(
        name for name, d in declared.items()
        if name not in params and "defaultValue" not in d and not d.get("isOptional")
    )
    if missing:
        raise bad_request(
            f"pipeline {spec['pipelineInfo']['name']!r} needs parameter(s) {missing}; "
            "pass them in runtime_config.parameters"
        )
