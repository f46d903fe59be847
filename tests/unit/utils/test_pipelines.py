"""kfp_bridge.utils.pipelines: the re-exports older importers use are the split modules' objects."""

from __future__ import annotations

from kfp_bridge.utils import pipeline_inputs, pipeline_sources, pipeline_specs, pipelines


def test_every_reexport_is_the_split_modules_object():
    homes = (pipeline_inputs, pipeline_sources, pipeline_specs)
    for name in pipelines.__all__:
        owners = [module for module in homes if getattr(module, name, None) is getattr(pipelines, name)]
        assert owners, f"kfp_bridge.utils.pipelines.{name} is not one of the split modules' names"


def test_public_names_exist():
    # Operators, the CLI and the compile worker import these by name.
    for name in (
        "load_pipeline",
        "with_caching",
        "declared_inputs",
        "validate_params",
        "version_name",
        "compile_in_process",
        "compile_pipeline_to_file",
        "resolve_pipeline_source",
    ):
        assert callable(getattr(pipelines, name))
    assert issubclass(pipelines.PipelineSourceError, ValueError)
