"""The "InferenceService" button on KServeRolloutOperator tasks."""

from __future__ import annotations

from kfp_bridge.links.base import XComUrlLink


class InferenceServiceLink(XComUrlLink):
    """Opens the rolled-out InferenceService's URL (its ``status.url``)."""

    name = "InferenceService"
    key = "kserve_isvc_url"
