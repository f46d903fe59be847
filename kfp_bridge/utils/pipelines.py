"""Compatibility re-exports: this module was split by concern.

* :mod:`kfp_bridge.utils.pipeline_sources` — resolve a pipeline reference, load and compile sources;
* :mod:`kfp_bridge.utils.pipeline_specs` — read compiled YAML, content hash, version names, caching;
* :mod:`kfp_bridge.utils.pipeline_inputs` — declared inputs and run-parameter validation.

Import from those modules in new code; these names stay until every importer has moved.
"""

from __future__ import annotations

from kfp_bridge.utils.pipeline_inputs import (
    InputParam,
    PipelineParamsError,
    declared_artifacts,
    declared_inputs,
    validate_params,
)
from kfp_bridge.utils.pipeline_sources import (
    PipelineSource,
    compile_in_process,
    compile_pipeline_function,
    compile_pipeline_to_file,
    load_pipeline,
    load_pipeline_function,
    load_pipeline_package,
    resolve_pipeline_source,
)
from kfp_bridge.utils.pipeline_specs import (
    YAML_SUFFIXES,
    PipelineDocuments,
    PipelineSourceError,
    existing_pipeline_file,
    load_pipeline_documents,
    load_pipeline_spec,
    pipeline_name,
    read_pipeline_documents,
    spec_content_hash,
    spec_short_hash,
    version_name,
    with_caching,
)

__all__ = [
    "YAML_SUFFIXES",
    "InputParam",
    "PipelineDocuments",
    "PipelineParamsError",
    "PipelineSource",
    "PipelineSourceError",
    "compile_in_process",
    "compile_pipeline_function",
    "compile_pipeline_to_file",
    "existing_pipeline_file",
    "declared_artifacts",
    "declared_inputs",
    "load_pipeline",
    "load_pipeline_documents",
    "load_pipeline_function",
    "load_pipeline_package",
    "load_pipeline_spec",
    "pipeline_name",
    "read_pipeline_documents",
    "resolve_pipeline_source",
    "spec_content_hash",
    "spec_short_hash",
    "validate_params",
    "version_name",
    "with_caching",
]
