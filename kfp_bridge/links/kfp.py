"""The "Kubeflow run" button on KfpRunOperator and KfpRunSensor tasks."""

from __future__ import annotations

from kfp_bridge.links.base import XComUrlLink


class KfpRunLink(XComUrlLink):
    """Opens the KFP UI page of the task's run (``ui_host`` of the connection, else its host)."""

    name = "Kubeflow run"
    key = "kfp_run_url"
