"""The kfp-bridge Airflow plugin: the on-call view of KFP runs and "Retry failed steps"."""

from __future__ import annotations
