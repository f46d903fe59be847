"""The FastAPI app the plugin mounts on the Airflow api-server (under ``URL_PREFIX``).

Routes (``{dag_id}/{dag_run_id}/{task_id}`` address a task instance, ``?map_index=`` a mapped one):

* ``GET  /ti/...``: the on-call page of a task instance (the "KFP run" tab of the task instance page).
* ``GET  /dag-run/{dag_id}/{dag_run_id}``: the KFP runs of a DAG run (the "KFP runs" tab of a DAG run).
* ``GET  /api/ti/...``: the same data as JSON.
* ``POST /api/ti/.../retry-failed-steps``: KFP retry of the run, then clear the task so it follows it.

Authorization is Airflow's own: reading needs GET on the DAG's task instances, the action needs PUT
(what clearing a task needs), so anonymous callers get 401 and read-only users 403. The action is a
POST with a JSON body only: a cross-site form cannot send that without a CORS preflight, the session
cookie is SameSite=Lax, and a request whose Origin is not this server is refused.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse

from kfp_bridge.plugins import page, service
from kfp_bridge.plugins.service import OnCallError, TaskRef

URL_PREFIX = "/kfp-bridge"

can_read = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE))
can_edit = Depends(requires_access_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE))
MapIndex = Annotated[str, Query(description="map index; empty or -1 for an unmapped task")]


def parse_map_index(value: str | None) -> int:
    """``-1`` for an unmapped task (the UI leaves ``{MAP_INDEX}`` unreplaced there)."""
    try:
        index = int(value) if value not in (None, "") else -1
    except ValueError:
        return -1
    return index if index >= 0 else -1


def json_post_only(request: Request) -> None:
    """CSRF guard for state-changing calls: JSON body, and no foreign Origin."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Send this action as a JSON POST (Content-Type: application/json).",
        )
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        forwarded_host = request.headers.get("x-forwarded-host")
        allowed = {own.lower()}
        if forwarded_host:
            allowed.add(
                f"{request.headers.get('x-forwarded-proto', request.url.scheme)}://{forwarded_host}".lower()
            )
        parts = urlsplit(origin)
        if f"{parts.scheme}://{parts.netloc}".lower() not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"Cross-origin request from {origin} refused.")


def _prefix(request: Request) -> str:
    # root_path is where Airflow mounted this app (plus any base_url path in front of Airflow).
    return (request.scope.get("root_path") or URL_PREFIX).rstrip("/")


def _error(err: OnCallError) -> JSONResponse:
    return JSONResponse({"detail": err.reason}, status_code=err.status_code)


def create_app() -> FastAPI:
    app = FastAPI(
        title="kfp-bridge on-call",
        description="Per-step KFP run status and 'Retry failed steps' for KfpRunOperator task instances.",
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/ti/{dag_id}/{dag_run_id}/{task_id}", response_class=HTMLResponse, dependencies=[can_read])
    def task_instance_page(
        dag_id: str, dag_run_id: str, task_id: str, request: Request, map_index: MapIndex = "-1"
    ):
        ref = TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
        try:
            view = service.build_view(ref)
        except OnCallError as err:
            return HTMLResponse(
                page.document("KFP run", f'<p class="error">{err.reason}</p>'), err.status_code
            )
        return HTMLResponse(
            page.ti_page(view, prefix=_prefix(request)), headers={"Cache-Control": "no-store"}
        )

    @app.get("/dag-run/{dag_id}/{dag_run_id}", response_class=HTMLResponse, dependencies=[can_read])
    def dag_run_page(dag_id: str, dag_run_id: str, request: Request):
        views = [service.build_view(ref) for ref in service.kfp_task_instances(dag_id, dag_run_id)]
        html = page.dag_run_page(views, dag_id=dag_id, run_id=dag_run_id, prefix=_prefix(request))
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/api/ti/{dag_id}/{dag_run_id}/{task_id}", dependencies=[can_read])
    def task_instance_json(dag_id: str, dag_run_id: str, task_id: str, map_index: MapIndex = "-1"):
        try:
            return service.build_view(
                TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
            ).as_dict()
        except OnCallError as err:
            return _error(err)

    @app.post(
        "/api/ti/{dag_id}/{dag_run_id}/{task_id}/retry-failed-steps",
        dependencies=[can_edit, Depends(json_post_only)],
    )
    def retry_failed_steps(
        dag_id: str, dag_run_id: str, task_id: str, user: GetUserDep, map_index: MapIndex = "-1"
    ):
        ref = TaskRef(dag_id, dag_run_id, task_id, parse_map_index(map_index))
        try:
            return service.retry_failed_steps(ref, user_name=user.get_name()).as_dict()
        except OnCallError as err:
            return _error(err)

    return app


app = create_app()
