"""OpenLineage for the provider's operators (the optional ``openlineage`` extra).

The mixins in :mod:`kfp_bridge.lineage.mixins` give ``KfpRunOperator`` and the KServe operators
the methods the OpenLineage provider's DefaultExtractor calls
(``get_openlineage_facets_on_start/_complete/_failure``). Only those methods import OpenLineage
(:mod:`kfp_bridge.lineage.facets`), so a DAG file that imports the operators loads none of it and
the provider works without the extra installed. docs/lineage.md says what is emitted.
"""

from __future__ import annotations

from kfp_bridge.lineage.mixins import KfpRunLineage, KServeRolloutLineage

__all__ = ["KfpRunLineage", "KServeRolloutLineage"]
