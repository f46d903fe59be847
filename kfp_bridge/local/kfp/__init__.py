"""Embedded stand-in for the Kubeflow Pipelines v2beta1 REST API.

It speaks the wire protocol the real ``kfp.Client`` expects (reference/contracts.md part A) and
executes each run for real with ``kfp.local`` in its own process group. Start it with
``kfp-bridge local kfp --port PORT --state-dir DIR``; see :mod:`kfp_bridge.local.kfp.server`.
"""

from __future__ import annotations
