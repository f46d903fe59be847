"""OpenLineage methods for the provider's operators, as mixins (no OpenLineage import here).

``class KfpRunOperator(KfpRunLineage, BaseOperator)``: the OpenLineage provider's DefaultExtractor
finds ``get_openlineage_facets_on_start/_complete/_failure`` on the operator and calls them in the
task process, START after rendering and before ``execute``, COMPLETE/FAIL after it. They read the
rendered arguments and what ``execute`` left on the operator, and after the task read the remote
object once with the hook ``execute`` already built (the OpenLineage developer guide's pattern: no
lineage work inside ``execute``). Each method imports OpenLineage itself, so parsing a DAG never does.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _read(what: str, call: Any) -> Any:
    """One read for the facets; lineage never fails the task, so a failed read only loses detail."""
    try:
        return call()
    except Exception as exc:
        log.warning("OpenLineage: could not read %s for the facets: %s", what, exc)
        return None


class KfpRunLineage:
    """OpenLineage for ``KfpRunOperator``: the model location as output dataset, the KFP run and
    pipeline as facets (see docs/lineage.md)."""

    def get_openlineage_facets_on_start(self) -> Any:
        from kfp_bridge.lineage.facets import kfp_run_lineage
        from kfp_bridge.lineage.facts import kfp_run_facts

        return kfp_run_lineage(kfp_run_facts(self, None))

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from kfp_bridge.lineage.facets import kfp_run_lineage
        from kfp_bridge.lineage.facts import kfp_run_facts

        hook, run_id = getattr(self, "_hook", None), getattr(self, "_run_id", None)
        run = _read(f"KFP run {run_id}", lambda: hook.get_run(run_id)) if hook is not None and run_id else None
        return kfp_run_lineage(kfp_run_facts(self, run))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        # The run the task submitted (if it got that far) and its state, as on completion.
        return self.get_openlineage_facets_on_complete(task_instance)


class KServeRolloutLineage:
    """OpenLineage for ``KServeRolloutOperator`` and ``KServePromoteOperator``/``KServeRollbackOperator``:
    the model location as input dataset, the InferenceService (revision, traffic) as output (see
    docs/lineage.md)."""

    def get_openlineage_facets_on_start(self) -> Any:
        from kfp_bridge.lineage.facets import kserve_lineage
        from kfp_bridge.lineage.facts import kserve_facts

        return kserve_lineage(kserve_facts(self, None), finished=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from kfp_bridge.lineage.facets import kserve_lineage
        from kfp_bridge.lineage.facts import kserve_facts, kserve_target

        hook = getattr(self, "_hook", None)
        name, namespace = kserve_target(self)
        isvc = None
        if hook is not None and name:
            namespace = namespace or _read("the connection's namespace", hook.get_namespace) or "default"
            isvc = _read(f"InferenceService {namespace}/{name}", lambda: hook.get_isvc(name, namespace))
        return kserve_lineage(kserve_facts(self, isvc, namespace=namespace), finished=isvc is not None)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        # A failed rollout rolled back (or left the state for the retry): the service as it is now.
        return self.get_openlineage_facets_on_complete(task_instance)
