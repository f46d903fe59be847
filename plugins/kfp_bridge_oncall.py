"""Loads the kfp-bridge on-call plugin from this plugins folder (``make up``, tests, a plain checkout).

When the installed package registers the plugin itself (entry point group ``airflow.plugins``),
this file defines nothing, so Airflow does not see the plugin twice.
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value.startswith("kfp_bridge.plugins") for ep in entry_points(group="airflow.plugins")):
    from kfp_bridge.plugins.oncall import KfpOnCallPlugin

    __all__ = ["KfpOnCallPlugin"]
