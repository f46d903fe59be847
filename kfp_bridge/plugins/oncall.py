"""The Airflow plugin: a FastAPI app on the api-server plus two views in the Airflow UI.

* "KFP run" tab on every task instance page (``destination="task_instance"``): the run, each
  step's state, duration and error, links to the KFP UI, and "Retry failed steps".
* "KFP runs" tab on every DAG run page (``destination="dag_run"``): the KFP runs of that DAG run.

Airflow imports plugins in every process (scheduler, workers, dag-processor); the FastAPI app,
and with it the api-server's auth modules, is built only when the api-server asks for it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

PLUGIN_NAME = "kfp_bridge_oncall"
URL_PREFIX = "/kfp-bridge"  # kfp_bridge.plugins.app.URL_PREFIX (not imported: that builds the app)


class _LazyFastApiApps:
    """``fastapi_apps`` that imports and builds the app on first access (only the api-server reads it)."""

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] | None = None

    def __get__(self, instance: Any, owner: Any) -> list[dict[str, Any]]:
        if self._apps is None:
            from kfp_bridge.plugins.app import app

            self._apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "kfp-bridge on-call"}]
        return self._apps


def _base_path() -> str:
    """Path of ``[api] base_url`` (Airflow served under a sub-path), so the views' iframes find the app."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


_BASE = _base_path()


class KfpOnCallPlugin(AirflowPlugin):
    name = PLUGIN_NAME
    fastapi_apps = _LazyFastApiApps()
    external_views = [
        {
            "name": "KFP run",
            "href": f"{_BASE}{URL_PREFIX}/ti/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}?map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "kfp-run",
        },
        {
            "name": "KFP runs",
            "href": f"{_BASE}{URL_PREFIX}/dag-run/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "kfp-runs",
        },
    ]
