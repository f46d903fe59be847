"""Read, hash and adjust compiled KFP pipelines (the PipelineSpec YAML kept in git).

Only PyYAML at import time: DAG files reach this module at parse time (:mod:`kfp_bridge.params`),
and parse time must never import kfp. :func:`load_pipeline_documents` also runs the protobuf
check kfp.Client runs before submitting; :func:`read_pipeline_documents` skips it for parse time.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")
_RECOMPILE = "recompile it with `kfp-bridge compile <pipeline source>.py`"


class PipelineSourceError(ValueError):
    """A pipeline reference, source file or compiled YAML that cannot be used as given."""


@dataclasses.dataclass(frozen=True)
class PipelineDocuments:
    """A compiled pipeline: the PipelineSpec and the optional PlatformSpec (second YAML document).

    :param pipeline_spec: the PipelineSpec as a camelCase dict, as in the YAML.
    :param platform_spec: the PlatformSpec (kfp-kubernetes settings) or None.
    :param path: the file it came from, when it came from a file.
    """

    pipeline_spec: dict[str, Any]
    platform_spec: dict[str, Any] | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        return str(self.pipeline_spec.get("pipelineInfo", {}).get("name", ""))

    def to_api_dict(self) -> dict[str, Any]:
        """What a Run or PipelineVersion carries in ``pipeline_spec`` (the shape kfp.Client sends)."""
        if not self.platform_spec:
            return self.pipeline_spec
        return {"pipeline_spec": self.pipeline_spec, "platform_spec": self.platform_spec}


def existing_pipeline_file(path: str, dag_folder: str | None) -> str:
    """The absolute path of ``path`` (relative to ``dag_folder``, else the cwd); FileNotFoundError naming both."""
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        resolved, relative_to = expanded, None
    else:
        base = dag_folder if dag_folder is not None else os.getcwd()
        resolved = os.path.join(base, expanded)
        relative_to = (
            f"relative to the DAG folder {dag_folder}"
            if dag_folder is not None
            else f"relative to the current directory {base}"
        )
    resolved = os.path.normpath(os.path.abspath(resolved))
    if not os.path.isfile(resolved):
        where = f" ({relative_to})" if relative_to else ""
        what = "is a directory, not a file" if os.path.isdir(resolved) else "does not exist"
        fix = (
            "an absolute path or one relative to the DAG file's folder"
            if dag_folder is not None
            else "an existing file"
        )
        raise FileNotFoundError(f"pipeline file {resolved} {what}{where}; pass {fix}")
    return resolved


def load_pipeline_documents(path: str) -> PipelineDocuments:
    """Read a compiled pipeline YAML (one document, or two with a platform spec) and check it as kfp.Client does.

    :raises FileNotFoundError: no such file.
    :raises PipelineSourceError: not YAML, or YAML that is not a compiled KFP v2 pipeline.
    """
    documents = read_pipeline_documents(path)
    _check_protobuf(documents.pipeline_spec, documents.platform_spec or {}, path, _RECOMPILE)
    return documents


def read_pipeline_documents(path: str) -> PipelineDocuments:
    """:func:`load_pipeline_documents` without the protobuf check, so without importing kfp.

    :raises FileNotFoundError: no such file.
    :raises PipelineSourceError: not YAML, or YAML without a PipelineSpec's ``pipelineInfo`` and ``root``.
    """
    with open(path, "rb") as stream:
        return parse_pipeline_documents(stream.read(), path)


def parse_pipeline_documents(content: bytes | str, path: str) -> PipelineDocuments:
    """:func:`read_pipeline_documents` on content already read (``path`` names it in errors)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built: parse time counts
    try:
        documents = [doc for doc in yaml.load_all(content, Loader=loader) if doc is not None]
    except yaml.YAMLError as err:
        raise PipelineSourceError(f"{path} is not valid YAML ({err}); {_RECOMPILE}") from err
    if not documents:
        raise PipelineSourceError(f"{path} is empty; {_RECOMPILE}")
    if not all(isinstance(doc, dict) for doc in documents):
        raise PipelineSourceError(
            f"{path} is not a compiled KFP pipeline (a document is not a mapping); {_RECOMPILE}"
        )
    pipeline_spec = documents[0]
    _check_is_pipeline_spec(pipeline_spec, path, _RECOMPILE)
    # kfp.Client merges every later document into the platform spec; do the same.
    platform_spec: dict[str, Any] = {}
    for doc in documents[1:]:
        platform_spec.update(doc)
    return PipelineDocuments(pipeline_spec, platform_spec or None, path=path)


def load_pipeline_spec(path: str) -> dict[str, Any]:
    """The PipelineSpec dict of a compiled pipeline YAML (see :func:`load_pipeline_documents`)."""
    return load_pipeline_documents(path).pipeline_spec


