"""Apache Airflow provider for Kubeflow Pipelines and KServe (distribution ``kfp-bridge``)."""

from __future__ import annotations

__version__ = "0.1.0"
