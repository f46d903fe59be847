"""Task groups that show a KFP pipeline run step by step in the Airflow grid."""

from __future__ import annotations
