"""OpenLineage facets and datasets from :mod:`kfp_bridge.lineage.facts`.

Imports OpenLineage at module level: only the mixins' ``get_openlineage_facets_*`` methods import
this module, and those run only when the OpenLineage provider is installed and enabled.

Custom facets follow the OpenLineage convention: a camelCase key naming the producer's system
(``kfpRun``, ``kfpPipeline``, ``kserveRollout``, ``kserveInferenceService``), a class deriving from
the matching OpenLineage base facet (``_producer`` is the Airflow OpenLineage provider's, set by its
adapter) and a ``_schemaURL`` pointing at the facet's definition in ``schemas/kfp_bridge.json``,
shipped with the package.
"""

from __future__ import annotations

from typing import Any

import attr
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    DatasetFacet,
    ExternalQueryRunFacet,
    RunFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.generated.base import JobFacet

from kfp_bridge.lineage.facts import KfpRunFacts, KServeFacts
from kfp_bridge.lineage.naming import inference_service_dataset_name, model_dataset_name

# The schema file's location relative to the package; a URI reference, resolved against wherever the
# package source is published (kfp_bridge/lineage/schemas/kfp_bridge.json).
SCHEMA_FILE = "kfp_bridge/lineage/schemas/kfp_bridge.json"


def _schema(definition: str) -> str:
    return f"{SCHEMA_FILE}#/$defs/{definition}"


@attr.define
class KfpRunRunFacet(RunFacet):
    """The KFP run this task ran (or reattached to)."""

    runId: str | None = attr.field(default=None)  # noqa: N815 - OpenLineage facet fields are camelCase
    runUrl: str | None = attr.field(default=None)  # noqa: N815
    state: str | None = attr.field(default=None)
    experiment: str | None = attr.field(default=None)
    experimentId: str | None = attr.field(default=None)  # noqa: N815
    pipelineName: str | None = attr.field(default=None)  # noqa: N815
    pipelineVersion: str | None = attr.field(default=None)  # noqa: N815
    pipelineVersionId: str | None = attr.field(default=None)  # noqa: N815
    modelUri: str | None = attr.field(default=None)  # noqa: N815
    steps: dict[str, str] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return _schema("KfpRunRunFacet")


@attr.define
class KfpPipelineJobFacet(JobFacet):
    """The pipeline the task runs: its source as given, and (once known) its name and version."""

    source: str | None = attr.field(default=None)
    name: str | None = attr.field(default=None)
    version: str | None = attr.field(default=None)
    versionId: str | None = attr.field(default=None)  # noqa: N815
    experiment: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return _schema("KfpPipelineJobFacet")


@attr.define
class KServeRolloutRunFacet(RunFacet):
    """What the task did to the InferenceService."""

    action: str = attr.field()
    inferenceService: str | None = attr.field(default=None)  # noqa: N815
    namespace: str | None = attr.field(default=None)
    storageUri: str | None = attr.field(default=None)  # noqa: N815
    mode: str | None = attr.field(default=None)
    canary: bool | None = attr.field(default=None)
    smoke: str | None = attr.field(default=None)
    previousUri: str | None = attr.field(default=None)  # noqa: N815
    previousRevision: str | None = attr.field(default=None)  # noqa: N815
    newRevision: str | None = attr.field(default=None)  # noqa: N815
    revision: str | None = attr.field(default=None)
    traffic: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return _schema("KServeRolloutRunFacet")


@attr.define
class KServeInferenceServiceDatasetFacet(DatasetFacet):
    """The InferenceService after the task: the serving revision and the traffic split."""

    namespace: str = attr.field()
    name: str = attr.field()
    revision: str | None = attr.field(default=None)
    url: str | None = attr.field(default=None)
    mode: str | None = attr.field(default=None)
    traffic: list[dict[str, Any]] = attr.field(factory=list)

    @staticmethod
    def _get_schema() -> str:
        return _schema("KServeInferenceServiceDatasetFacet")


def model_dataset(uri: str | None) -> Dataset | None:
    name = model_dataset_name(uri)
    return Dataset(namespace=name.namespace, name=name.name) if name else None


def kfp_run_lineage(facts: KfpRunFacts) -> OperatorLineage:
    """Output: the model location. Job facet ``kfpPipeline``; run facets ``kfpRun`` and the standard
    ``externalQuery`` (the KFP run id, source = the KFP API) once there is a run."""
    model = model_dataset(facts.model_uri)
    job_facets: dict[str, Any] = {
        "kfpPipeline": KfpPipelineJobFacet(
            source=facts.pipeline,
            name=facts.pipeline_name,
            version=facts.pipeline_version,
            versionId=facts.pipeline_version_id,
            experiment=facts.experiment,
        )
    }
    run_facets: dict[str, Any] = {}
    if facts.run_id or facts.pipeline_name:
        run_facets["kfpRun"] = KfpRunRunFacet(
            runId=facts.run_id,
            runUrl=facts.run_url,
            state=facts.state,
            experiment=facts.experiment,
            experimentId=facts.experiment_id,
            pipelineName=facts.pipeline_name,
            pipelineVersion=facts.pipeline_version,
            pipelineVersionId=facts.pipeline_version_id,
            modelUri=facts.model_uri,
            steps=dict(facts.steps),
        )
    if facts.run_id and facts.kfp_host:
        run_facets["externalQuery"] = ExternalQueryRunFacet(externalQueryId=facts.run_id, source=facts.kfp_host)
    return OperatorLineage(outputs=[model] if model else [], run_facets=run_facets, job_facets=job_facets)


def kserve_lineage(facts: KServeFacts, *, finished: bool) -> OperatorLineage:
    """Input: the model location the service serves afterwards. Output (once ``finished`` and the
    cluster is known): the InferenceService, with facet ``kserveInferenceService``. Run facet
    ``kserveRollout``."""
    model = model_dataset(facts.model_uri)
    traffic = [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in facts.traffic]
    outputs = []
    if finished and facts.cluster and facts.namespace and facts.inference_service:
        name = inference_service_dataset_name(facts.cluster, facts.namespace, facts.inference_service)
        outputs.append(
            Dataset(
                namespace=name.namespace,
                name=name.name,
                facets={
                    "kserveInferenceService": KServeInferenceServiceDatasetFacet(
                        namespace=facts.namespace,
                        name=facts.inference_service,
                        revision=facts.revision,
                        url=facts.url,
                        mode=facts.mode,
                        traffic=traffic,
                    )
                },
            )
        )
    run_facets = {
        "kserveRollout": KServeRolloutRunFacet(
            action=facts.action,
            inferenceService=facts.inference_service,
            namespace=facts.namespace,
            storageUri=facts.model_uri,
            mode=facts.mode,
            canary=facts.canary,
            smoke=facts.smoke,
            previousUri=facts.previous_uri,
            previousRevision=facts.previous_revision,
            newRevision=facts.new_revision,
            revision=facts.revision if finished else None,
            traffic=traffic,
        )
    }
    return OperatorLineage(inputs=[model] if model else [], outputs=outputs, run_facets=run_facets)