def _check_is_pipeline_spec(doc: dict[str, Any], path: str, fix: str) -> None:
    if "pipelineInfo" in doc and "root" in doc:
        return
    if "apiVersion" in doc and "kind" in doc:
        hint = "it is a Kubernetes manifest; compile without kubernetes_manifest_format"
    elif "implementation" in doc:
        hint = "it looks like a KFP v1 component or pipeline; compile it with kfp>=2"
    else:
        hint = f"it has no 'pipelineInfo' and 'root' (top-level keys: {', '.join(sorted(doc)) or 'none'})"
    raise PipelineSourceError(f"{path} is not a compiled KFP v2 pipeline: {hint}; {fix}")


def _check_protobuf(
    pipeline_spec: dict[str, Any], platform_spec: dict[str, Any], path: str, fix: str
) -> None:
    # The same parse kfp.Client does before submitting: catches misspelt or hand-edited fields here
    # rather than as an opaque API error after side effects.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    for doc, message, label in (
        (pipeline_spec, pipeline_spec_pb2.PipelineSpec(), "pipeline spec"),
        (platform_spec, pipeline_spec_pb2.PlatformSpec(), "platform spec"),
    ):
        try:
            json_format.ParseDict(doc, message)
        except json_format.ParseError as err:
            raise PipelineSourceError(f"{path}: invalid {label} ({err}); {fix}") from err


def with_caching(spec: Mapping[str, Any], enable_caching: bool) -> dict[str, Any]:
    """A copy of the PipelineSpec with caching switched on or off for every task.

    kfp.Client only overrides the root DAG's tasks; tasks inside sub-DAGs (ParallelFor, If, nested
    pipelines) kept their compiled setting, so "no caching for this run" silently still cached there.
    Here every DAG in the spec is covered.
    """
    copied = copy.deepcopy(dict(spec))
    dags = [copied.get("root", {}).get("dag", {})]
    dags += [component.get("dag", {}) for component in copied.get("components", {}).values()]
    for dag in dags:
        for task in (dag.get("tasks") or {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = bool(enable_caching)
    return copied


def pipeline_name(spec: Mapping[str, Any]) -> str:
    """``pipelineInfo.name`` (what ``@dsl.pipeline(name=...)`` set)."""
    return str(unwrap_spec(spec).get("pipelineInfo", {}).get("name") or "")


def version_name(spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> str:
    """A pipeline version name derived from content only: the same spec always gets the same name.

    So a version is uploaded once per distinct pipeline and a run names the exact content it ran
    (the versions-pinned-to-git ask, kubeflow/pipelines#13933).
    """
    return f"v-{spec_short_hash(spec, platform_spec)}"


def unwrap_spec(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The PipelineSpec of ``spec``, which may be the API form ``{"pipeline_spec": ..., "platform_spec": ...}``."""
    # Accept the API form {"pipeline_spec": ..., "platform_spec": ...} wherever a PipelineSpec goes.
    if set(spec) == {"pipeline_spec", "platform_spec"}:
        return spec["pipeline_spec"]
    return spec


# --------------------------------------------------------------------------------------------------
# Content hash
# --------------------------------------------------------------------------------------------------


# sdkVersion records which kfp wrote the file, not what runs: anything about the SDK that changes
# execution (e.g. the `pip install kfp==...` step) already shows up in the executors' commands. Leaving
# it out means a kfp patch upgrade does not mint a new pipeline version for an unchanged pipeline.
_VOLATILE_TOP_LEVEL_KEYS = frozenset({"sdkVersion"})


def spec_content_hash(spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None) -> str:
    """Stable sha256 (64 hex chars) of a pipeline's content, for pinning versions to what is in git.

    Accepts the PipelineSpec dict (plus the optional platform spec) or the API form
    ``{"pipeline_spec": ..., "platform_spec": ...}`` that a PipelineVersion returns, so a spec read
    back from the server hashes the same as the YAML it was uploaded from.
    """
    if set(spec) == {"pipeline_spec", "platform_spec"} and platform_spec is None:
        spec, platform_spec = spec["pipeline_spec"], spec["platform_spec"]
    content: dict[str, Any] = {
        "pipeline_spec": {k: v for k, v in spec.items() if k not in _VOLATILE_TOP_LEVEL_KEYS},
    }
    if platform_spec:  # an empty platform spec means "none", as in kfp.Client
        content["platform_spec"] = platform_spec
    canonical = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def spec_short_hash(
    spec: Mapping[str, Any], platform_spec: Mapping[str, Any] | None = None, length: int = 12
) -> str:
    """The first ``length`` hex chars of :func:`spec_content_hash` (e.g. for version names)."""
    return spec_content_hash(spec, platform_spec)[:length]


def _canonical(value: Any) -> Any:
    # The API stores specs as protobuf Structs, where every number is a double: 200 and 200.0 are the
    # same value there, so they must hash the same here.
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"pipeline spec contains a {type(value).__name__} ({value!r}), which has no JSON form")
